//! Resources checked against the object schema of Kubernetes 1.20, the way the
//! API server would read them: an unknown `kind` (with the kinds of its API
//! group to choose from), an unknown field (with a "did you mean"), a missing
//! required field or a value of the wrong type is reported at its place, at
//! build time rather than at the customer's `./install`.
//!
//! The schema (`schema/kubernetes-1.20.json`) is the compact form that
//! `scripts/kubernetes-schema` writes from the OpenAPI document of the
//! runtime's source tree (`api/openapi-spec/swagger.json`, the one
//! `kubectl --validate` uses). Custom resources whose CustomResourceDefinition
//! is in the bundle are accepted as they are; the API server checks their
//! fields against the definition's own schema.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use saphyr::{Scalar, YamlData};
use serde::Deserialize;

use crate::diagnostic::{Diagnostic, Location};
use crate::schema_check::{describe, is_null, suggest, Checker, Node};
use crate::source_text::SourceText;

/// The Kubernetes version whose schema resources are checked against.
pub const KUBERNETES_VERSION: &str = "1.20";

const SCHEMA_JSON: &str = include_str!("../schema/kubernetes-1.20.json");

#[derive(Deserialize)]
struct Schema {
    /// API version (`apps/v1`) -> kind -> type name.
    kinds: BTreeMap<String, BTreeMap<String, String>>,
    types: HashMap<String, TypeDef>,
}

#[derive(Deserialize)]
struct TypeDef {
    /// Field name -> its type.
    p: BTreeMap<String, Ty>,
    /// Required fields.
    #[serde(default)]
    r: Vec<String>,
}

/// A field's type, as `scripts/kubernetes-schema` codes it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Ty {
    Code(String),
    List(Vec<Ty>),
    Map { m: Box<Ty> },
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(SCHEMA_JSON).expect("the embedded schema parses"))
}

/// Kinds that CustomResourceDefinitions in the bundle define: API version -> kinds.
#[derive(Default, Debug)]
pub(crate) struct CustomKinds(BTreeMap<String, BTreeSet<String>>);

impl CustomKinds {
    /// Records the kinds `document` defines, if it is a CustomResourceDefinition.
    pub fn learn(&mut self, document: &Node) {
        let text = |node: Option<&Node>| node.and_then(|n| n.data.as_str()).map(str::to_string);
        let api = text(get(document, "apiVersion"));
        let is_crd = text(get(document, "kind")).as_deref() == Some("CustomResourceDefinition")
            && api.is_some_and(|a| a.starts_with("apiextensions.k8s.io/"));
        let Some(spec) = get(document, "spec").filter(|_| is_crd) else {
            return;
        };
        let (Some(group), Some(kind)) = (
            text(get(spec, "group")),
            text(get(spec, "names").and_then(|n| get(n, "kind"))),
        ) else {
            return;
        };
        let mut versions: Vec<String> = get(spec, "versions")
            .and_then(|v| v.data.as_vec())
            .into_iter()
            .flatten()
            .filter_map(|v| text(get(v, "name")))
            .collect();
        versions.extend(text(get(spec, "version")));
        for v in versions {
            self.0
                .entry(format!("{group}/{v}"))
                .or_default()
                .insert(kind.clone());
        }
    }

    fn defines(&self, api: &str, kind: &str) -> bool {
        self.0.get(api).is_some_and(|kinds| kinds.contains(kind))
    }
}

/// Checks every object of a YAML or JSON text on its own (no custom kinds
/// beyond the ones it defines itself): the problems found, errors and
/// warnings alike. For resources that tele makes, such as the monitoring stack.
pub fn check_objects(path: &std::path::Path, text: &str) -> Vec<Diagnostic> {
    let src = SourceText::new(path, text);
    let documents = match src.load() {
        Ok(documents) => documents,
        Err(diagnostic) => return vec![diagnostic],
    };
    let mut custom = CustomKinds::default();
    for d in &documents {
        custom.learn(d);
    }
    let mut found: Vec<Diagnostic> = documents
        .iter()
        .flat_map(|d| check(&src, d))
        .flat_map(|c| match c {
            Checked::Known(found) => found,
            Checked::Unknown(u) => u.judge(&custom).map(|(_, d)| d).into_iter().collect(),
        })
        .collect();
    crate::diagnostic::sort_diagnostics(&mut found);
    found
}

