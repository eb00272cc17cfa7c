//! Cluster-wide settings: cloud providers, system options, dependencies,
//! endpoints and licensing.

use crate::schema_check::{Checker, Node};

/// The `providers:` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Providers {
    /// `default`: provider picked when none is given.
    pub default: Option<String>,
    /// Bare-metal / any machine.
    pub generic: Option<GenericProvider>,
    /// Amazon Web Services.
    pub aws: Option<AwsProvider>,
    /// Microsoft Azure.
    pub azure: Option<AzureProvider>,
}

/// `providers.generic`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenericProvider {
    /// Turns the provider off.
    pub disabled: bool,
    /// `network.type`, e.g. `calico`.
    pub network_type: Option<String>,
}

/// `providers.aws`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AwsProvider {
    /// Turns the provider off.
    pub disabled: bool,
    /// Regions offered.
    pub regions: Vec<String>,
    /// `iamPolicy.actions`: IAM actions the cluster needs.
    pub iam_actions: Vec<String>,
    /// `iamPolicy.version`.
    pub iam_version: Option<String>,
    /// `network.type`, e.g. `aws-vpc`.
    pub network_type: Option<String>,
}

/// `providers.azure`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AzureProvider {
    /// Turns the provider off.
    pub disabled: bool,
}

/// The `systemOptions:` section (also allowed per node profile).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemOptions {
    /// `runtime`: the Kubernetes runtime package.
    pub runtime: Option<RuntimePackage>,
    /// `docker.storageDriver`.
    pub docker_storage_driver: Option<String>,
    /// `docker.args`.
    pub docker_args: Vec<String>,
    /// `kubelet.args`.
    pub kubelet_args: Vec<String>,
    /// `allowPrivileged`: allow privileged containers.
    pub allow_privileged: Option<bool>,
    /// `args`: extra arguments for the node agent.
    pub args: Vec<String>,
    /// `baseImage`.
    pub base_image: Option<String>,
    /// `dependencies.runtimePackage`.
    pub runtime_package: Option<String>,
    /// `dns.disabled`: no cluster DNS from tele (the vendor ships another).
    pub dns_disabled: Option<bool>,
}

/// `systemOptions.runtime`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimePackage {
    /// Package name (default `kubernetes`).
    pub name: Option<String>,
    /// Package version.
    pub version: Option<String>,
    /// Package repository.
    pub repository: Option<String>,
    /// Path to a local runtime package.
    pub path: Option<String>,
}

/// The `dependencies:` section: packages and apps installed with this one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dependencies {
    /// Package locators, e.g. `gravitational.io/planet:7.0.0`.
    pub packages: Vec<String>,
    /// App locators, e.g. `gravitational.io/dns-app:0.3.0`.
    pub apps: Vec<String>,
}

/// One entry of `endpoints:`: a service shown to the user after install.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoint {
    /// Display name; required.
    pub name: String,
    /// Free-form description.
    pub description: Option<String>,
    /// Kubernetes service name.
    pub service_name: Option<String>,
    /// Kubernetes namespace of the service.
    pub namespace: Option<String>,
    /// e.g. `https`.
    pub protocol: Option<String>,
    /// Service port.
    pub port: Option<u16>,
    /// Hide from the UI.
    pub hidden: bool,
}

/// The `license:` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct License {
    /// Require a licence at install time.
    pub enabled: bool,
    /// Licence type (default `certificate`).
    pub kind: Option<String>,
}

const PROVIDER_FIELDS: &[&str] = &["default", "generic", "aws", "azure"];
const AWS_FIELDS: &[&str] = &["disabled", "regions", "iamPolicy", "network", "terraform"];
const OPTION_FIELDS: &[&str] = &[
    "runtime",
    "docker",
    "kubelet",
    "allowPrivileged",
    "args",
    "baseImage",
    "dependencies",
    "etcd",
    "dns",
];

pub(crate) fn read_providers(c: &mut Checker, node: &Node) -> Providers {
    let mut providers = Providers::default();
    let Some(f) = c.mapping(node, "providers", PROVIDER_FIELDS) else {
        return providers;
    };
    providers.default = c.opt_string(&f, "default");
    if let Some(generic) = f.get("generic") {
        if let Some(g) = c.mapping(generic, "providers.generic", &["disabled", "network"]) {
            providers.generic = Some(GenericProvider {
                disabled: c.opt_bool(&g, "disabled").unwrap_or(false),
                network_type: network_type(c, g.get("network"), "providers.generic.network"),
            });
        }
    }
    if let Some(aws) = f.get("aws") {
        if let Some(a) = c.mapping(aws, "providers.aws", AWS_FIELDS) {
            let mut provider = AwsProvider {
                disabled: c.opt_bool(&a, "disabled").unwrap_or(false),
                regions: c.opt_string_list(&a, "regions"),
                network_type: network_type(c, a.get("network"), "providers.aws.network"),
                ..AwsProvider::default()
            };
            if let Some(policy) = a.get("iamPolicy") {
                let path = "providers.aws.iamPolicy";
                if let Some(p) = c.mapping(policy, path, &["version", "actions"]) {
                    provider.iam_version = c.opt_string(&p, "version");
                    provider.iam_actions = c.opt_string_list(&p, "actions");
                }
            }
            if let Some(terraform) = a.get("terraform") {
                let path = "providers.aws.terraform";
                if let Some(t) = c.mapping(terraform, path, &["script", "instanceScript"]) {
                    c.opt_string(&t, "script");
                    c.opt_string(&t, "instanceScript");
                }
            }
            providers.aws = Some(provider);
        }
    }
    if let Some(azure) = f.get("azure") {
        if let Some(z) = c.mapping(azure, "providers.azure", &["disabled"]) {
            providers.azure = Some(AzureProvider {
                disabled: c.opt_bool(&z, "disabled").unwrap_or(false),
            });
        }
    }
    providers
}

