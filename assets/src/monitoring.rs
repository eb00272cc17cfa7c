//! The monitoring stack as it goes into a bundle's `monitoring/` directory.
//!
//! Each component is one YAML file under `assets/monitoring/`; the default
//! alerts (`assets/monitoring/alerts/*.tick`) and Grafana's dashboards
//! (`assets/monitoring/dashboards/*.json`) become ConfigMaps when rendered.
//! File names start with a number so that `kubectl apply -f monitoring/`
//! creates them in a working order: the namespace, then InfluxDB's Service
//! before any pod that finds InfluxDB through the Service's environment
//! variables (tele's clusters have no cluster DNS).

use std::collections::BTreeMap;

/// The namespace of the whole stack.
pub const NAMESPACE: &str = "monitoring";

/// The stack's components, in the order they are applied.
pub const COMPONENTS: [&str; 4] = ["influxdb", "telegraf", "kapacitor", "grafana"];

/// The label that marks a ConfigMap of alert TICKscripts (each key
/// `NAME.tick`) for the installer to load into Kapacitor.
pub const ALERTS_LABEL: &str = "tele.dev/alerts";

const NAMESPACE_YAML: &str = include_str!("../monitoring/namespace.yaml");
const INFLUXDB_YAML: &str = include_str!("../monitoring/influxdb.yaml");
const TELEGRAF_YAML: &str = include_str!("../monitoring/telegraf.yaml");
const KAPACITOR_YAML: &str = include_str!("../monitoring/kapacitor.yaml");
const GRAFANA_YAML: &str = include_str!("../monitoring/grafana.yaml");

const ALERTS: [(&str, &str); 11] = [
    (
        "br-netfilter",
        include_str!("../monitoring/alerts/br-netfilter.tick"),
    ),
    (
        "certificates",
        include_str!("../monitoring/alerts/certificates.tick"),
    ),
    (
        "etcd-down",
        include_str!("../monitoring/alerts/etcd-down.tick"),
    ),
    (
        "etcd-latency",
        include_str!("../monitoring/alerts/etcd-latency.tick"),
    ),
    (
        "filesystem",
        include_str!("../monitoring/alerts/filesystem.tick"),
    ),
    (
        "high-cpu",
        include_str!("../monitoring/alerts/high-cpu.tick"),
    ),
    (
        "high-memory",
        include_str!("../monitoring/alerts/high-memory.tick"),
    ),
    ("inodes", include_str!("../monitoring/alerts/inodes.tick")),
    (
        "ip-forward",
        include_str!("../monitoring/alerts/ip-forward.tick"),
    ),
    (
        "node-not-ready",
        include_str!("../monitoring/alerts/node-not-ready.tick"),
    ),
    (
        "pod-cpu-share",
        include_str!("../monitoring/alerts/pod-cpu-share.tick"),
    ),
];

const DASHBOARDS: [(&str, &str); 3] = [
    (
        "cluster.json",
        include_str!("../monitoring/dashboards/cluster.json"),
    ),
    (
        "node.json",
        include_str!("../monitoring/dashboards/node.json"),
    ),
    (
        "pod.json",
        include_str!("../monitoring/dashboards/pod.json"),
    ),
];

/// What the manifest's `extensions.monitoring` asks of the stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitoringOptions {
    /// No monitoring at all: nothing rendered, no images.
    pub disabled: bool,
    /// Images replacing the defaults, by component.
    pub images: BTreeMap<String, String>,
    /// Components turned on or off (all are on unless listed as `false`).
    pub components: BTreeMap<String, bool>,
}

