//! The app manifest (`app.yaml`): reading and validating it as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use saphyr::{Scalar, YamlData};

use crate::cluster_options::{self, Dependencies, Endpoint, License, Providers, SystemOptions};
use crate::diagnostic::{sort_diagnostics, Diagnostic, Location, ManifestError};
use crate::hooks::{self, Hooks};
use crate::image_ref::ImageRef;
use crate::node_profile::{self, Installer, NodeProfile};
use crate::schema_check::{is_null, Checker, Fields, Node};
use crate::source_text::{Origin, SourceText};

/// A validated app manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest file, as given.
    pub path: PathBuf,
    /// The directory holding the manifest; resources are looked up here.
    pub dir: PathBuf,
    /// The manifest text, exactly as read (origins' spans index into it).
    pub text: String,
    /// `Bundle` (an app) or `Cluster` (an app with its cluster).
    pub kind: ManifestKind,
    /// `metadata:`.
    pub metadata: Metadata,
    /// `installer:`.
    pub installer: Option<Installer>,
    /// `nodeProfiles:`.
    pub node_profiles: Vec<NodeProfile>,
    /// `hooks:`.
    pub hooks: Hooks,
    /// `providers:`.
    pub providers: Providers,
    /// `systemOptions:`.
    pub system_options: Option<SystemOptions>,
    /// `dependencies:`.
    pub dependencies: Dependencies,
    /// `extensions:`, free-form for now.
    pub extensions: BTreeMap<String, serde_json::Value>,
    /// `endpoints:`.
    pub endpoints: Vec<Endpoint>,
    /// `license:`.
    pub license: Option<License>,
    /// `logo:` (a URL, `file://` path or inline data).
    pub logo: Option<String>,
    /// `baseImage:`, e.g. `gravity:7.0.0`.
    pub base_image: Option<String>,
    /// `releaseNotes:`.
    pub release_notes: Option<String>,
    /// Our own top-level `images:`: extra images to ship.
    pub images: Vec<ImageEntry>,
}

/// What the manifest describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    /// `apiVersion: bundle.gravitational.io/v2`, `kind: Bundle`.
    Bundle,
    /// `apiVersion: cluster.gravitational.io/v2`, `kind: Cluster`.
    Cluster,
}

/// `metadata:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// App name: a DNS-1123 label (lowercase letters, digits, `-`).
    pub name: String,
    /// `resourceVersion`, a semantic version.
    pub version: semver::Version,
    /// Free-form description.
    pub description: Option<String>,
}

/// One entry of the manifest's `images:` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// The normalised reference.
    pub image: ImageRef,
    /// Where it is written in the manifest.
    pub origin: Origin,
}

const TOP_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "installer",
    "nodeProfiles",
    "hooks",
    "providers",
    "systemOptions",
    "dependencies",
    "extensions",
    "logo",
    "endpoints",
    "license",
    "baseImage",
    "releaseNotes",
    "webConfig",
    "images",
];
const METADATA_FIELDS: &[&str] = &[
    "name",
    "resourceVersion",
    "description",
    "namespace",
    "repository",
    "author",
    "createdTimestamp",
    "hidden",
    "labels",
];
const KINDS: &[(&str, &str, ManifestKind)] = &[
    ("bundle.gravitational.io/v2", "Bundle", ManifestKind::Bundle),
    (
        "cluster.gravitational.io/v2",
        "Cluster",
        ManifestKind::Cluster,
    ),
];

/// Reads and validates the manifest at `path`.
pub fn load_manifest(path: &Path) -> Result<Manifest, ManifestError> {
    let text = crate::source_text::read_text(path).map_err(|e| ManifestError::io(path, e))?;
    parse_manifest(path, &text)
}

