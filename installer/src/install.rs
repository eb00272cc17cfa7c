//! `./install`: check the flags, verify the bundle, then build the plan of
//! phases ([`crate::phase::install_phases`]), save it, and run it (or
//! resume it) to a working cluster with the app on it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::InstallError;
use crate::node::{NodeConfig, Ports};
use crate::phase::{Phase, PhaseContext};
use crate::plan::{PhaseEntry, PhaseState, Plan};
use crate::reporter::InstallReporter;
use crate::state_dir::StateDir;

/// Default pod network.
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
/// Default service network.
pub const DEFAULT_SERVICE_CIDR: &str = "10.100.0.0/16";
/// Default time to wait for the app and for each hook.
pub const DEFAULT_APP_TIMEOUT: Duration = Duration::from_secs(600);

/// What `./install` was asked to do. `None` means "not given": a new
/// install takes the default, a resumed one keeps what it saved.
#[derive(Clone, Debug, Default)]
pub struct InstallOptions {
    /// The extracted bundle.
    pub bundle_dir: PathBuf,
    /// Where everything the install writes goes.
    pub state_dir: PathBuf,
    /// The node's address (default: the address of the default route's interface).
    pub advertise_addr: Option<IpAddr>,
    /// The node's name (default: the hostname).
    pub node_name: Option<String>,
    /// The pod network.
    pub pod_cidr: Option<String>,
    /// The service network.
    pub service_cidr: Option<String>,
    /// cgroup under which pods run (several nodes on one machine need one each).
    pub cgroup_root: Option<String>,
    /// The node registry's port.
    pub registry_port: Option<u16>,
    /// Where the node keeps its volumes' data (default: under the state directory).
    pub volumes_dir: Option<PathBuf>,
    /// How the services' logs are rotated.
    pub log_limits: crate::log_rotation::LogLimits,
    /// How long leaf certificates are valid (None: a year).
    pub cert_validity: Option<Duration>,
    /// How long the CA certificates are valid (None: ten years).
    pub ca_validity: Option<Duration>,
    /// Node profile from the manifest (default: the first).
    pub profile: Option<String>,
    /// Preflight checks to skip.
    pub skip_checks: Vec<String>,
    /// Load kernel modules and set sysctls the checks need.
    pub autofix: bool,
    /// Continue a failed or interrupted install.
    pub resume: bool,
    /// How long to wait for the app and each hook.
    pub app_timeout: Option<Duration>,
    /// `kind: smtp` / `kind: alerttarget` resources: where alerts go.
    pub config: Option<PathBuf>,
    /// Where `tele` and `kubectl` are linked (None: nowhere).
    pub bin_dir: Option<PathBuf>,
    /// Join an existing cluster instead of making one.
    pub join: Option<JoinTarget>,
    /// The manifest's flavor: how many nodes of each profile the cluster should have.
    pub flavor: Option<String>,
    /// A join without the bundle: the part of it the node runs is fetched
    /// from the master into the state directory (`bundle_dir` is ignored).
    pub fetch_bundle: bool,
    /// The vendor's public key: the bundle must be signed by it.
    pub signing_key: Option<tele_bundle::signature::PublicKey>,
    /// Refuse a bundle that is not signed by `signing_key` (which must be given).
    pub signed_only: bool,
    /// Where the node runs (None: found out from the clouds' metadata services).
    pub cloud_provider: Option<crate::cloud::Provider>,
    /// The cluster's name on a cloud: what its provider uses and makes is
    /// tagged `kubernetes.io/cluster/NAME` (None: the app's name).
    pub cluster_name: Option<String>,
    /// On Azure: the service principal and environment the components use
    /// (the default: the VM's managed identity, Azure's public cloud).
    pub azure: crate::cloud::azure::Auth,
    /// On AWS: make the flavor's other machines (`--provision`), so.
    pub provision: Option<crate::cloud::ProvisionSettings>,
}

/// The cluster a node joins.
#[derive(Clone, Debug, Default)]
pub struct JoinTarget {
    /// A master's join service: `ADDR` or `ADDR:PORT`.
    pub addr: String,
    /// The token (`ID.SECRET.PIN`); None on `--resume`.
    pub token: Option<String>,
}

/// The default port of the masters' join service.
pub const JOIN_PORT: u16 = 6444;

/// `ADDR` with the join port when it has none.
fn join_addr(addr: &str) -> String {
    if addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        return format!("[{addr}]:{JOIN_PORT}");
    }
    if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else {
        format!("{addr}:{JOIN_PORT}")
    }
}

/// What the install left behind, for the closing summary.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallSummary {
    /// The app.
    pub app: String,
    /// Its version.
    pub version: String,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// kubectl from the bundle.
    pub kubectl: PathBuf,
    /// The node's name.
    pub node: String,
    /// The node's address.
    pub node_ip: IpAddr,
    /// `systemd` or `agent`.
    pub service_manager: String,
    /// The app's services: `namespace/name type cluster-ip ports`.
    pub endpoints: Vec<String>,
    /// Each phase and the seconds it took.
    pub phases: Vec<(String, f64)>,
    /// The preflight checks' results.
    pub preflight: Vec<crate::preflight::CheckResult>,
    /// On a new cluster's first node: the command that adds a worker (with a new token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_command: Option<String>,
    /// On a new cluster's first node: per node profile of its flavor, the
    /// command that adds a node of that profile (each with its own token).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub join_commands: std::collections::BTreeMap<String, String>,
    /// On a node that joined: the master it joined through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined_through: Option<String>,
    /// On a new cluster's first node: the cluster against its flavor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flavor: Option<crate::status::FlavorStatus>,
}

/// The default route's interface address, else the first non-loopback IPv4.
pub fn detect_node_ip() -> anyhow::Result<IpAddr> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let default_if = routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
        })
        .next();
    let addrs = interface_addrs()?;
    let addrs: Vec<&(String, IpAddr)> = addrs
        .iter()
        .filter(|(_, ip)| ip.is_ipv4() && !ip.is_loopback())
        .collect();
    if let Some(ifname) = default_if {
        if let Some((_, ip)) = addrs.iter().find(|(n, _)| *n == ifname) {
            return Ok(*ip);
        }
    }
    addrs.first().map(|(_, ip)| *ip).ok_or_else(|| {
        InstallError::bad_input(
            "this machine has no non-loopback IPv4 address",
            "give the node's address with --advertise-addr",
        )
        .into()
    })
}

/// Every address of this machine's interfaces.
fn interface_addrs() -> anyhow::Result<Vec<(String, IpAddr)>> {
    Ok(nix::ifaddrs::getifaddrs()?
        .filter_map(|i| {
            let a = i.address?;
            let ip = if let Some(v4) = a.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(a.as_sockaddr_in6()?.ip())
            };
            Some((i.interface_name, ip))
        })
        .collect())
}

