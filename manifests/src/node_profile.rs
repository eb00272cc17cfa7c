//! Node profiles (what each kind of node needs) and installer flavors (how
//! many nodes of each profile an install uses).

use std::collections::BTreeMap;

use crate::quantity::{Quantity, SIZE_UNITS};
use crate::schema_check::{Checker, Fields, Node};

/// The `installer:` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Installer {
    /// Install flavors, if any.
    pub flavors: Option<Flavors>,
    /// `eula.source`: the end-user licence agreement shown by the installer.
    pub eula: Option<String>,
    /// `setupEndpoints`: endpoints shown once the install completes.
    pub setup_endpoints: Vec<String>,
}

/// `installer.flavors`: the cluster sizes offered at install time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flavors {
    /// Question asked when choosing a flavor.
    pub prompt: Option<String>,
    /// Free-form description.
    pub description: Option<String>,
    /// Name of the flavor picked by default; must name one of `items`.
    pub default: Option<String>,
    /// The flavors.
    pub items: Vec<Flavor>,
}

/// One flavor: a named set of node counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Flavor {
    /// Flavor name, e.g. `small`.
    pub name: String,
    /// Free-form description.
    pub description: Option<String>,
    /// How many nodes of each profile.
    pub nodes: Vec<FlavorNodes>,
}

/// `count` nodes of node profile `profile`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlavorNodes {
    /// Name of a node profile.
    pub profile: String,
    /// Number of nodes (at least 1).
    pub count: u32,
}

/// A kind of node and what it requires from the machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeProfile {
    /// Profile name, referenced by flavors.
    pub name: String,
    /// Free-form description.
    pub description: Option<String>,
    /// Kubernetes labels put on these nodes.
    pub labels: BTreeMap<String, String>,
    /// Kubernetes taints put on these nodes.
    pub taints: Vec<Taint>,
    /// Machine requirements checked before install.
    pub requirements: Requirements,
    /// `expandPolicy`, e.g. `fixed`, `fixed-instance`.
    pub expand_policy: Option<String>,
    /// `serviceRole`: `master` or `node`.
    pub service_role: Option<String>,
    /// `providers.aws.instanceTypes`: the EC2 instance types these nodes
    /// may be, the first preferred (machines made by `--provision`).
    pub aws_instance_types: Vec<String>,
}

/// A Kubernetes node taint.
#[derive(Debug, Clone, PartialEq)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value.
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// `requirements:` of a node profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// CPU cores: `min` is required to be a positive integer when given.
    pub cpu: Option<Range<u32>>,
    /// Memory.
    pub ram: Option<Range<Quantity>>,
    /// Supported operating systems.
    pub os: Vec<OsRequirement>,
    /// Directories and their capacity.
    pub volumes: Vec<Volume>,
    /// Network requirements.
    pub network: Option<NetworkRequirement>,
}

/// A `{min, max}` pair, either side optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Range<T> {
    /// Lower bound.
    pub min: Option<T>,
    /// Upper bound.
    pub max: Option<T>,
}

/// An operating system and its accepted versions.
#[derive(Debug, Clone, PartialEq)]
pub struct OsRequirement {
    /// e.g. `centos`, `ubuntu`.
    pub name: String,
    /// e.g. `["7", "8"]`; empty means any.
    pub versions: Vec<String>,
}

/// A directory a node needs, optionally mounted into containers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Volume {
    /// Volume name (for mounts).
    pub name: Option<String>,
    /// Host path; required.
    pub path: String,
    /// Path inside containers.
    pub target_path: Option<String>,
    /// Minimum free space.
    pub capacity: Option<Quantity>,
    /// Accepted filesystems, e.g. `xfs`, `ext4`.
    pub filesystems: Vec<String>,
    /// Create the directory if it does not exist.
    pub create_if_missing: Option<bool>,
    /// Skip the mount if the directory does not exist.
    pub skip_if_missing: Option<bool>,
}

/// `requirements.network`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkRequirement {
    /// e.g. `50MB/s`.
    pub min_transfer_rate: Option<String>,
    /// Ports that must be free.
    pub ports: Vec<PortRequirement>,
}

/// Port ranges that must be free for the given protocols.
#[derive(Debug, Clone, PartialEq)]
pub struct PortRequirement {
    /// `tcp` and/or `udp` (default `tcp`).
    pub protocols: Vec<String>,
    /// Inclusive ranges; a single port is `start == end`.
    pub ranges: Vec<(u16, u16)>,
}