/// Validates manifest `text`, reporting problems as positions in `path`.
///
/// Every problem is collected, so one run shows them all.
pub fn parse_manifest(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let src = SourceText::new(path, text);
    let documents = src.load().map_err(|d| ManifestError::Invalid(vec![d]))?;
    let mut objects = documents.iter().filter(|d| !is_null(d));
    let Some(root) = objects.next() else {
        let diagnostic = Diagnostic::new(Location::new(path, 1, 1), "the manifest is empty")
            .with_hint("start with `apiVersion: bundle.gravitational.io/v2` and `kind: Bundle`");
        return Err(ManifestError::Invalid(vec![diagnostic]));
    };
    let mut c = Checker::new(&src);
    if let Some(extra) = objects.next() {
        c.error(extra, "the manifest must be a single YAML document")
            .hint = Some("remove the `---` and everything after it".to_string());
    }
    let manifest = read_manifest(&mut c, root);
    let mut diagnostics = c.diagnostics;
    sort_diagnostics(&mut diagnostics);
    match manifest {
        Some(manifest) if diagnostics.is_empty() => Ok(manifest),
        _ => Err(ManifestError::Invalid(diagnostics)),
    }
}

fn read_manifest(c: &mut Checker, root: &Node) -> Option<Manifest> {
    let f = c.mapping(root, "", TOP_FIELDS)?;
    let kind = read_kind(c, &f);
    let metadata = c.required(&f, "metadata").and_then(|m| read_metadata(c, m));
    let installer = f
        .get("installer")
        .and_then(|n| node_profile::read_installer(c, n));
    let node_profiles = f
        .get("nodeProfiles")
        .map(|n| node_profile::read_node_profiles(c, n))
        .unwrap_or_default();
    if let Some(installer) = f.get("installer") {
        node_profile::check_flavor_profiles(c, installer, &node_profiles);
    }
    let hooks = f
        .get("hooks")
        .map(|n| hooks::read_hooks(c, n))
        .unwrap_or_default();
    let providers = f
        .get("providers")
        .map(|n| cluster_options::read_providers(c, n));
    let system_options = f
        .get("systemOptions")
        .and_then(|n| cluster_options::read_system_options(c, n, "systemOptions"));
    let dependencies = f
        .get("dependencies")
        .map(|n| cluster_options::read_dependencies(c, n));
    let endpoints = f
        .get("endpoints")
        .map(|n| cluster_options::read_endpoints(c, n));
    let license = f
        .get("license")
        .and_then(|n| cluster_options::read_license(c, n));
    let extensions = f
        .get("extensions")
        .map(|n| read_extensions(c, n))
        .unwrap_or_default();
    c.opt_string(&f, "webConfig");
    let images = f
        .get("images")
        .map(|n| read_images(c, n))
        .unwrap_or_default();
    Some(Manifest {
        path: c.src.path().to_path_buf(),
        dir: manifest_dir(c.src.path()),
        text: c.src.text.clone(),
        kind: kind?,
        metadata: metadata?,
        installer,
        node_profiles,
        hooks,
        providers: providers.unwrap_or_default(),
        system_options,
        dependencies: dependencies.unwrap_or_default(),
        extensions,
        endpoints: endpoints.unwrap_or_default(),
        license,
        logo: c.opt_string(&f, "logo"),
        base_image: c.opt_string(&f, "baseImage"),
        release_notes: c.opt_string(&f, "releaseNotes"),
        images,
    })
}

fn manifest_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_kind(c: &mut Checker, f: &Fields) -> Option<ManifestKind> {
    let api_node = c.required(f, "apiVersion");
    let kind_node = c.required(f, "kind");
    let api_version = api_node.and_then(|n| c.string(n, "apiVersion"))?;
    let kind = kind_node.and_then(|n| c.string(n, "kind"))?;
    let found = KINDS
        .iter()
        .find(|(a, k, _)| *a == api_version && *k == kind);
    if let Some((_, _, manifest_kind)) = found {
        return Some(*manifest_kind);
    }
    // Point at whichever half is unknown; if both are known they just don't pair.
    let api_known = KINDS.iter().any(|(a, _, _)| *a == api_version);
    let at = if api_known { kind_node } else { api_node }.expect("both were read");
    c.error(
        at,
        format!("unsupported manifest type: apiVersion `{api_version}` with kind `{kind}`"),
    )
    .hint = Some(
        "use `apiVersion: bundle.gravitational.io/v2` with `kind: Bundle`, \
         or `apiVersion: cluster.gravitational.io/v2` with `kind: Cluster`"
            .to_string(),
    );
    None
}