fn network_type(c: &mut Checker, node: Option<&Node>, path: &str) -> Option<String> {
    let f = c.mapping(node?, path, &["type"])?;
    c.opt_string(&f, "type")
}

pub(crate) fn read_system_options(
    c: &mut Checker,
    node: &Node,
    path: &str,
) -> Option<SystemOptions> {
    let f = c.mapping(node, path, OPTION_FIELDS)?;
    let mut options = SystemOptions {
        allow_privileged: c.opt_bool(&f, "allowPrivileged"),
        args: c.opt_string_list(&f, "args"),
        base_image: c.opt_string(&f, "baseImage"),
        ..SystemOptions::default()
    };
    if let Some(runtime) = f.get("runtime") {
        let fields = ["name", "version", "repository", "path"];
        if let Some(r) = c.mapping(runtime, &f.child("runtime"), &fields) {
            options.runtime = Some(RuntimePackage {
                name: c.opt_string(&r, "name"),
                version: c.opt_string(&r, "version"),
                repository: c.opt_string(&r, "repository"),
                path: c.opt_string(&r, "path"),
            });
        }
    }
    if let Some(docker) = f.get("docker") {
        let fields = ["storageDriver", "capacity", "args"];
        if let Some(d) = c.mapping(docker, &f.child("docker"), &fields) {
            options.docker_storage_driver = c.opt_string(&d, "storageDriver");
            options.docker_args = c.opt_string_list(&d, "args");
            c.opt_string(&d, "capacity");
        }
    }
    if let Some(kubelet) = f.get("kubelet") {
        if let Some(k) = c.mapping(kubelet, &f.child("kubelet"), &["args", "hairpinMode"]) {
            options.kubelet_args = c.opt_string_list(&k, "args");
            c.opt_string(&k, "hairpinMode");
        }
    }
    if let Some(dns) = f.get("dns") {
        if let Some(d) = c.mapping(dns, &f.child("dns"), &["disabled"]) {
            options.dns_disabled = c.opt_bool(&d, "disabled");
        }
    }
    if let Some(etcd) = f.get("etcd") {
        if let Some(e) = c.mapping(etcd, &f.child("etcd"), &["args"]) {
            c.opt_string_list(&e, "args");
        }
    }
    if let Some(dependencies) = f.get("dependencies") {
        if let Some(d) = c.mapping(dependencies, &f.child("dependencies"), &["runtimePackage"]) {
            options.runtime_package = c.opt_string(&d, "runtimePackage");
        }
    }
    Some(options)
}

pub(crate) fn read_dependencies(c: &mut Checker, node: &Node) -> Dependencies {
    match c.mapping(node, "dependencies", &["packages", "apps"]) {
        Some(f) => Dependencies {
            packages: c.opt_string_list(&f, "packages"),
            apps: c.opt_string_list(&f, "apps"),
        },
        None => Dependencies::default(),
    }
}

pub(crate) fn read_endpoints(c: &mut Checker, node: &Node) -> Vec<Endpoint> {
    const FIELDS: &[&str] = &[
        "name",
        "description",
        "selector",
        "serviceName",
        "namespace",
        "protocol",
        "port",
        "hidden",
    ];
    let mut endpoints = Vec::new();
    for (path, item) in c.list(node, "endpoints") {
        let Some(f) = c.mapping(item, &path, FIELDS) else {
            continue;
        };
        let name = c.req_string(&f, "name");
        let port = f.get("port").and_then(|n| {
            let port = c.integer(n, &f.child("port"))?;
            let valid = u16::try_from(port).ok().filter(|&p| p > 0);
            if valid.is_none() {
                c.error(n, format!("port {port} is out of range (1 to 65535)"));
            }
            valid
        });
        if let Some(selector) = f.get("selector") {
            c.string_map(selector, &f.child("selector"));
        }
        let endpoint = Endpoint {
            name: name.unwrap_or_default(),
            description: c.opt_string(&f, "description"),
            service_name: c.opt_string(&f, "serviceName"),
            namespace: c.opt_string(&f, "namespace"),
            protocol: c.opt_string(&f, "protocol"),
            port,
            hidden: c.opt_bool(&f, "hidden").unwrap_or(false),
        };
        endpoints.push(endpoint);
    }
    endpoints
}

pub(crate) fn read_license(c: &mut Checker, node: &Node) -> Option<License> {
    let f = c.mapping(node, "license", &["enabled", "type"])?;
    Some(License {
        enabled: c.opt_bool(&f, "enabled").unwrap_or(false),
        kind: c.opt_string(&f, "type"),
    })
}