const INSTALLER_FIELDS: &[&str] = &["flavors", "eula", "setupEndpoints"];
const FLAVORS_FIELDS: &[&str] = &["prompt", "description", "default", "items"];
const FLAVOR_FIELDS: &[&str] = &["name", "description", "nodes"];
const PROFILE_FIELDS: &[&str] = &[
    "name",
    "description",
    "labels",
    "taints",
    "requirements",
    "systemOptions",
    "providers",
    "expandPolicy",
    "serviceRole",
];
const REQUIREMENT_FIELDS: &[&str] = &[
    "cpu",
    "ram",
    "os",
    "volumes",
    "network",
    "devices",
    "customChecks",
];
const VOLUME_FIELDS: &[&str] = &[
    "name",
    "path",
    "targetPath",
    "hostPath",
    "capacity",
    "filesystems",
    "createIfMissing",
    "skipIfMissing",
    "minTransferRate",
    "hidden",
    "recursive",
    "mode",
    "uid",
    "gid",
    "seLinuxLabel",
];

pub(crate) fn read_installer(c: &mut Checker, node: &Node) -> Option<Installer> {
    let f = c.mapping(node, "installer", INSTALLER_FIELDS)?;
    let mut installer = Installer {
        setup_endpoints: c.opt_string_list(&f, "setupEndpoints"),
        ..Installer::default()
    };
    if let Some(eula) = f.get("eula") {
        if let Some(eula) = c.mapping(eula, "installer.eula", &["source"]) {
            installer.eula = c.opt_string(&eula, "source");
        }
    }
    if let Some(flavors) = f.get("flavors") {
        installer.flavors = read_flavors(c, flavors);
    }
    Some(installer)
}

fn read_flavors(c: &mut Checker, node: &Node) -> Option<Flavors> {
    let f = c.mapping(node, "installer.flavors", FLAVORS_FIELDS)?;
    let mut flavors = Flavors {
        prompt: c.opt_string(&f, "prompt"),
        description: c.opt_string(&f, "description"),
        default: c.opt_string(&f, "default"),
        items: Vec::new(),
    };
    let items = match c.required(&f, "items") {
        Some(items) => c.list(items, &f.child("items")),
        None => Vec::new(),
    };
    for (path, item) in items {
        let Some(item) = c.mapping(item, &path, FLAVOR_FIELDS) else {
            continue;
        };
        let name = c.req_string(&item, "name");
        let description = c.opt_string(&item, "description");
        let mut nodes = Vec::new();
        if let Some(list) = c.required(&item, "nodes") {
            for (path, entry) in c.list(list, &item.child("nodes")) {
                let Some(entry) = c.mapping(entry, &path, &["profile", "count"]) else {
                    continue;
                };
                let profile = c.req_string(&entry, "profile");
                let count = c
                    .required(&entry, "count")
                    .and_then(|n| positive(c, n, &entry.child("count")));
                if let (Some(profile), Some(count)) = (profile, count) {
                    nodes.push(FlavorNodes { profile, count });
                }
            }
        }
        if let Some(name) = name {
            flavors.items.push(Flavor {
                name,
                description,
                nodes,
            });
        }
    }
    if let (Some(default), Some(node)) = (&flavors.default, f.get("default")) {
        if !flavors.items.iter().any(|item| &item.name == default) {
            let names: Vec<&str> = flavors.items.iter().map(|i| i.name.as_str()).collect();
            c.error(
                node,
                format!("default flavor `{default}` is not one of the flavors"),
            )
            .hint = Some(format!("flavors are: {}", names.join(", ")));
        }
    }
    Some(flavors)
}

fn positive(c: &mut Checker, node: &Node, path: &str) -> Option<u32> {
    match c.integer(node, path)? {
        n if n >= 1 && n <= i64::from(u32::MAX) => Some(n as u32),
        _ => {
            c.error(node, format!("`{path}` must be a positive integer"));
            None
        }
    }
}

/// Checks that every flavor names a defined profile (called once both are read).
pub(crate) fn check_flavor_profiles(c: &mut Checker, installer: &Node, profiles: &[NodeProfile]) {
    let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    let items = installer
        .data
        .as_mapping_get("flavors")
        .and_then(|f| f.data.as_mapping_get("items"));
    let Some(items) = items.and_then(|i| i.data.as_vec()) else {
        return;
    };
    for item in items {
        let nodes = item
            .data
            .as_mapping_get("nodes")
            .and_then(|n| n.data.as_vec());
        for entry in nodes.into_iter().flatten() {
            let Some(profile) = entry.data.as_mapping_get("profile") else {
                continue;
            };
            let Some(name) = profile.data.as_str() else {
                continue;
            };
            if !names.contains(&name) {
                let hint = match crate::schema_check::suggest(name, &names) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if names.is_empty() => "define it under `nodeProfiles`".to_string(),
                    None => format!("defined profiles are: {}", names.join(", ")),
                };
                c.error(
                    profile,
                    format!("flavor uses undefined node profile `{name}`"),
                )
                .hint = Some(hint);
            }
        }
    }
}