fn read_metadata(c: &mut Checker, node: &Node) -> Option<Metadata> {
    let f = c.mapping(node, "metadata", METADATA_FIELDS)?;
    let name = c.req_string(&f, "name");
    if let (Some(name), Some(name_node)) = (&name, f.get("name")) {
        if !is_dns_label(name) {
            c.error(name_node, format!("app name `{name}` is not a valid DNS-1123 label"))
                .hint = Some(
                "use at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit"
                    .to_string(),
            );
        }
    }
    let version = c.required(&f, "resourceVersion").and_then(|n| {
        let text = c.string(n, "metadata.resourceVersion")?;
        match semver::Version::parse(&text) {
            Ok(version) => Some(version),
            Err(e) => {
                c.error(
                    n,
                    format!("resourceVersion `{text}` is not a semantic version: {e}"),
                )
                .hint = Some("use MAJOR.MINOR.PATCH, e.g. 1.0.0".to_string());
                None
            }
        }
    });
    let description = c.opt_string(&f, "description");
    for field in ["namespace", "repository", "author", "createdTimestamp"] {
        c.opt_string(&f, field);
    }
    c.opt_bool(&f, "hidden");
    if let Some(labels) = f.get("labels") {
        c.string_map(labels, "metadata.labels");
    }
    Some(Metadata {
        name: name?,
        version: version?,
        description,
    })
}

fn is_dns_label(name: &str) -> bool {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && ok_char(bytes[0])
        && ok_char(bytes[bytes.len() - 1])
        && bytes.iter().all(|&b| ok_char(b) || b == b'-')
}

fn read_images(c: &mut Checker, node: &Node) -> Vec<ImageEntry> {
    let mut images = Vec::new();
    for (path, item) in c.list(node, "images") {
        let Some(text) = c.string(item, &path) else {
            continue;
        };
        match ImageRef::parse(&text) {
            Ok(image) => images.push(ImageEntry {
                image,
                origin: c.src.origin(item).expect("the manifest is not embedded"),
            }),
            Err(e) => c.error(item, e.to_string()).hint = e.hint.clone(),
        }
    }
    images
}

fn read_extensions(c: &mut Checker, node: &Node) -> BTreeMap<String, serde_json::Value> {
    let Some(f) = c.any_mapping(node, "extensions") else {
        return BTreeMap::new();
    };
    f.entries()
        .map(|(_, key, value)| (key.to_string(), to_json(value)))
        .collect()
}