/// An object of a kind Kubernetes does not know and no definition in the
/// bundle has been seen for yet; judged once every file has been read.
pub(crate) struct Unresolved {
    pub api: String,
    pub kind: String,
    pub location: Location,
}

impl Unresolved {
    /// The error or warning for this object, given every definition in the bundle.
    pub fn judge(&self, custom: &CustomKinds) -> Option<(bool, Diagnostic)> {
        if custom.defines(&self.api, &self.kind) {
            return None;
        }
        let group = self.api.split_once('/').map(|(g, _)| g).unwrap_or("");
        let diagnostic = Diagnostic::new(
            self.location.clone(),
            format!(
                "no CustomResourceDefinition in the bundle defines kind `{}` of `{}`",
                self.kind, self.api
            ),
        );
        if group.contains('.') && !group.ends_with(".k8s.io") {
            // A custom group: its definition may come from an operator the app
            // starts; say so, but build.
            let hint = "the cluster must define it before the app's resources are created (ship its CustomResourceDefinition in the bundle to be sure)";
            return Some((false, diagnostic.with_hint(hint)));
        }
        let hint = format!(
            "Kubernetes {KUBERNETES_VERSION} has no API version `{}`{}",
            self.api,
            suggest_api(&self.api).map_or(String::new(), |a| format!("; did you mean `{a}`?"))
        );
        Some((true, diagnostic.with_hint(hint)))
    }
}

fn suggest_api(api: &str) -> Option<&'static str> {
    let known: Vec<&'static str> = schema().kinds.keys().map(String::as_str).collect();
    suggest(api, &known)
}

/// What checking one object found.
pub(crate) enum Checked {
    /// Problems found (none when it is fine).
    Known(Vec<Diagnostic>),
    /// A kind Kubernetes does not know: it may be a custom resource.
    Unknown(Unresolved),
}

/// Checks one object (a document with `apiVersion` and `kind`) against the schema.
pub(crate) fn check(src: &SourceText, document: &Node) -> Vec<Checked> {
    let (Some(api), Some(kind)) = (
        get(document, "apiVersion").and_then(|n| n.data.as_str()),
        get(document, "kind").and_then(|n| n.data.as_str()),
    ) else {
        return Vec::new();
    };
    if api == "v1" && kind == "Config" {
        // A kubeconfig: refused as credentials (see workload::credentials).
        return Vec::new();
    }
    let schema = schema();
    let group_kinds = schema.kinds.get(api);
    let Some(type_name) = group_kinds.and_then(|kinds| kinds.get(kind)) else {
        if kind.ends_with("List") {
            // v1 List and the typed lists: check each item.
            if let Some(items) = get(document, "items").and_then(|n| n.data.as_vec()) {
                return items.iter().flat_map(|item| check(src, item)).collect();
            }
        }
        let kind_node = get(document, "kind").expect("read above");
        if let Some(kinds) = group_kinds {
            // A built-in API group: the kind is a mistake.
            let names: Vec<&str> = kinds.keys().map(String::as_str).collect();
            let mut hint = suggest(kind, &names).map(|k| format!("did you mean `{k}`?"));
            if hint.is_none() {
                hint = elsewhere(kind).map(|a| format!("`{kind}` is served as `{a}`"));
            }
            let diagnostic = Diagnostic::new(
                src.node_location(kind_node),
                format!("unknown kind `{kind}` in `{api}` (Kubernetes {KUBERNETES_VERSION})"),
            );
            return vec![Checked::Known(vec![Diagnostic { hint, ..diagnostic }])];
        }
        if let Some(served) = elsewhere(kind) {
            let at = get(document, "apiVersion").expect("read above");
            let diagnostic = Diagnostic::new(
                src.node_location(at),
                format!("Kubernetes {KUBERNETES_VERSION} does not serve `{kind}` as `{api}`"),
            );
            return vec![Checked::Known(vec![
                diagnostic.with_hint(format!("use `apiVersion: {served}`"))
            ])];
        }
        return vec![Checked::Unknown(Unresolved {
            api: api.to_string(),
            kind: kind.to_string(),
            location: src.node_location(kind_node),
        })];
    };
    let name = get(document, "metadata")
        .and_then(|m| get(m, "name").or_else(|| get(m, "generateName")))
        .and_then(|n| n.data.as_str())
        .unwrap_or("<unnamed>");
    let mut walk = Walk {
        checker: Checker::new(src),
        schema,
    };
    walk.value(document, &Ty::Code(format!("#{type_name}")), "");
    let mut diagnostics = walk.checker.diagnostics;
    for d in &mut diagnostics {
        d.message = format!("{kind} `{name}`: {}", d.message);
    }
    vec![Checked::Known(diagnostics)]
}