pub(crate) fn node_name(given: Option<&str>) -> anyhow::Result<String> {
    let raw = match given {
        Some(n) => n.to_string(),
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };
    let name: String = raw
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c| c == '-' || c == '.').to_string();
    if name.is_empty() || name.len() > 63 {
        return Err(InstallError::bad_input(
            format!("cannot make a node name of `{raw}`"),
            "give a name of 1 to 63 letters, digits, `-` and `.` with --node-name",
        )
        .into());
    }
    Ok(name)
}

/// The first /24 of an IPv4 pod network, for the single node's bridge.
fn first_subnet(cidr: &str) -> Result<String, InstallError> {
    let bad = |why: &str| {
        InstallError::bad_input(
            format!("--pod-network-cidr `{cidr}`: {why}"),
            "give an IPv4 network of /24 or larger, like 10.244.0.0/16",
        )
    };
    let (base, bits) = cidr.split_once('/').ok_or_else(|| bad("not a CIDR"))?;
    let ip: std::net::Ipv4Addr = base.parse().map_err(|_| bad("not an IPv4 address"))?;
    let bits: u8 = bits.parse().map_err(|_| bad("bad prefix length"))?;
    if bits > 24 {
        return Err(bad("smaller than a /24"));
    }
    let o = ip.octets();
    Ok(format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
}

fn check_cidr(flag: &str, cidr: &str) -> Result<(), InstallError> {
    let ok = cidr.split_once('/').is_some_and(|(ip, bits)| {
        ip.parse::<IpAddr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
    });
    if ok {
        Ok(())
    } else {
        Err(InstallError::bad_input(
            format!("{flag} `{cidr}` is not a network in CIDR form"),
            format!("give it like {flag} 10.100.0.0/16"),
        ))
    }
}

/// The candidate closest to `word`, when one is close enough to be a typo
/// of it (a letter missing, extra, wrong or swapped in a short word).
fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(word, c), *c))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Checks the flags that need no bundle: names of checks, addresses.
/// Nothing is written before these pass.
pub fn validate(opts: &InstallOptions) -> anyhow::Result<()> {
    let names = crate::preflight::check_names();
    for s in &opts.skip_checks {
        if !names.contains(&s.as_str()) {
            let best = names
                .iter()
                .map(|n| (strsim::jaro_winkler(s, n), *n))
                .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
            let hint = if best.0 > 0.7 {
                format!(
                    "did you mean `--skip-check {}`? (the checks: {})",
                    best.1,
                    names.join(", ")
                )
            } else {
                format!("the checks are: {}", names.join(", "))
            };
            return Err(InstallError::bad_input(
                format!("--skip-check: there is no check `{s}`"),
                hint,
            )
            .into());
        }
    }
    if let Some(ip) = opts.advertise_addr {
        let addrs = interface_addrs()?;
        if !addrs.iter().any(|(_, a)| *a == ip) {
            let have: Vec<String> = addrs
                .iter()
                .filter(|(_, a)| !a.is_loopback())
                .map(|(n, a)| format!("{a} ({n})"))
                .collect();
            return Err(InstallError::bad_input(
                format!("--advertise-addr {ip} is not an address of this machine"),
                format!(
                    "give one of this machine's addresses: {}",
                    if have.is_empty() {
                        "none besides loopback".into()
                    } else {
                        have.join(", ")
                    }
                ),
            )
            .into());
        }
    }
    if let Some(c) = &opts.pod_cidr {
        first_subnet(c)?;
    }
    if let Some(c) = &opts.service_cidr {
        check_cidr("--service-cidr", c)?;
        crate::pki::first_service_ip(c).map_err(|e| {
            InstallError::bad_input(
                format!("--service-cidr `{c}`: {e}"),
                "give it like --service-cidr 10.100.0.0/16",
            )
        })?;
    }
    if let Some(n) = &opts.node_name {
        node_name(Some(n))?;
    }
    let az = &opts.azure;
    match (&az.client_id, &az.tenant_id, &az.client_secret) {
        (None, None, _) | (Some(_), Some(_), Some(_)) => {}
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(InstallError::bad_input(
                "--azure-client-id and --azure-tenant-id go together",
                "give both for a service principal, or neither to use the VM's managed identity",
            )
            .into())
        }
        (Some(_), Some(_), None) => {
            return Err(InstallError::bad_input(
                "--azure-client-id needs the service principal's secret",
                "set AZURE_CLIENT_SECRET in the install's environment (it is never taken on the command line)",
            )
            .into())
        }
    }
    if let Some(c) = &opts.cluster_name {
        if crate::wizard::deployment_name_problem(c).is_some() {
            return Err(InstallError::bad_input(
                format!("--cluster-name `{c}` is not a DNS label"),
                "give up to 63 lower-case letters, digits and '-', like --cluster-name shop-prod",
            )
            .into());
        }
    }
    if let Some(r) = &opts.cgroup_root {
        if !r.starts_with('/') || r.contains("..") {
            return Err(InstallError::bad_input(
                format!("--cgroup-root `{r}` is not an absolute cgroup path"),
                "give it like --cgroup-root /tele-node-1",
            )
            .into());
        }
    }
    Ok(())
}

/// The flavor asked for, else the manifest's default, else its first; None
/// when the manifest has no flavors. An unknown name is refused.
fn choose_flavor(
    asked: Option<&str>,
    manifest: &tele_manifests::Manifest,
) -> Result<Option<tele_manifests::Flavor>, InstallError> {
    let flavors = manifest.installer.as_ref().and_then(|i| i.flavors.as_ref());
    let Some(flavors) = flavors.filter(|f| !f.items.is_empty()) else {
        return match asked {
            Some(name) => Err(InstallError::bad_input(
                format!("--flavor {name}: the app defines no flavors"),
                "leave out --flavor",
            )),
            None => Ok(None),
        };
    };
    let name = asked
        .map(String::from)
        .or_else(|| flavors.default.clone())
        .unwrap_or_else(|| flavors.items[0].name.clone());
    flavors
        .items
        .iter()
        .find(|f| f.name == name)
        .cloned()
        .map(Some)
        .ok_or_else(|| {
            let names: Vec<&str> = flavors.items.iter().map(|f| f.name.as_str()).collect();
            let close = did_you_mean(&name, &names)
                .map(|n| format!("did you mean `--flavor {n}`? "))
                .unwrap_or_default();
            InstallError::bad_input(
                format!("the app has no flavor `{name}`"),
                format!("{close}the flavors are: {}", names.join(", ")),
            )
        })
}