pub(crate) fn read_node_profiles(c: &mut Checker, node: &Node) -> Vec<NodeProfile> {
    let mut profiles: Vec<NodeProfile> = Vec::new();
    for (path, item) in c.list(node, "nodeProfiles") {
        let Some(f) = c.mapping(item, &path, PROFILE_FIELDS) else {
            continue;
        };
        let Some(name) = c.req_string(&f, "name") else {
            continue;
        };
        if profiles.iter().any(|p| p.name == name) {
            let name_node = f.get("name").expect("name was read");
            c.error(name_node, format!("node profile `{name}` is defined twice"));
        }
        let mut profile = NodeProfile {
            name,
            description: c.opt_string(&f, "description"),
            expand_policy: c.opt_string(&f, "expandPolicy"),
            service_role: c.opt_string(&f, "serviceRole"),
            ..NodeProfile::default()
        };
        if let Some(labels) = f.get("labels") {
            profile.labels = c.string_map(labels, &f.child("labels"));
        }
        if let Some(taints) = f.get("taints") {
            profile.taints = read_taints(c, taints, &f.child("taints"));
        }
        if let Some(requirements) = f.get("requirements") {
            profile.requirements = read_requirements(c, requirements, &f.child("requirements"));
        }
        if let Some(options) = f.get("systemOptions") {
            crate::cluster_options::read_system_options(c, options, &f.child("systemOptions"));
        }
        if let Some(providers) = f.get("providers") {
            profile.aws_instance_types =
                read_profile_providers(c, providers, &f.child("providers"));
        }
        profiles.push(profile);
    }
    profiles
}

/// A profile's `providers`: its AWS instance types.
fn read_profile_providers(c: &mut Checker, node: &Node, path: &str) -> Vec<String> {
    let Some(f) = c.mapping(node, path, &["aws"]) else {
        return Vec::new();
    };
    f.get("aws")
        .and_then(|aws| c.mapping(aws, &f.child("aws"), &["instanceTypes"]))
        .map(|aws| c.opt_string_list(&aws, "instanceTypes"))
        .unwrap_or_default()
}

fn read_taints(c: &mut Checker, node: &Node, path: &str) -> Vec<Taint> {
    let mut taints = Vec::new();
    for (path, item) in c.list(node, path) {
        let Some(f) = c.mapping(item, &path, &["key", "value", "effect"]) else {
            continue;
        };
        let key = c.req_string(&f, "key");
        let value = c.opt_string(&f, "value");
        let effect = c.req_string(&f, "effect");
        if let Some(effect) = &effect {
            const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
            if !EFFECTS.contains(&effect.as_str()) {
                let node = f.get("effect").expect("effect was read");
                c.error(node, format!("unknown taint effect `{effect}`"))
                    .hint = Some("use NoSchedule, PreferNoSchedule or NoExecute".to_string());
            }
        }
        if let (Some(key), Some(effect)) = (key, effect) {
            taints.push(Taint { key, value, effect });
        }
    }
    taints
}

fn read_requirements(c: &mut Checker, node: &Node, path: &str) -> Requirements {
    let mut requirements = Requirements::default();
    let Some(f) = c.mapping(node, path, REQUIREMENT_FIELDS) else {
        return requirements;
    };
    if let Some(cpu) = f.get("cpu") {
        if let Some(cpu_f) = c.mapping(cpu, &f.child("cpu"), &["min", "max"]) {
            let min = cpu_f
                .get("min")
                .and_then(|n| positive(c, n, &cpu_f.child("min")));
            let max = cpu_f
                .get("max")
                .and_then(|n| positive(c, n, &cpu_f.child("max")));
            if let (Some(lo), Some(hi)) = (min, max) {
                if lo > hi {
                    c.error(
                        cpu,
                        format!("`{}` has min {lo} above max {hi}", f.child("cpu")),
                    );
                }
            }
            requirements.cpu = Some(Range { min, max });
        }
    }
    if let Some(ram) = f.get("ram") {
        if let Some(ram_f) = c.mapping(ram, &f.child("ram"), &["min", "max"]) {
            let min = ram_f
                .get("min")
                .and_then(|n| quantity(c, n, &ram_f.child("min")));
            let max = ram_f
                .get("max")
                .and_then(|n| quantity(c, n, &ram_f.child("max")));
            if let (Some(lo), Some(hi)) = (&min, &max) {
                if lo.bytes > hi.bytes {
                    c.error(
                        ram,
                        format!("`{}` has min {lo} above max {hi}", f.child("ram")),
                    );
                }
            }
            requirements.ram = Some(Range { min, max });
        }
    }
    if let Some(os) = f.get("os") {
        for (path, item) in c.list(os, &f.child("os")) {
            let Some(os_f) = c.mapping(item, &path, &["name", "versions"]) else {
                continue;
            };
            let name = c.req_string(&os_f, "name");
            let versions = c.opt_string_list(&os_f, "versions");
            if let Some(name) = name {
                requirements.os.push(OsRequirement { name, versions });
            }
        }
    }
    if let Some(volumes) = f.get("volumes") {
        for (path, item) in c.list(volumes, &f.child("volumes")) {
            if let Some(volume) = read_volume(c, item, &path) {
                requirements.volumes.push(volume);
            }
        }
    }
    if let Some(network) = f.get("network") {
        requirements.network = read_network(c, network, &f.child("network"));
    }
    for extra in ["devices", "customChecks"] {
        if let Some(node) = f.get(extra) {
            c.list(node, &f.child(extra));
        }
    }
    requirements
}