/// The newest API version serving `kind`, when one does.
fn elsewhere(kind: &str) -> Option<&'static str> {
    let versions: Vec<&'static str> = schema()
        .kinds
        .iter()
        .filter(|(_, kinds)| kinds.contains_key(kind))
        .map(|(api, _)| api.as_str())
        .collect();
    // Prefer a GA version (`v1`) over betas, and betas over alphas.
    let rank = |a: &str| match (a.contains("alpha"), a.contains("beta")) {
        (false, false) => 0,
        (false, true) => 1,
        _ => 2,
    };
    versions.into_iter().min_by_key(|a| rank(a))
}

struct Walk<'s> {
    checker: Checker<'s>,
    schema: &'static Schema,
}

impl Walk<'_> {
    fn value(&mut self, node: &Node, ty: &Ty, path: &str) {
        if is_null(node) {
            return;
        }
        let node = untagged(node);
        match ty {
            Ty::List(items) => {
                let item_ty = items.first().expect("lists have an item type");
                for (item_path, item) in self.checker.list(node, path) {
                    self.value(item, item_ty, &item_path);
                }
            }
            Ty::Map { m } => {
                if let Some(fields) = self.checker.any_mapping(node, path) {
                    for (_, key, value) in fields.entries() {
                        self.value(value, m, &fields.child(key));
                    }
                }
            }
            Ty::Code(code) => match code.strip_prefix('#') {
                Some(type_name) => self.object(node, type_name, path),
                None => self.scalar(node, code, path),
            },
        }
    }

    fn object(&mut self, node: &Node, type_name: &str, path: &str) {
        let Some(def) = self.schema.types.get(type_name) else {
            return;
        };
        let known: Vec<&str> = def.p.keys().map(String::as_str).collect();
        let Some(fields) = self.checker.mapping(node, path, &known) else {
            return;
        };
        for required in &def.r {
            self.checker.required(&fields, required);
        }
        for (_, key, value) in fields.entries() {
            if let Some(ty) = def.p.get(key) {
                self.value(value, ty, &fields.child(key));
            }
        }
        if type_name == "io.k8s.api.core.v1.PodSpec" {
            let empty = fields
                .get("containers")
                .and_then(|c| c.data.as_vec())
                .is_some_and(|c| c.is_empty());
            if empty {
                let at = fields.get("containers").expect("checked");
                self.checker.error(
                    at,
                    format!(
                        "`{}` is empty: a pod needs a container",
                        fields.child("containers")
                    ),
                );
            }
        }
    }

    fn scalar(&mut self, node: &Node, code: &str, path: &str) {
        let YamlData::Value(value) = &node.data else {
            if code != "a"
                && !matches!(node.data, YamlData::Alias(_) | YamlData::Representation(..))
            {
                self.checker.expected(node, path, scalar_name(code));
            }
            return;
        };
        let fits = match code {
            "s" => matches!(value, Scalar::String(_)),
            "i" => matches!(value, Scalar::Integer(_)),
            "n" => matches!(value, Scalar::Integer(_) | Scalar::FloatingPoint(_)),
            "b" => matches!(value, Scalar::Boolean(_)),
            "q" => matches!(
                value,
                Scalar::String(_) | Scalar::Integer(_) | Scalar::FloatingPoint(_)
            ),
            "is" => matches!(value, Scalar::String(_) | Scalar::Integer(_)),
            _ => true,
        };
        if fits {
            return;
        }
        let found = describe(node);
        let raw = self.checker.src.raw(node).to_string();
        let diagnostic = self.checker.error(
            node,
            format!("`{path}` must be {}, found {found}", scalar_name(code)),
        );
        if code == "s" {
            diagnostic.hint = Some(format!("quote it: `\"{raw}\"`"));
        }
    }
}

fn scalar_name(code: &str) -> &'static str {
    match code {
        "s" => "a string",
        "i" => "an integer",
        "n" => "a number",
        "b" => "`true` or `false`",
        "q" => "a quantity (such as `500m` or `1Gi`)",
        "is" => "an integer or a string",
        _ => "a value",
    }
}