/// Where the node runs ([`crate::cloud::locate`]), from the flags, the
/// manifest and the environment.
fn locate(
    opts: &InstallOptions,
    manifest: &tele_manifests::Manifest,
) -> Result<Option<crate::cloud::Instance>, InstallError> {
    let found = crate::cloud::locate(
        opts.cloud_provider,
        &manifest.providers,
        &crate::cloud::Endpoints::from_env(),
    )?;
    if let Some(p) = &opts.provision {
        let Some(provider) = found.as_ref().map(|i| i.provider.as_str()) else {
            return Err(InstallError::bad_input(
                "--provision makes machines on AWS or Azure; this machine is onprem",
                "run the install on an EC2 instance or Azure VM in the target network, or leave out --provision and join the machines with the commands the install prints",
            ));
        };
        let Some(flavor) = choose_flavor(opts.flavor.as_deref(), manifest)? else {
            return Err(InstallError::bad_input(
                "--provision needs a flavor, and the app defines none",
                "leave out --provision",
            ));
        };
        let first = opts
            .profile
            .clone()
            .or_else(|| flavor.nodes.first().map(|n| n.profile.clone()))
            .unwrap_or_default();
        let cluster = opts
            .cluster_name
            .as_deref()
            .unwrap_or(&manifest.metadata.name);
        crate::cloud::provision::wanted(
            cluster,
            &flavor,
            &manifest.node_profiles,
            &first,
            &p.instance_types,
            provider,
        )
        .map_err(|e| {
            InstallError::bad_input(
                format!("--provision: {e}"),
                "instance types come from each profile's providers.aws.instanceTypes or --instance-type",
            )
        })?;
    }
    Ok(found)
}