fn quantity(c: &mut Checker, node: &Node, path: &str) -> Option<Quantity> {
    let text = c.string(node, path)?;
    let parsed = Quantity::parse(&text);
    if parsed.is_none() {
        c.error(node, format!("`{path}`: `{text}` is not a size"))
            .hint = Some(format!(
            "write a number and a unit, e.g. `4GB`; units: {SIZE_UNITS}"
        ));
    }
    parsed
}

fn read_volume(c: &mut Checker, node: &Node, path: &str) -> Option<Volume> {
    let f: Fields = c.mapping(node, path, VOLUME_FIELDS)?;
    let volume_path = c.req_string(&f, "path");
    let volume = Volume {
        name: c.opt_string(&f, "name"),
        path: String::new(),
        target_path: c
            .opt_string(&f, "targetPath")
            .or_else(|| c.opt_string(&f, "hostPath")),
        capacity: f
            .get("capacity")
            .and_then(|n| quantity(c, n, &f.child("capacity"))),
        filesystems: c.opt_string_list(&f, "filesystems"),
        create_if_missing: c.opt_bool(&f, "createIfMissing"),
        skip_if_missing: c.opt_bool(&f, "skipIfMissing"),
    };
    for flag in ["hidden", "recursive"] {
        c.opt_bool(&f, flag);
    }
    for number in ["uid", "gid"] {
        if let Some(n) = f.get(number) {
            c.integer(n, &f.child(number));
        }
    }
    Some(Volume {
        path: volume_path?,
        ..volume
    })
}

fn read_network(c: &mut Checker, node: &Node, path: &str) -> Option<NetworkRequirement> {
    let f = c.mapping(node, path, &["minTransferRate", "ports"])?;
    let mut network = NetworkRequirement {
        min_transfer_rate: c.opt_string(&f, "minTransferRate"),
        ports: Vec::new(),
    };
    let Some(ports) = f.get("ports") else {
        return Some(network);
    };
    for (path, item) in c.list(ports, &f.child("ports")) {
        let Some(p) = c.mapping(item, &path, &["protocol", "protocols", "ranges"]) else {
            continue;
        };
        let mut protocols = c.opt_string_list(&p, "protocols");
        protocols.extend(c.opt_string(&p, "protocol"));
        for (i, protocol) in protocols.iter().enumerate() {
            if protocol != "tcp" && protocol != "udp" {
                let at = p.get("protocols").or(p.get("protocol")).expect("was read");
                let at = at.data.as_vec().and_then(|v| v.get(i)).unwrap_or(at);
                c.error(at, format!("unknown protocol `{protocol}`")).hint =
                    Some("use `tcp` or `udp`".to_string());
            }
        }
        if protocols.is_empty() {
            protocols.push("tcp".to_string());
        }
        let mut ranges = Vec::new();
        if let Some(list) = c.required(&p, "ranges") {
            for (path, range) in c.list(list, &p.child("ranges")) {
                let Some(text) = c.string(range, &path) else {
                    continue;
                };
                match parse_port_range(&text) {
                    Some(r) => ranges.push(r),
                    None => {
                        c.error(range, format!("`{text}` is not a port or port range"))
                            .hint =
                            Some("write `8080` or `9000-9010` (ports 1 to 65535)".to_string());
                    }
                }
            }
        }
        network.ports.push(PortRequirement { protocols, ranges });
    }
    Some(network)
}

fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let port = |s: &str| s.trim().parse::<u16>().ok().filter(|&p| p > 0);
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            (a <= b).then_some((a, b))
        }
        None => port(text).map(|p| (p, p)),
    }
}