fn untagged<'a, 'y>(node: &'a Node<'y>) -> &'a Node<'y> {
    match &node.data {
        YamlData::Tagged(_, inner) => untagged(inner),
        _ => node,
    }
}

fn get<'a, 'y>(node: &'a Node<'y>, key: &str) -> Option<&'a Node<'y>> {
    let YamlData::Mapping(map) = &node.data else {
        return None;
    };
    map.iter()
        .find(|(k, _)| k.data.as_str() == Some(key))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        check_objects(std::path::Path::new("r.yaml"), text)
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.19
        ports:
        - containerPort: 80
        resources:
          limits: {cpu: 1, memory: 64Mi}
        livenessProbe:
          httpGet: {path: /, port: http}
";

    #[test]
    fn a_correct_deployment_passes() {
        assert_eq!(problems(DEPLOYMENT), Vec::<String>::new());
    }

    #[test]
    fn a_misspelt_kind_names_the_kind_meant() {
        let p = problems(&DEPLOYMENT.replace("kind: Deployment", "kind: Deploymnt"));
        assert_eq!(
            p,
            ["r.yaml:2:7: unknown kind `Deploymnt` in `apps/v1` (Kubernetes 1.20)\n  hint: did you mean `Deployment`?"]
        );
    }

    #[test]
    fn a_misspelt_field_is_unknown_and_the_required_one_missing() {
        let p = problems(&DEPLOYMENT.replace("      containers:", "      contianers:"));
        assert_eq!(
            p,
            [
                "r.yaml:14:7: Deployment `web`: missing required field `containers` in `spec.template.spec`",
                "r.yaml:14:7: Deployment `web`: unknown field `contianers` in `spec.template.spec`\n  hint: did you mean `containers`?",
            ]
        );
    }

    #[test]
    fn wrong_types_and_an_empty_pod_are_reported() {
        let p = problems(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {v: 1.0}\nspec:\n  containers: []\n  hostNetwork: yes please\n",
        );
        assert_eq!(
            p,
            [
                "r.yaml:5:15: Pod `p`: `metadata.labels.v` must be a string, found a number\n  hint: quote it: `\"1.0\"`",
                "r.yaml:7:15: Pod `p`: `spec.containers` is empty: a pod needs a container",
                "r.yaml:8:16: Pod `p`: `spec.hostNetwork` must be `true` or `false`, found a string",
            ]
        );
    }

    #[test]
    fn a_kind_in_the_wrong_group_names_where_it_is_served() {
        let p = problems(&DEPLOYMENT.replace("apiVersion: apps/v1", "apiVersion: v1"));
        assert_eq!(
            p,
            ["r.yaml:2:7: unknown kind `Deployment` in `v1` (Kubernetes 1.20)\n  hint: `Deployment` is served as `apps/v1`"]
        );
        let p = problems(&DEPLOYMENT.replace("apiVersion: apps/v1", "apiVersion: app/v1"));
        assert_eq!(
            p,
            ["r.yaml:1:13: Kubernetes 1.20 does not serve `Deployment` as `app/v1`\n  hint: use `apiVersion: apps/v1`"]
        );
    }

    #[test]
    fn custom_resources_need_their_definition_in_the_bundle() {
        let cr = "apiVersion: shop.example.com/v1\nkind: Cart\nmetadata:\n  name: c\nspec:\n  anything: [1, 2]\n";
        let p = problems(cr);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "r.yaml:2:7: no CustomResourceDefinition in the bundle defines kind `Cart`"
            ),
            "{p:?}"
        );
        let crd = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: carts.shop.example.com
spec:
  group: shop.example.com
  names: {kind: Cart, plural: carts}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
---
";
        assert_eq!(problems(&format!("{crd}{cr}")), Vec::<String>::new());
        // A built-in group with an unknown version is an error with the one meant.
        let p = problems("apiVersion: apps/v2\nkind: Thing\nmetadata: {name: t}\n");
        assert!(p[0].contains("did you mean `apps/v1`?"), "{p:?}");
    }

    #[test]
    fn lists_are_checked_item_by_item() {
        let p = problems(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n  spec:\n    prots: []\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("unknown field `prots` in `spec`"), "{p:?}");
    }
}