/// A new node's settings; `located` is where it runs when that was found
/// out already (else it is found out here).
fn new_config(
    opts: &InstallOptions,
    manifest: &tele_manifests::Manifest,
    located: Option<Option<crate::cloud::Instance>>,
) -> anyhow::Result<NodeConfig> {
    // A new cluster's first node takes its flavor's first profile unless told.
    let flavor = if opts.join.is_none() {
        choose_flavor(opts.flavor.as_deref(), manifest)?
    } else {
        None
    };
    let flavor_profile = flavor
        .as_ref()
        .and_then(|f| f.nodes.first())
        .map(|n| n.profile.clone());
    let profile = match &opts.profile {
        Some(p) => {
            if !manifest.node_profiles.iter().any(|n| &n.name == p) {
                return Err(InstallError::bad_input(
                    format!("the manifest has no node profile `{p}`"),
                    format!(
                        "give one of: {}",
                        manifest
                            .node_profiles
                            .iter()
                            .map(|n| n.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .into());
            }
            Some(p.clone())
        }
        None => flavor_profile.or_else(|| manifest.node_profiles.first().map(|n| n.name.clone())),
    };
    let node_ip = match opts.advertise_addr {
        Some(ip) => ip,
        None => detect_node_ip()?,
    };
    let cloud = match located {
        Some(c) => c,
        None => locate(opts, manifest)?,
    };
    // On a cloud the node is named as the cloud names the machine.
    let name = opts
        .node_name
        .as_deref()
        .or(cloud.as_ref().map(|c| c.hostname.as_str()));
    let pod_cidr = opts
        .pod_cidr
        .clone()
        .unwrap_or_else(|| DEFAULT_POD_CIDR.into());
    Ok(NodeConfig {
        bundle_dir: std::fs::canonicalize(&opts.bundle_dir)?,
        state_dir: opts.state_dir.clone(),
        node_name: node_name(name)?,
        node_ip,
        node_pod_subnet: first_subnet(&pod_cidr)?,
        pod_cidr,
        service_cidr: opts
            .service_cidr
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVICE_CIDR.into()),
        cgroup_root: opts.cgroup_root.clone(),
        volumes_dir: opts.volumes_dir.clone(),
        ports: Ports {
            registry: opts.registry_port.unwrap_or(Ports::default().registry),
            ..Ports::default()
        },
        profile,
        app_timeout_secs: opts.app_timeout.unwrap_or(DEFAULT_APP_TIMEOUT).as_secs(),
        role: crate::node::NodeRole::Master,
        joined: None,
        etcd_join: None,
        cluster_dns: !manifest
            .system_options
            .as_ref()
            .and_then(|o| o.dns_disabled)
            .unwrap_or(false),
        flavor: flavor.map(|f| f.name),
        logs: opts.log_limits,
        cert_validity_secs: opts.cert_validity.map_or(
            crate::pki::DEFAULT_LEAF_VALIDITY
                .whole_seconds()
                .unsigned_abs(),
            |d| d.as_secs(),
        ),
        ca_validity_secs: opts.ca_validity.map_or(
            crate::pki::DEFAULT_CA_VALIDITY
                .whole_seconds()
                .unsigned_abs(),
            |d| d.as_secs(),
        ),
        cloud_settings: cloud.as_ref().map(|c| {
            let cluster = opts
                .cluster_name
                .as_deref()
                .unwrap_or(&manifest.metadata.name);
            if c.provider == "aws" {
                crate::cloud::Settings {
                    provision: opts.provision.clone(),
                    ..crate::cloud::Settings::aws_from_env(cluster)
                }
            } else {
                crate::cloud::Settings {
                    cluster_id: cluster.to_string(),
                    azure: Some(opts.azure.clone()),
                    provision: opts.provision.clone(),
                    imds_endpoint: crate::cloud::Endpoints::from_env().azure,
                    ..Default::default()
                }
            }
        }),
        cloud,
    })
}

/// The settings of a node joining through `target`: a master when its
/// profile's `serviceRole` is `master`, else a worker; its networks and
/// credentials come from the master when it is admitted.
fn new_join_config(
    opts: &InstallOptions,
    manifest: &tele_manifests::Manifest,
    target: &JoinTarget,
) -> anyhow::Result<NodeConfig> {
    let mut cfg = new_config(opts, manifest, None)?;
    cfg.joined = Some(crate::node::Joined {
        join_addr: join_addr(&target.addr),
        admitted: false,
    });
    Ok(as_profile(cfg, manifest, None))
}

/// A joining node's settings `cfg` for the profile it joins as: `profile`
/// when given (the admin chose it while the node waited), and the role
/// (master or worker) that profile's service role makes it.
fn as_profile(
    mut cfg: NodeConfig,
    manifest: &tele_manifests::Manifest,
    profile: Option<String>,
) -> NodeConfig {
    if profile.is_some() {
        cfg.profile = profile;
    }
    let master = cfg
        .profile
        .as_ref()
        .and_then(|p| manifest.node_profiles.iter().find(|n| &n.name == p))
        .is_some_and(|p| p.service_role.as_deref() == Some("master"));
    cfg.role = if master {
        crate::node::NodeRole::Master
    } else {
        crate::node::NodeRole::Worker
    };
    cfg
}

/// Before a node joins: waits in line until the cluster can take it
/// ([`crate::join::wait`]), showing this machine's preflight results to the
/// install wizard when the first node is not installed yet. Returns the
/// node's settings and token for the profile it joins as (the admin may
/// have given it another while it waited).
fn wait_in_line(
    opts: &InstallOptions,
    manifest: &tele_manifests::Manifest,
    cfg: NodeConfig,
    token: crate::token::Token,
    reporter: &dyn InstallReporter,
) -> anyhow::Result<(NodeConfig, crate::token::Token)> {
    use crate::join::{client, wait};
    let addr = cfg
        .joined
        .as_ref()
        .expect("a joining config")
        .join_addr
        .clone();
    let ca = client::fetch_ca(&addr, &token.ca_pin).map_err(|e| InstallError::BadInput {
        message: e.to_string(),
        hint: e.hint(),
    })?;
    let mut joiner = wait::Joiner {
        request: crate::join::JoinRequest {
            token: token.credential(),
            node_name: cfg.node_name.clone(),
            node_ip: cfg.node_ip,
            role: cfg.profile.clone(),
        },
        token,
    };
    let state = StateDir::new(&opts.state_dir);
    let preflight = |profile: Option<&str>| {
        let node = as_profile(cfg.clone(), manifest, profile.map(String::from));
        let checks = crate::phase::checks::preflight_config(
            &node,
            manifest,
            &state,
            &opts.skip_checks,
            opts.autofix,
        );
        Ok(Some(crate::preflight::run(&checks)?))
    };
    let answer = wait::wait_for_cluster(&addr, &ca, &mut joiner, &preflight, reporter)?;
    let mut cfg = as_profile(cfg, manifest, joiner.request.role.clone());
    // On a cloud, the node's provider works for the cluster it joins.
    if let (Some(name), Some(settings)) = (answer.cluster_name, cfg.cloud_settings.as_mut()) {
        match &opts.cluster_name {
            Some(given) if *given != name => {
                return Err(InstallError::bad_input(
                    format!("--cluster-name {given}: the cluster this node joins is named {name} on the cloud"),
                    format!("leave out --cluster-name, or give {name}"),
                )
                .into())
            }
            _ => settings.cluster_id = name,
        }
    }
    Ok((cfg, joiner.token))
}

/// Whether nothing was installed in `state` yet (at most a fetched bundle
/// is there): a first join that preflight refuses then leaves nothing behind.
fn is_fresh(state: &StateDir) -> bool {
    // The install wizard makes the cluster CA, its own certificate and the
    // join tokens of the nodes that wait in its CAPACITY step before the
    // install starts: a state directory with only those is new.
    let wizard_only = |dir: &std::path::Path| {
        std::fs::read_dir(dir).is_ok_and(|d| {
            d.flatten().all(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                crate::wizard::MADE_UP_FRONT.contains(&name.as_ref())
            })
        })
    };
    std::fs::read_dir(state.root()).map_or(true, |d| {
        d.flatten().all(|e| {
            e.path() == state.fetched_bundle_dir()
                || e.path() == state.pki_dir() && wizard_only(&e.path())
                || e.path() == crate::token::TokenStore::new(state).file()
        })
    })
}

fn parse_token(text: &str) -> Result<crate::token::Token, InstallError> {
    text.parse()
        .map_err(|e: crate::token::TokenError| InstallError::bad_input(e.to_string(), e.hint()))
}

/// A join without the bundle: fetches the part of it the node runs from the
/// master (a client certificate first, given only to a node that would be
/// admitted) into the state directory; on `--resume`, or where a join
/// already started, uses what was fetched. Returns the options with the
/// bundle directory set to it.
fn fetch_bundle(
    opts: &InstallOptions,
    state: &StateDir,
    reporter: &dyn InstallReporter,
) -> anyhow::Result<InstallOptions> {
    use crate::join::{client, fetch};
    let Some(target) = &opts.join else {
        return Err(InstallError::bad_input(
            "only a joining node can fetch the bundle from the cluster",
            "run ./install from the extracted bundle",
        )
        .into());
    };
    let dir = state.fetched_bundle_dir();
    let resolved = InstallOptions {
        bundle_dir: dir.clone(),
        ..opts.clone()
    };
    if opts.resume || state.holds_install() {
        if !dir.join(tele_bundle::bundle_json::BUNDLE_JSON).is_file() {
            return Err(InstallError::bad_input(
                format!(
                    "{} holds no bundle fetched from the cluster",
                    state.root().display()
                ),
                "run the join again, without --resume, or from the extracted bundle",
            )
            .into());
        }
        return Ok(resolved);
    }
    let Some(text) = &target.token else {
        return Err(InstallError::bad_input(
            "joining a cluster needs the token a master printed",
            "run the join command as printed: `tele join ADDR --token TOKEN --role PROFILE`",
        )
        .into());
    };
    let token = parse_token(text)?;
    let addr = join_addr(&target.addr);
    let refused = |e: client::JoinError| InstallError::BadInput {
        message: e.to_string(),
        hint: e.hint(),
    };
    let ca = client::fetch_ca(&addr, &token.ca_pin).map_err(refused)?;
    let node_ip = match opts.advertise_addr {
        Some(ip) => ip,
        None => detect_node_ip()?,
    };
    // Before the first node is installed (the wizard's CAPACITY step) the
    // node waits in line; its checks run once the bundle is here.
    let mut joiner = crate::join::wait::Joiner {
        request: crate::join::JoinRequest {
            token: token.credential(),
            node_name: node_name(opts.node_name.as_deref())?,
            node_ip,
            role: opts.profile.clone(),
        },
        token,
    };
    crate::join::wait::wait_for_cluster(&addr, &ca, &mut joiner, &|_| Ok(None), reporter)?;
    let resolved = InstallOptions {
        profile: joiner.request.role.clone(),
        join: Some(JoinTarget {
            addr: target.addr.clone(),
            token: Some(joiner.token.to_string()),
        }),
        ..resolved
    };
    let request = joiner.request;
    let creds = client::bundle_credentials(&addr, &ca, &request).map_err(refused)?;
    let progress = |line: &str| reporter.note(line);
    let (meta, done) = fetch::fetch(&addr, &ca, &creds, &dir, &progress)
        .map_err(|e| InstallError::bad_input(e.to_string(), e.hint()))?;
    reporter.note(&format!(
        "fetched and verified {} files ({} MiB downloaded, {} already here)",
        done.files,
        done.bytes >> 20,
        done.kept
    ));
    let mine = env!("CARGO_PKG_VERSION");
    if meta.tele_version != mine {
        return Err(InstallError::bad_input(
            format!(
                "this tele is version {mine}; the cluster's bundle was made by tele {}",
                meta.tele_version
            ),
            "join with the cluster's own tele: copy it from a master (/usr/local/bin/tele), or use the bundle's `install`",
        )
        .into());
    }
    Ok(resolved)
}

/// Before anything is written on a joining node: the master at the join
/// address shows the CA the token pins and would admit this node.
fn precheck_join(cfg: &NodeConfig, token: &crate::token::Token) -> Result<(), InstallError> {
    use crate::join::client;
    let addr = &cfg.joined.as_ref().expect("a joining config").join_addr;
    let refused = |e: client::JoinError| InstallError::BadInput {
        message: e.to_string(),
        hint: e.hint(),
    };
    let ca = client::fetch_ca(addr, &token.ca_pin).map_err(refused)?;
    client::check(
        addr,
        &ca,
        &crate::join::JoinRequest {
            token: token.credential(),
            node_name: cfg.node_name.clone(),
            node_ip: cfg.node_ip,
            role: cfg.profile.clone(),
        },
    )
    .map_err(refused)
}

/// Settings given again on `--resume`: each must match what was saved, or
/// the user is told what to do (a started install keeps its settings).
fn check_resume_settings(
    opts: &InstallOptions,
    saved: &NodeConfig,
    state: &StateDir,
) -> anyhow::Result<()> {
    let mut differ = Vec::new();
    let mut cmp = |flag: &str, given: Option<String>, have: String| {
        if let Some(g) = given {
            if g != have {
                differ.push(format!("{flag} {g} (the install uses {have})"));
            }
        }
    };
    cmp(
        "--advertise-addr",
        opts.advertise_addr.map(|a| a.to_string()),
        saved.node_ip.to_string(),
    );
    cmp(
        "--node-name",
        opts.node_name
            .as_deref()
            .map(|n| node_name(Some(n)))
            .transpose()?,
        saved.node_name.clone(),
    );
    cmp(
        "--cloud-provider",
        opts.cloud_provider.map(|p| p.to_string()),
        saved
            .cloud
            .as_ref()
            .map_or_else(|| "onprem".to_string(), |c| c.provider.clone()),
    );
    cmp(
        "--pod-network-cidr",
        opts.pod_cidr.clone(),
        saved.pod_cidr.clone(),
    );
    cmp(
        "--service-cidr",
        opts.service_cidr.clone(),
        saved.service_cidr.clone(),
    );
    cmp(
        "--cgroup-root",
        opts.cgroup_root.clone(),
        saved.cgroup_root.clone().unwrap_or_default(),
    );
    cmp(
        "--volumes-dir",
        opts.volumes_dir.as_ref().map(|d| d.display().to_string()),
        saved.volumes_dir().display().to_string(),
    );
    cmp(
        "--registry-port",
        opts.registry_port.map(|p| p.to_string()),
        saved.ports.registry.to_string(),
    );
    cmp(
        "--profile",
        opts.profile.clone(),
        saved.profile.clone().unwrap_or_default(),
    );
    if differ.is_empty() {
        return Ok(());
    }
    Err(InstallError::bad_input(
        format!(
            "--resume cannot change the settings of a started install: {}",
            differ.join("; ")
        ),
        format!(
            "run `./install --resume` without them to carry on as started, or remove the install (`tele uninstall --state-dir {}`) and install again with the new settings",
            state.root().display()
        ),
    )
    .into())
}

/// Holds the state directory's lock while an install or uninstall runs.
pub struct StateLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// How long an operation waits for the health checker to finish renewing
/// the node's certificates.
const RENEWAL_WAIT: Duration = Duration::from_secs(300);

/// Takes the state directory's lock, or says which process holds it. The
/// holder writes its PID and command line into the lock file; the lock
/// itself is the kernel's (flock), so it goes with the process, however it
/// ends. While the health checker holds it (renewing certificates, which
/// ends by itself), this waits for it.
pub fn lock(state: &StateDir) -> anyhow::Result<StateLock> {
    let deadline = std::time::Instant::now() + RENEWAL_WAIT;
    loop {
        match try_lock(state) {
            Err(_)
                if std::time::Instant::now() < deadline
                    && lock_holder(state).is_some_and(|h| h.contains("health-check")) =>
            {
                std::thread::sleep(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// [`lock`] without waiting.
pub(crate) fn try_lock(state: &StateDir) -> anyhow::Result<StateLock> {
    use std::io::{Seek as _, Write as _};
    std::fs::create_dir_all(state.root())?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(state.lock_file())?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut l) => {
            let me = format!(
                "{}\n{}\n",
                std::process::id(),
                crate::procfs::cmdline(std::process::id() as i32)
                    .map(|c| command_words(&c))
                    .unwrap_or_default()
            );
            l.set_len(0)?;
            l.rewind()?;
            l.write_all(me.as_bytes())?;
            Ok(StateLock { _lock: l })
        }
        Err((_, errno)) if errno != nix::errno::Errno::EWOULDBLOCK => Err(anyhow::anyhow!(
            "cannot lock {}: {errno}",
            state.lock_file().display()
        )),
        Err(_) => Err(InstallError::bad_input(
            format!(
                "another install, uninstall or certificate renewal is running on {}{}",
                state.root().display(),
                lock_holder(state)
                    .map(|h| format!(": process {h}"))
                    .unwrap_or_default()
            ),
            "wait for it to finish (see `tele plan`), then try again",
        )
        .into()),
    }
}

/// The program and its subcommand words, up to the first flag: what names
/// the operation without the values of flags (a join token among them).
fn command_words(argv: &[String]) -> String {
    argv.iter()
        .take_while(|a| !a.starts_with('-'))
        .take(4)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `PID (COMMAND)` of the process that wrote the lock file, read with a bound.
pub(crate) fn lock_holder(state: &StateDir) -> Option<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(state.lock_file())
        .ok()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let cmd: String = lines
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    Some(if cmd.is_empty() {
        pid.to_string()
    } else {
        format!("{pid} (`{cmd}`)")
    })
}

/// Stops here when a test asked to (`TELE_TEST_PAUSE_AT=POINT`), so that it
/// can kill or signal the installer at a known moment: writes `.paused` in
/// the state directory and waits, until a caught SIGINT or SIGTERM ends the
/// wait as an interruption.
pub fn test_pause_point(state: &StateDir, point: &str) -> anyhow::Result<()> {
    if std::env::var("TELE_TEST_PAUSE_AT").is_ok_and(|p| p == point) {
        let _ =
            crate::durable::write_durably(&state.root().join(".paused"), point.as_bytes(), 0o644);
        loop {
            crate::interrupt::check()?;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Checks the bundle (or the node part a joining node fetched) before
/// anything on the machine changes: every file and blob against bundle.json,
/// and the vendor's signature; says so through `reporter`.
pub(crate) fn verify_bundle(
    opts: &InstallOptions,
    reporter: &dyn InstallReporter,
) -> anyhow::Result<()> {
    // Nothing on the machine changes before the whole bundle checks out.
    let v = if opts.fetch_bundle {
        // What a node fetched came from the cluster it joins, over TLS with
        // the cluster's CA pinned by the token; the cluster's own install
        // checked the bundle's signature.
        tele_bundle::verify::verify_node_part(&opts.bundle_dir)?
    } else {
        if opts.signed_only && opts.signing_key.is_none() {
            return Err(InstallError::bad_input(
                "--signed-only needs the vendor's public key to check the signature with",
                "give it with --key VENDOR.pub",
            )
            .into());
        }
        tele_bundle::verify::verify_signed(&opts.bundle_dir, opts.signing_key.as_ref())?
    };
    use tele_bundle::verify::SignatureStatus;
    if let SignatureStatus::Invalid { reason } = &v.signature {
        return Err(InstallError::bad_input(
            format!("the bundle's signature does not hold, nothing was changed: {reason}"),
            "the bundle is not the one the vendor signed (or the key is not the vendor's): get the bundle and the vendor's public key again, through a channel you trust",
        )
        .into());
    }
    if !v.problems.is_empty() {
        return Err(InstallError::bad_input(
            format!(
                "the bundle is damaged, nothing was changed:\n  {}",
                v.problems.join("\n  ")
            ),
            "copy the bundle again from the vendor",
        )
        .into());
    }
    reporter.note(&format!(
        "bundle verified: {} files and {} blobs",
        v.files_checked, v.blobs_checked
    ));
    match &v.signature {
        SignatureStatus::Valid { key } => {
            reporter.note(&format!("bundle signed by the vendor's key {key}"))
        }
        SignatureStatus::NotChecked => reporter.note(
            "warning: the bundle is signed, but no key was given to check it with\n  hint: give the vendor's public key with --key VENDOR.pub",
        ),
        SignatureStatus::Unsigned if !opts.fetch_bundle => reporter.note(
            "warning: the bundle is not signed: nothing shows who made it\n  hint: ask the vendor for a signed bundle and their public key (--key VENDOR.pub)",
        ),
        _ => {}
    }
    Ok(())
}

/// Refuses to go on without root, saying `hint`.
pub(crate) fn require_root(hint: &str) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    Err(InstallError::bad_input(
        "installing needs root: it starts system services, mounts filesystems and changes iptables",
        hint,
    )
    .into())
}

/// Verifies the bundle, then runs (or resumes) the install plan.
pub fn install(
    opts: &InstallOptions,
    reporter: &dyn InstallReporter,
) -> anyhow::Result<InstallSummary> {
    require_root("run `sudo ./install`")?;
    validate(opts)?;
    let state = StateDir::new(&opts.state_dir);
    let fresh = is_fresh(&state);
    let fetched;
    let opts = if opts.fetch_bundle {
        fetched = fetch_bundle(opts, &state, reporter)?;
        &fetched
    } else {
        opts
    };
    verify_bundle(opts, reporter)?;
    let manifest = tele_manifests::load_manifest(&opts.bundle_dir.join("app.yaml"))?;
    if !opts.bundle_dir.join("runtime/runtime.json").is_file() {
        return Err(InstallError::bad_input(
            "this bundle carries no Kubernetes runtime (it was built with --no-runtime)",
            "ask the vendor for a bundle built with the runtime",
        )
        .into());
    }
    let alerting = opts
        .config
        .as_deref()
        .map(crate::alerting::parse)
        .transpose()?;
    if opts.join.is_none() {
        choose_flavor(opts.flavor.as_deref(), &manifest)?;
    } else {
        // The cluster's settings come from the master a node joins.
        let cluster_flags = [
            ("--flavor", opts.flavor.is_some()),
            ("--pod-network-cidr", opts.pod_cidr.is_some()),
            ("--service-cidr", opts.service_cidr.is_some()),
            ("--config", opts.config.is_some()),
        ];
        if let Some((flag, _)) = cluster_flags.iter().find(|(_, given)| *given) {
            return Err(InstallError::bad_input(
                format!("{flag} is the cluster's, set on its first node, not when a node joins"),
                format!("leave out {flag}"),
            )
            .into());
        }
    }
    // A join is checked with the master before anything is written here.
    let join = match &opts.join {
        Some(target) if !opts.resume => {
            let Some(text) = &target.token else {
                return Err(InstallError::bad_input(
                    "joining a cluster needs the token a master printed",
                    "run the join command as printed: `./install join ADDR --token TOKEN --role PROFILE`",
                )
                .into());
            };
            let mut token = parse_token(text)?;
            let mut cfg = new_join_config(opts, &manifest, target)?;
            if !state.holds_install() {
                (cfg, token) = wait_in_line(opts, &manifest, cfg, token, reporter)?;
                precheck_join(&cfg, &token)?;
            }
            Some((cfg, token))
        }
        _ => None,
    };
    // Where a new cluster's first node runs, found out before anything is
    // written (a refusal leaves no state directory behind).
    let located = if fresh && join.is_none() && !opts.resume {
        Some(locate(opts, &manifest)?)
    } else {
        None
    };
    let _lock = lock(&state)?;
    crate::interrupt::catch_signals()?;

    let saved = Plan::load(state.root())?;
    let cfg = match &saved {
        Some(_) if opts.resume => {
            let mut cfg = NodeConfig::load(&state)?;
            check_resume_settings(opts, &cfg, &state)?;
            if let (Some(secret), Some(auth)) = (
                &opts.azure.client_secret,
                cfg.cloud_settings.as_mut().and_then(|s| s.azure.as_mut()),
            ) {
                auth.client_secret = Some(secret.clone());
            }
            if let Some(t) = opts.app_timeout {
                cfg.app_timeout_secs = t.as_secs();
                cfg.save(&state)?;
            }
            cfg
        }
        Some(plan) if plan.is_complete() => {
            return Err(InstallError::bad_input(
                format!("{} is already installed from {}", manifest.metadata.name, state.root().display()),
                format!("see `tele status --state-dir {0}`, or remove it with `tele uninstall --state-dir {0}`", state.root().display()),
            )
            .into())
        }
        // Stopped before anything but the checks ran: start afresh with the new flags.
        Some(plan) if plan.only_started(&["/checks"]) => {
            let cfg = match &join {
                Some((cfg, _)) => cfg.clone(),
                None => new_config(opts, &manifest, located.clone())?,
            };
            cfg.save(&state)?;
            cfg
        }
        Some(plan) => {
            return Err(InstallError::bad_input(
                format!(
                    "an earlier install stopped at phase {} (state directory {})",
                    plan.next().map(|p| p.id.as_str()).unwrap_or("?"),
                    state.root().display()
                ),
                "run `./install --resume` to carry on, or `./install --uninstall` to start over",
            )
            .into())
        }
        None if opts.resume => {
            return Err(InstallError::bad_input(
                format!("there is no install to resume in {}", state.root().display()),
                "run ./install without --resume",
            )
            .into())
        }
        None => {
            let cfg = match &join {
                Some((cfg, _)) => cfg.clone(),
                None => new_config(opts, &manifest, located)?,
            };
            cfg.save(&state)?;
            cfg
        }
    };
    if let Some((_, token)) = &join {
        crate::durable::write_durably(
            &state.join_token_file(),
            token.to_string().as_bytes(),
            0o600,
        )?;
    }
    let joining = cfg.joined.is_some();
    if opts.join.is_some() != joining {
        return Err(InstallError::bad_input(
            if joining {
                format!(
                    "the install in {} is a node that joined a cluster",
                    state.root().display()
                )
            } else {
                format!(
                    "the install in {} made its own cluster; it joined none",
                    state.root().display()
                )
            },
            if joining {
                "resume it with `./install join --resume`"
            } else {
                "resume it with `./install --resume`"
            },
        )
        .into());
    }

    let (phases, operation) = if joining {
        (crate::phase::join_phases(&cfg), "join")
    } else {
        (
            crate::phase::install_phases(&cfg, &manifest, &opts.bundle_dir),
            "install",
        )
    };
    let entries: Vec<PhaseEntry> = phases
        .iter()
        .map(|p| PhaseEntry {
            id: p.id(),
            description: p.description(),
            requires: p.requires(),
        })
        .collect();
    let mut plan = Plan::new(state.root(), operation, &entries)?;
    if let (Some(old), true) = (&saved, opts.resume) {
        plan.merge_from(old);
    }
    plan.save()?;

    if let Some(a) = &alerting {
        crate::alerting::save(state.root(), a)?;
    }
    let manager = crate::service::for_host(&state);
    // From here on what the phases report is also kept in the install's log.
    let logged = crate::reporter::Logged::new(reporter, &state);
    let reporter: &dyn InstallReporter = &logged;
    let ctx = phase_context(opts, &state, &cfg, &manifest, manager.as_ref(), reporter);
    let runtime_done = phases.iter().any(|p| {
        p.id().ends_with("/runtime")
            && plan
                .find(&p.id())
                .is_some_and(|r| r.state == PhaseState::Completed)
    });
    if opts.resume && runtime_done {
        crate::phase::runtime::recheck(&ctx)?;
        reporter.note("the runtime and images in the state directory checked");
    }
    if let Err(e) = run_plan(&mut plan, &phases, &ctx) {
        if fresh && joining && matches!(e.downcast_ref(), Some(InstallError::Preflight { .. })) {
            let _ = std::fs::remove_dir_all(state.root());
        }
        return Err(e);
    }
    let cfg = NodeConfig::load(&state)?;
    summary(&ctx.with_cfg(&cfg), &plan)
}

/// Puts back in `cfg` (as read from disk) the secrets `held` has in
/// memory: they are never saved in the node's configuration.
fn hold_secrets(cfg: &mut NodeConfig, held: &NodeConfig) {
    let secret = held
        .cloud_settings
        .as_ref()
        .and_then(|s| s.azure.as_ref())
        .and_then(|a| a.client_secret.clone());
    if let (Some(secret), Some(auth)) = (
        secret,
        cfg.cloud_settings.as_mut().and_then(|s| s.azure.as_mut()),
    ) {
        auth.client_secret = Some(secret);
    }
}

fn run_plan(plan: &mut Plan, phases: &[Box<dyn Phase>], base: &PhaseContext) -> anyhow::Result<()> {
    let state_dir = base.state.root().display().to_string();
    for phase in phases {
        // The settings on disk are the truth: a phase may have completed them
        // (a joining node learns its networks when it is admitted).
        let mut cfg = NodeConfig::load(base.state)?;
        hold_secrets(&mut cfg, base.cfg);
        let ctx = &base.with_cfg(&cfg);
        let id = phase.id();
        let rec = plan.find(&id).expect("phase in plan").clone();
        if rec.state == PhaseState::Completed {
            ctx.reporter.phase_skipped(&id, "already done");
            continue;
        }
        if let Some(r) = plan.unmet_requirement(&id) {
            anyhow::bail!("phase {id} requires {r}, which is not completed");
        }
        if crate::interrupt::check().is_err() {
            return Err(InstallError::Interrupted { id }.into());
        }
        // An interrupted phase runs again only if its effect is not in place.
        if rec.state == PhaseState::InProgress && phase.check(ctx).unwrap_or(false) {
            plan.complete(&id)?;
            ctx.reporter
                .phase_skipped(&id, "found done after the interruption");
            continue;
        }
        ctx.reporter.phase_started(&id, &phase.description());
        plan.start(&id)?;
        let result = test_pause_point(ctx.state, &format!("{id}:before"))
            .and_then(|()| phase.execute(ctx))
            .and_then(|()| test_pause_point(ctx.state, &format!("{id}:after")));
        match result {
            Ok(()) => {
                plan.complete(&id)?;
                let secs = plan
                    .find(&id)
                    .and_then(|p| p.duration_secs())
                    .unwrap_or(0.0);
                ctx.reporter.phase_completed(&id, secs);
            }
            Err(e) => {
                let text = format!("{e:#}");
                plan.fail(&id, &text)?;
                ctx.reporter.phase_failed(&id, &text);
                if e.downcast_ref::<crate::interrupt::Interrupted>().is_some() {
                    return Err(InstallError::Interrupted { id }.into());
                }
                if let Some(p) = e.downcast_ref::<crate::phase::checks::PreflightFailed>() {
                    return Err(InstallError::Preflight {
                        results: p.results.clone(),
                    }
                    .into());
                }
                if e.downcast_ref::<InstallError>().is_some() {
                    return Err(e);
                }
                return Err(InstallError::Phase {
                    id,
                    cause: text,
                    state_dir,
                }
                .into());
            }
        }
    }
    Ok(())
}

/// The summary of the finished install of `opts.state_dir` (one that
/// another process ran: the wizard following a command-line install).
pub fn finished_summary(
    opts: &InstallOptions,
    reporter: &dyn InstallReporter,
) -> anyhow::Result<InstallSummary> {
    let state = StateDir::new(&opts.state_dir);
    let plan = Plan::load(state.root())?
        .filter(Plan::is_complete)
        .ok_or_else(|| anyhow::anyhow!("{} holds no finished install", state.root().display()))?;
    let manifest = tele_manifests::load_manifest(&opts.bundle_dir.join("app.yaml"))?;
    let cfg = NodeConfig::load(&state)?;
    let manager = crate::service::for_host(&state);
    summary(
        &phase_context(opts, &state, &cfg, &manifest, manager.as_ref(), reporter),
        &plan,
    )
}

/// What the phases of an install with `opts` work with.
fn phase_context<'a>(
    opts: &'a InstallOptions,
    state: &'a StateDir,
    cfg: &'a NodeConfig,
    manifest: &'a tele_manifests::Manifest,
    manager: &'a dyn crate::service::ServiceManager,
    reporter: &'a dyn InstallReporter,
) -> PhaseContext<'a> {
    PhaseContext {
        bundle: &opts.bundle_dir,
        state,
        cfg,
        manifest,
        skip_checks: &opts.skip_checks,
        autofix: opts.autofix,
        bin_dir: opts.bin_dir.as_deref(),
        manager,
        reporter,
    }
}

fn summary(ctx: &PhaseContext, plan: &Plan) -> anyhow::Result<InstallSummary> {
    let k = ctx.kubectl()?;
    let endpoints = k
        .run(&["get", "services", "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.spec.type} {.spec.clusterIP} {.spec.ports[*].port}{\"\\n\"}{end}"])
        .map(|s| s.lines().filter(|l| !l.starts_with("default/kubernetes ")).map(String::from).collect())
        .unwrap_or_default();
    let kubectl = crate::node::runtime_binaries(ctx.state.root())?
        .get("kubectl")
        .cloned()
        .unwrap_or_default();
    let preflight = std::fs::read(crate::phase::checks::results_file(ctx.state))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let joined_through = ctx.cfg.joined.as_ref().map(|j| j.join_addr.clone());
    let join_commands = if joined_through.is_none() {
        join_commands(ctx)?
    } else {
        Vec::new()
    };
    let join_command = join_commands
        .iter()
        .find(|(_, _, master)| !master)
        .or(join_commands.first())
        .map(|(_, c, _)| c.clone());
    let join_commands = join_commands
        .into_iter()
        .filter_map(|(p, c, _)| Some((p?, c)))
        .collect();
    let flavor = crate::status::status(ctx.state.root())
        .ok()
        .and_then(|s| s.flavor);
    Ok(InstallSummary {
        flavor,
        join_command,
        join_commands,
        joined_through,
        app: ctx.manifest.metadata.name.clone(),
        version: ctx.manifest.metadata.version.to_string(),
        kubeconfig: ctx.state.pki().kubeconfig("admin"),
        kubectl,
        node: ctx.cfg.node_name.clone(),
        node_ip: ctx.cfg.node_ip,
        service_manager: ctx.manager.kind().into(),
        endpoints,
        phases: plan
            .leaves()
            .iter()
            .map(|p| (p.id.clone(), p.duration_secs().unwrap_or(0.0)))
            .collect(),
        preflight,
    })
}

/// The commands that join nodes, each with a new token (24 h): one per
/// profile of the cluster's flavor, else one for the first worker profile
/// of the manifest (the first profile when none is one). Each comes with
/// its profile and whether that is a master profile.
fn join_commands(ctx: &PhaseContext) -> anyhow::Result<Vec<(Option<String>, String, bool)>> {
    let profiles = &ctx.manifest.node_profiles;
    let is_master = |name: &str| {
        profiles
            .iter()
            .any(|p| p.name == name && p.service_role.as_deref() == Some("master"))
    };
    let flavor = ctx.flavor();
    let mut roles: Vec<Option<String>> = Vec::new();
    for n in flavor.iter().flat_map(|f| &f.nodes) {
        if !roles.contains(&Some(n.profile.clone())) {
            roles.push(Some(n.profile.clone()));
        }
    }
    if roles.is_empty() {
        roles.push(
            profiles
                .iter()
                .find(|p| p.service_role.as_deref() != Some("master"))
                .map(|p| p.name.clone()),
        );
    }
    let pin = crate::pki::ca_pin(&ctx.state.pki())?;
    let store = crate::token::TokenStore::new(ctx.state);
    roles
        .into_iter()
        .map(|role| {
            let (token, _) = store.create(role.as_deref(), crate::token::DEFAULT_TTL, &pin)?;
            let master = role.as_deref().is_some_and(is_master);
            Ok((
                role.clone(),
                join_command_text(ctx.cfg, &token, role.as_deref()),
                master,
            ))
        })
        .collect()
}

/// `sudo ./install join ADDR --token TOKEN [--role PROFILE]` for this master.
pub fn join_command_text(
    cfg: &NodeConfig,
    token: &crate::token::Token,
    role: Option<&str>,
) -> String {
    join_command_at(cfg.node_ip, cfg.ports.join, token, role)
}

/// The join command of a master at `ip` whose join service listens on `port`.
pub fn join_command_at(
    ip: IpAddr,
    port: u16,
    token: &crate::token::Token,
    role: Option<&str>,
) -> String {
    let addr = if port == JOIN_PORT {
        ip.to_string()
    } else {
        format!("{}:{port}", crate::node::fmt_host(ip))
    };
    let role = role.map(|r| format!(" --role {r}")).unwrap_or_default();
    format!("sudo ./install join {addr} --token {token}{role}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_subnet_is_the_first_slash_24() {
        assert_eq!(first_subnet("10.244.0.0/16").unwrap(), "10.244.0.0/24");
        assert!(first_subnet("10.244.0.0/28").is_err());
        assert!(first_subnet("nonsense").is_err());
    }

    #[test]
    fn a_misspelt_check_is_refused_with_the_likely_name() {
        let opts = InstallOptions {
            skip_checks: vec!["port".into()],
            ..Default::default()
        };
        let e = validate(&opts).unwrap_err();
        let ie = e.downcast_ref::<InstallError>().unwrap();
        assert!(e.to_string().contains("no check `port`"), "{e}");
        assert!(
            ie.hint().unwrap().contains("--skip-check ports"),
            "{:?}",
            ie.hint()
        );
    }

    #[test]
    fn typos_find_what_was_meant() {
        assert_eq!(did_you_mean("tow", &["one", "two"]), Some("two"));
        assert_eq!(did_you_mean("port", &["ports", "cpu"]), Some("ports"));
        assert_eq!(
            did_you_mean("etcd-fsnyc", &["etcd-fsync", "os"]),
            Some("etcd-fsync")
        );
        assert_eq!(did_you_mean("banana", &["one", "two"]), None);
    }

    #[test]
    fn an_address_the_machine_lacks_is_refused() {
        let opts = InstallOptions {
            advertise_addr: Some("192.0.2.77".parse().unwrap()),
            ..Default::default()
        };
        let e = validate(&opts).unwrap_err();
        assert!(
            e.to_string().contains("not an address of this machine"),
            "{e}"
        );
        let ok = InstallOptions {
            advertise_addr: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        };
        validate(&ok).unwrap();
    }
}