impl MonitoringOptions {
    /// Reads `extensions.monitoring` of a manifest:
    /// `{disabled: bool, images: {COMPONENT: REF}, components: {COMPONENT: bool}}`.
    /// Absent means the defaults. Unknown keys and components are errors
    /// that name them.
    pub fn from_extensions(ext: &BTreeMap<String, serde_json::Value>) -> Result<Self, String> {
        let Some(value) = ext.get("monitoring") else {
            return Ok(Self::default());
        };
        let at = "extensions.monitoring";
        let object = value
            .as_object()
            .ok_or_else(|| format!("{at}: expected a mapping, found {}", kind(value)))?;
        let mut opts = Self::default();
        for (key, value) in object {
            match key.as_str() {
                "disabled" => {
                    opts.disabled = value.as_bool().ok_or_else(|| {
                        format!(
                            "{at}.disabled: expected true or false, found {}",
                            kind(value)
                        )
                    })?;
                }
                "images" => {
                    for (component, image) in component_map(value, &format!("{at}.images"))? {
                        let image = image.as_str().filter(|s| !s.trim().is_empty()).ok_or_else(
                            || {
                                format!(
                                    "{at}.images.{component}: expected an image reference, found {}",
                                    kind(image)
                                )
                            },
                        )?;
                        opts.images
                            .insert(component.clone(), image.trim().to_string());
                    }
                }
                "components" => {
                    for (component, on) in component_map(value, &format!("{at}.components"))? {
                        let on = on.as_bool().ok_or_else(|| {
                            format!(
                                "{at}.components.{component}: expected true or false, found {}",
                                kind(on)
                            )
                        })?;
                        opts.components.insert(component.clone(), on);
                    }
                }
                other => {
                    return Err(format!(
                        "{at}.{other}: unknown key (expected disabled, images or components)"
                    ))
                }
            }
        }
        Ok(opts)
    }

    /// Whether `component` is part of the rendered stack.
    pub fn enabled(&self, component: &str) -> bool {
        !self.disabled && self.components.get(component).copied().unwrap_or(true)
    }

    /// The image `component` runs: the manifest's, else the default.
    pub fn image(&self, component: &str) -> &str {
        self.images
            .get(component)
            .map(String::as_str)
            .unwrap_or_else(|| default_image(component))
    }
}

fn component_map<'a>(
    value: &'a serde_json::Value,
    at: &str,
) -> Result<&'a serde_json::Map<String, serde_json::Value>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{at}: expected a mapping, found {}", kind(value)))?;
    if let Some(unknown) = map.keys().find(|c| !COMPONENTS.contains(&c.as_str())) {
        return Err(format!(
            "{at}.{unknown}: unknown component (expected one of {})",
            COMPONENTS.join(", ")
        ));
    }
    Ok(map)
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

/// The upstream image a component runs unless the manifest says otherwise;
/// "" for a name that is not in [`COMPONENTS`].
pub fn default_image(component: &str) -> &'static str {
    match component {
        "influxdb" => "influxdb:1.8.10",
        "telegraf" => "telegraf:1.28",
        "kapacitor" => "kapacitor:1.7",
        "grafana" => "grafana/grafana:10.4.2",
        _ => "",
    }
}

/// The default alerts: (task name, TICKscript), sorted by name.
pub fn alerts() -> Vec<(&'static str, &'static str)> {
    ALERTS.to_vec()
}

/// The stack's files as they go into the bundle's `monitoring/` directory,
/// images replaced per `opts`, disabled components left out:
/// (relative path, content), sorted by path (which is the order to apply).
pub fn render(opts: &MonitoringOptions) -> Vec<(String, String)> {
    if opts.disabled || COMPONENTS.iter().all(|c| !opts.enabled(c)) {
        return Vec::new();
    }
    let mut files = vec![("00-namespace.yaml".to_string(), NAMESPACE_YAML.to_string())];
    let mut add = |path: &str, component: &str, text: String| {
        if opts.enabled(component) {
            files.push((
                path.to_string(),
                with_image(&text, component, opts.image(component)),
            ));
        }
    };
    add("10-influxdb.yaml", "influxdb", INFLUXDB_YAML.to_string());
    add("20-kapacitor.yaml", "kapacitor", KAPACITOR_YAML.to_string());
    add("21-kapacitor-alerts.yaml", "kapacitor", alerts_config_map());
    add("30-telegraf.yaml", "telegraf", TELEGRAF_YAML.to_string());
    add("40-grafana.yaml", "grafana", GRAFANA_YAML.to_string());
    add(
        "41-grafana-dashboards.yaml",
        "grafana",
        dashboards_config_map(),
    );
    files.sort();
    files
}

/// The images the rendered stack needs, sorted, each once.
pub fn images(opts: &MonitoringOptions) -> Vec<String> {
    let mut images: Vec<String> = COMPONENTS
        .iter()
        .filter(|c| opts.enabled(c))
        .map(|c| opts.image(c).to_string())
        .collect();
    images.sort();
    images.dedup();
    images
}