pub(crate) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.data {
        YamlData::Value(Scalar::Null) => Value::Null,
        YamlData::Value(Scalar::Boolean(b)) => Value::Bool(*b),
        YamlData::Value(Scalar::Integer(i)) => Value::from(*i),
        YamlData::Value(Scalar::FloatingPoint(f)) => Value::from(f.into_inner()),
        YamlData::Value(Scalar::String(s)) => Value::String(s.to_string()),
        YamlData::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        YamlData::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = k
                        .data
                        .as_str()
                        .map_or_else(|| format!("{:?}", k.data), str::to_string);
                    (key, to_json(v))
                })
                .collect(),
        ),
        YamlData::Tagged(_, inner) => to_json(inner),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::HookJob;

    const HEAD: &str = "apiVersion: bundle.gravitational.io/v2\nkind: Bundle\nmetadata:\n  name: app\n  resourceVersion: 1.0.0\n";

    /// Every diagnostic as `FILE:LINE:COLUMN: message` (hints on their own line).
    fn errors(text: &str) -> Vec<String> {
        let err = parse_manifest(Path::new("app.yaml"), text).unwrap_err();
        err.diagnostics().iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn accepts_the_minimal_manifest() {
        let m = parse_manifest(Path::new("app.yaml"), HEAD).unwrap();
        assert_eq!(m.kind, ManifestKind::Bundle);
        assert_eq!(m.metadata.name, "app");
        assert_eq!(m.dir, PathBuf::from("."));
    }

    #[test]
    fn reports_yaml_syntax_errors_with_the_parser_message() {
        assert_eq!(
            errors("apiVersion: x\nkind: [Bundle\n"),
            ["app.yaml:3:1: YAML syntax error: while parsing a flow sequence, expected ',' or ']'"]
        );
        assert_eq!(
            errors("kind: a\nkind: b\n"),
            ["app.yaml:2:1: YAML syntax error: duplicated key in mapping"]
        );
    }

    #[test]
    fn unknown_fields_name_their_parent_and_suggest_a_close_name() {
        let text = "apiVersion: bundle.gravitational.io/v2\nkind: Bundle\nmetadata:\n  name: app\n  resourceVersio: 1.0.0\nnodeprofiles: []\n";
        assert_eq!(
            errors(text),
            [
                "app.yaml:4:3: missing required field `resourceVersion` in `metadata`",
                "app.yaml:5:3: unknown field `resourceVersio` in `metadata`\n  hint: did you mean `resourceVersion`?",
                "app.yaml:6:1: unknown field `nodeprofiles` in the top level\n  hint: did you mean `nodeProfiles`?",
            ]
        );
    }

    #[test]
    fn rejects_unknown_manifest_types() {
        let text = HEAD.replace("kind: Bundle", "kind: Application");
        let got = errors(&text);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("app.yaml:2:7: unsupported manifest type: apiVersion `bundle.gravitational.io/v2` with kind `Application`\n  hint: use `apiVersion: bundle.gravitational.io/v2` with `kind: Bundle`"), "{}", got[0]);
        let text = HEAD.replace("bundle.gravitational.io/v2", "v1");
        assert!(errors(&text)[0].starts_with("app.yaml:1:13: unsupported manifest type"));
    }

    #[test]
    fn resource_version_must_be_semver() {
        let text = HEAD.replace("1.0.0", "1.0");
        assert_eq!(
            errors(&text),
            ["app.yaml:5:20: resourceVersion `1.0` is not a semantic version: unexpected end of input while parsing minor version number\n  hint: use MAJOR.MINOR.PATCH, e.g. 1.0.0"]
        );
    }

    #[test]
    fn reports_every_problem_in_one_pass_sorted_by_position() {
        let text = format!(
            "{HEAD}extensions: [monitoring]\nimages: nginx\nnodeProfiles:\n  - name: n\n    requirements:\n      cpu: {{min: 1.5}}\n      ram: {{min: lots, max: 4GB}}\n      volumes:\n        - capacity: 10GB\n      network:\n        ports:\n          - protocols: [sctp]\n            ranges: [\"70000\"]\n    taints:\n      - {{key: k, effect: Never}}\nendpoints:\n  - name: e\n    port: 0\n"
        );
        let got = errors(&text);
        let want = [
            "app.yaml:6:13: `extensions` must be a mapping, found a list",
            "app.yaml:7:9: `images` must be a list, found a string",
            "app.yaml:11:18: `nodeProfiles[0].requirements.cpu.min` must be an integer, found a number",
            "app.yaml:12:18: `nodeProfiles[0].requirements.ram.min`: `lots` is not a size",
            "app.yaml:14:11: missing required field `path` in `nodeProfiles[0].requirements.volumes[0]`",
            "app.yaml:17:25: unknown protocol `sctp`",
            "app.yaml:18:22: `70000` is not a port or port range",
            "app.yaml:20:26: unknown taint effect `Never`",
            "app.yaml:23:11: port 0 is out of range (1 to 65535)",
        ];
        let messages: Vec<&str> = got.iter().map(|d| d.split('\n').next().unwrap()).collect();
        assert_eq!(messages, want);
        assert!(got[3].contains("hint: write a number and a unit, e.g. `4GB`"));
    }

    #[test]
    fn cpu_min_must_be_positive_and_flavors_must_use_defined_profiles() {
        let text = format!(
            "{HEAD}nodeProfiles:\n  - name: worker\n    requirements:\n      cpu:\n        min: 0\ninstaller:\n  flavors:\n    default: big\n    items:\n      - name: one\n        nodes:\n          - profile: wroker\n            count: 1\n"
        );
        assert_eq!(
            errors(&text),
            [
                "app.yaml:10:14: `nodeProfiles[0].requirements.cpu.min` must be a positive integer",
                "app.yaml:13:14: default flavor `big` is not one of the flavors\n  hint: flavors are: one",
                "app.yaml:17:22: flavor uses undefined node profile `wroker`\n  hint: did you mean `worker`?",
            ]
        );
    }

    #[test]
    fn inline_hook_errors_point_into_the_manifest() {
        let text = format!(
            "{HEAD}hooks:\n  install:\n    job: |\n      apiVersion: batch/v1\n      kind: Job\n      metadata: {{name: [x}}\n  start:\n    job: |\n      apiVersion: v1\n  stop:\n    job: file:///etc/job.yaml\n  bogus:\n    job: x\n"
        );
        assert_eq!(
            errors(&text),
            [
                "app.yaml:11:26: in hook `install` job: YAML syntax error: while parsing a flow sequence, expected ',' or ']'",
                "app.yaml:14:7: in hook `start` job: missing required field `kind` in `job`",
                "app.yaml:16:10: hook `stop`: `/etc/job.yaml` is absolute; it must be relative to the manifest\n  hint: hook files live beside the manifest: `file://hooks/install.yaml`",
                "app.yaml:17:3: unknown field `bogus` in `hooks`",
            ]
        );
    }

    #[test]
    fn reads_the_full_fixture() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/manifests/full/app.yaml");
        let m = load_manifest(&path).unwrap();
        assert_eq!(m.kind, ManifestKind::Cluster);
        assert_eq!(
            m.metadata.version,
            semver::Version::parse("1.2.3-alpha.1").unwrap()
        );
        assert_eq!(m.metadata.description.as_deref(), Some("An online shop.\n"));
        let worker = &m.node_profiles[0];
        assert_eq!(worker.requirements.cpu.as_ref().unwrap().min, Some(2));
        let ram = worker.requirements.ram.as_ref().unwrap();
        assert_eq!(ram.min.as_ref().unwrap().bytes, 4_000_000_000);
        assert_eq!(ram.max.as_ref().unwrap().bytes, 64 << 30);
        assert_eq!(
            worker.requirements.volumes[0]
                .capacity
                .as_ref()
                .unwrap()
                .bytes,
            1_500_000_000
        );
        let ports = &worker.requirements.network.as_ref().unwrap().ports;
        assert_eq!(ports[0].ranges, [(8080, 8080), (9000, 9010)]);
        assert_eq!(ports[1].protocols, ["udp"]);
        assert_eq!(worker.taints[0].effect, "NoSchedule");
        let flavors = m.installer.as_ref().unwrap().flavors.as_ref().unwrap();
        assert_eq!(flavors.items[1].nodes[1].count, 2);
        assert!(m.providers.azure.as_ref().unwrap().disabled);
        assert_eq!(
            m.providers
                .generic
                .as_ref()
                .unwrap()
                .network_type
                .as_deref(),
            Some("calico")
        );
        assert_eq!(
            m.system_options
                .as_ref()
                .unwrap()
                .docker_storage_driver
                .as_deref(),
            Some("overlay2")
        );
        assert_eq!(m.dependencies.apps, ["gravitational.io/dns-app:0.3.0"]);
        assert_eq!(
            m.extensions["monitoring"],
            serde_json::json!({"disabled": true})
        );
        assert_eq!(m.endpoints[0].port, Some(443));
        assert!(matches!(
            m.hooks.get("install").unwrap().job,
            HookJob::Inline(_)
        ));
        assert_eq!(
            m.hooks.get("update").unwrap().job,
            HookJob::File("hooks/update.yaml".into())
        );
        assert_eq!(m.images.len(), 2);
        let quoted = &m.images[1].origin;
        assert!(m.text[quoted.span.clone()].starts_with("'registry.example.com:5000/"));
        assert_eq!((quoted.location.line, quoted.location.column), (125, 5));
    }

    #[test]
    fn empty_and_multi_document_manifests_are_errors() {
        assert_eq!(
            errors("# nothing\n"),
            ["app.yaml:1:1: the manifest is empty\n  hint: start with `apiVersion: bundle.gravitational.io/v2` and `kind: Bundle`"]
        );
        let two = format!("{HEAD}---\nkind: Other\n");
        assert_eq!(
            errors(&two),
            ["app.yaml:7:1: the manifest must be a single YAML document\n  hint: remove the `---` and everything after it"]
        );
    }

    #[test]
    fn the_bad_fixture_reports_everything() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/manifests/bad-manifest/app.yaml");
        let err = load_manifest(&path).unwrap_err();
        let at: Vec<(usize, usize)> = err
            .diagnostics()
            .iter()
            .map(|d| (d.location.line, d.location.column))
            .collect();
        assert_eq!(
            at,
            [
                (4, 3),
                (4, 9),
                (5, 3),
                (10, 14),
                (12, 14),
                (13, 11),
                (19, 22),
                (22, 5),
                (29, 7)
            ]
        );
    }
}
