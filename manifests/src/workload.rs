//! Where Kubernetes objects keep their container images: the pod spec of each
//! workload kind, and in it `containers`, `initContainers` and
//! `ephemeralContainers`. Only these fields are images; nothing else is guessed.

use saphyr::YamlData;

use crate::schema_check::Node;

/// A container's `image:` field, with a description of where it is.
pub(crate) struct ImageField<'a, 'y> {
    /// The `image:` value node.
    pub node: &'a Node<'y>,
    /// e.g. `Deployment/web container nginx`.
    pub context: String,
}

/// What a document turned out to be.
pub(crate) enum Object<'a, 'y> {
    /// A Kubernetes object (possibly a `List`), with its image fields.
    Kubernetes(Vec<ImageField<'a, 'y>>),
    /// Not a Kubernetes object; the reason, for a warning.
    Other(&'static str),
}

/// The path from an object to its pod spec, per kind.
fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "ReplicaSet"
        | "ReplicationController"
        | "StatefulSet"
        | "DaemonSet"
        | "Job" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        "PodTemplate" => &["template", "spec"],
        _ => return None,
    })
}

const CONTAINER_LISTS: &[(&str, &str)] = &[
    ("initContainers", "init container"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeral container"),
];

fn get<'a, 'y>(node: &'a Node<'y>, key: &str) -> Option<&'a Node<'y>> {
    node.data.as_mapping_get(key)
}

/// The annotation with which a vendor packs, on purpose, a Secret with
/// data or an object holding a private key.
pub const PACK_CREDENTIALS: &str = "tele.dev/pack-credentials";

/// A credential in a document that must not be packed unless meant.
pub(crate) struct Credential<'a, 'y> {
    pub node: &'a Node<'y>,
    pub message: String,
    pub hint: String,
}

/// The credentials that `document` (a Kubernetes object, or a List of
/// them) would put into a bundle: a kubeconfig, a Secret with data, a
/// private key in any string; the last two unless the object carries the
/// [`PACK_CREDENTIALS`] annotation set to "true".
pub(crate) fn credentials<'a, 'y>(document: &'a Node<'y>) -> Vec<Credential<'a, 'y>> {
    let kind = get(document, "kind")
        .and_then(|n| n.data.as_str())
        .unwrap_or_default();
    if kind == "List" || kind.ends_with("List") {
        let items = get(document, "items").and_then(|n| n.data.as_vec());
        return items
            .into_iter()
            .flatten()
            .flat_map(|i| credentials(i))
            .collect();
    }
    let metadata = get(document, "metadata");
    let name = metadata
        .and_then(|m| get(m, "name"))
        .and_then(|n| n.data.as_str())
        .unwrap_or("<unnamed>");
    if kind == "Config" {
        return vec![Credential {
            node: document,
            message: "a kubeconfig (kind: Config) holds a cluster's credentials and is never packed".into(),
            hint: "move it out of the app's directory, or start its file name with a dot (such files are not read)".into(),
        }];
    }
    let meant = metadata
        .and_then(|m| get(m, "annotations"))
        .and_then(|a| get(a, PACK_CREDENTIALS))
        .and_then(|v| v.data.as_str())
        == Some("true");
    if meant {
        return vec![];
    }
    let hint = format!(
        "leave the credential out and have the admin create it at the install, or, to pack it on purpose, annotate {kind}/{name} with {PACK_CREDENTIALS}: \"true\""
    );
    let mut found = Vec::new();
    if kind == "Secret" {
        for field in ["data", "stringData"] {
            let Some(data) = get(document, field) else {
                continue;
            };
            if data.data.as_mapping().is_some_and(|m| !m.is_empty()) {
                found.push(Credential {
                    node: data,
                    message: format!(
                        "Secret/{name} holds {field}: credentials are not packed unless meant"
                    ),
                    hint: hint.clone(),
                });
            }
        }
        if !found.is_empty() {
            return found;
        }
    }
    let mut stack = vec![document];
    while let Some(node) = stack.pop() {
        match &node.data {
            YamlData::Mapping(m) => stack.extend(m.values()),
            YamlData::Sequence(v) => stack.extend(v.iter()),
            _ => {
                if node
                    .data
                    .as_str()
                    .is_some_and(|t| t.contains("PRIVATE KEY-----"))
                {
                    found.push(Credential {
                        node,
                        message: format!("{kind}/{name} holds a private key: credentials are not packed unless meant"),
                        hint: hint.clone(),
                    });
                    break;
                }
            }
        }
    }
    found
}

/// Classifies one YAML document and finds its image fields.
pub(crate) fn scan_object<'a, 'y>(document: &'a Node<'y>) -> Object<'a, 'y> {
    if !matches!(document.data, YamlData::Mapping(_)) {
        return Object::Other("the document is not a mapping");
    }
    let api_version = get(document, "apiVersion").and_then(|n| n.data.as_str());
    let kind = get(document, "kind").and_then(|n| n.data.as_str());
    let (Some(_), Some(kind)) = (api_version, kind) else {
        return Object::Other("the document has no `apiVersion` and `kind`");
    };
    let mut found = Vec::new();
    if kind == "List" || kind.ends_with("List") {
        let items = get(document, "items").and_then(|n| n.data.as_vec());
        for item in items.into_iter().flatten() {
            if let Object::Kubernetes(images) = scan_object(item) {
                found.extend(images);
            }
        }
        return Object::Kubernetes(found);
    }
    let Some(path) = pod_spec_path(kind) else {
        return Object::Kubernetes(found);
    };
    let name = get(document, "metadata")
        .and_then(|m| get(m, "name").or_else(|| get(m, "generateName")))
        .and_then(|n| n.data.as_str())
        .unwrap_or("<unnamed>");
    let spec = path.iter().try_fold(document, |node, key| get(node, key));
    let Some(spec) = spec else {
        return Object::Kubernetes(found);
    };
    for (list, label) in CONTAINER_LISTS {
        let containers = get(spec, list).and_then(|n| n.data.as_vec());
        for container in containers.into_iter().flatten() {
            let Some(image) = get(container, "image") else {
                continue;
            };
            let container_name = get(container, "name").and_then(|n| n.data.as_str());
            found.push(ImageField {
                node: image,
                context: format!(
                    "{kind}/{name} {label} {}",
                    container_name.unwrap_or("<unnamed>")
                ),
            });
        }
    }
    Object::Kubernetes(found)
}