/// Replaces the component's default image on its `image:` lines, and
/// nothing else.
fn with_image(text: &str, component: &str, image: &str) -> String {
    let default = default_image(component);
    if image == default {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let indent = &body[..body.len() - body.trim_start().len()];
        if body.trim_start() == format!("image: {default}") {
            out.push_str(&format!("{indent}image: {image}\n"));
        } else {
            out.push_str(line);
        }
    }
    out
}

fn alerts_config_map() -> String {
    let data: Vec<(String, &str)> = ALERTS
        .iter()
        .map(|(name, script)| (format!("{name}.tick"), *script))
        .collect();
    config_map(
        "kapacitor-alerts",
        "# The default alerts, loaded into Kapacitor by the installer. Add your own\n\
         # as ConfigMaps in this namespace with the same label, one NAME.tick per key.\n",
        &format!("    app.kubernetes.io/name: kapacitor\n    {ALERTS_LABEL}: \"true\"\n"),
        &data,
    )
}

fn dashboards_config_map() -> String {
    let data: Vec<(String, &str)> = DASHBOARDS
        .iter()
        .map(|(name, json)| (name.to_string(), *json))
        .collect();
    config_map(
        "grafana-dashboards",
        "# Grafana's cluster, node and pod dashboards (provisioned from files).\n",
        "    app.kubernetes.io/name: grafana\n",
        &data,
    )
}

/// A ConfigMap whose values are literal block scalars.
fn config_map(name: &str, comment: &str, labels: &str, data: &[(String, &str)]) -> String {
    let mut out = format!(
        "{comment}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n  labels:\n{labels}    app.kubernetes.io/part-of: tele-monitoring\ndata:\n"
    );
    for (key, value) in data {
        out.push_str(&format!("  {key}: |\n"));
        for line in value.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ext(value: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([("monitoring".to_string(), value)])
    }

    #[test]
    fn no_extension_means_everything_with_upstream_images() {
        let opts = MonitoringOptions::from_extensions(&BTreeMap::new()).unwrap();
        assert_eq!(opts, MonitoringOptions::default());
        assert_eq!(
            images(&opts),
            [
                "grafana/grafana:10.4.2",
                "influxdb:1.8.10",
                "kapacitor:1.7",
                "telegraf:1.28"
            ]
        );
    }

    #[test]
    fn options_are_read_from_the_extension() {
        let opts = MonitoringOptions::from_extensions(&ext(json!({
            "images": {"influxdb": "example.com/influxdb:1.6"},
            "components": {"telegraf": false, "grafana": false}
        })))
        .unwrap();
        assert_eq!(opts.image("influxdb"), "example.com/influxdb:1.6");
        assert!(!opts.enabled("telegraf") && opts.enabled("kapacitor"));
        assert_eq!(images(&opts), ["example.com/influxdb:1.6", "kapacitor:1.7"]);
        let paths: Vec<_> = render(&opts).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "00-namespace.yaml",
                "10-influxdb.yaml",
                "20-kapacitor.yaml",
                "21-kapacitor-alerts.yaml"
            ]
        );
    }

    #[test]
    fn disabled_renders_nothing() {
        let opts = MonitoringOptions::from_extensions(&ext(json!({"disabled": true}))).unwrap();
        assert!(render(&opts).is_empty());
        assert!(images(&opts).is_empty());
    }

    #[test]
    fn mistakes_name_the_key() {
        let err = |v| MonitoringOptions::from_extensions(&ext(v)).unwrap_err();
        assert_eq!(
            err(json!({"disabld": true})),
            "extensions.monitoring.disabld: unknown key (expected disabled, images or components)"
        );
        assert_eq!(
            err(json!({"images": {"prometheus": "x"}})),
            "extensions.monitoring.images.prometheus: unknown component (expected one of influxdb, telegraf, kapacitor, grafana)"
        );
        assert_eq!(
            err(json!({"components": {"chronograf": true}})),
            "extensions.monitoring.components.chronograf: unknown component (expected one of influxdb, telegraf, kapacitor, grafana)"
        );
        assert_eq!(
            err(json!({"disabled": "yes"})),
            "extensions.monitoring.disabled: expected true or false, found a string"
        );
        assert_eq!(
            err(json!({"images": {"grafana": ""}})),
            "extensions.monitoring.images.grafana: expected an image reference, found a string"
        );
        assert_eq!(
            err(json!(true)),
            "extensions.monitoring: expected a mapping, found a boolean"
        );
    }
}
