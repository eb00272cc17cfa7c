//! The rendered monitoring stack against committed golden files, and checks
//! that every file in it would load: YAML documents that are Kubernetes
//! objects, TOML for Telegraf's and Kapacitor's configuration, JSON
//! dashboards, TICKscripts with the documented thresholds. No Telegraf,
//! Kapacitor or Grafana runs here; these tests are what stands in for them.
//!
//! Regenerate the golden files with `TELE_UPDATE_GOLDEN=1 cargo test -p tele-assets`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, Yaml};
use tele_assets::{alerts, default_image, images, render, MonitoringOptions, COMPONENTS};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn updating() -> bool {
    std::env::var_os("TELE_UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// Compares `actual` with the golden file `name`, or rewrites it.
fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if updating() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TELE_UPDATE_GOLDEN=1 writes it)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or(expected.lines().count().min(actual.lines().count()), |n| n);
        panic!(
            "{} differs from the rendered file from line {} (TELE_UPDATE_GOLDEN=1 rewrites it)\nexpected: {:?}\nactual:   {:?}",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

#[test]
fn default_stack_matches_golden_files() {
    let files = render(&MonitoringOptions::default());
    let dir = golden_dir().join("monitoring");
    if updating() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    for (path, content) in &files {
        golden(&format!("monitoring/{path}"), content);
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let rendered: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        on_disk, rendered,
        "golden files that are no longer rendered"
    );
}

#[test]
fn image_overrides_replace_exactly_the_image_lines() {
    let default = render(&MonitoringOptions::default());
    let opts = MonitoringOptions {
        images: COMPONENTS
            .iter()
            .map(|c| (c.to_string(), format!("registry.example.com/mirror/{c}:7")))
            .collect(),
        ..Default::default()
    };
    let replaced = render(&opts);
    assert_eq!(default.len(), replaced.len());
    let mut changed = BTreeMap::new();
    for ((path, before), (path2, after)) in default.iter().zip(&replaced) {
        assert_eq!(path, path2);
        let (before, after): (Vec<_>, Vec<_>) = (before.lines().collect(), after.lines().collect());
        assert_eq!(before.len(), after.len(), "{path}: line count changed");
        for (a, b) in before.iter().zip(&after) {
            if a != b {
                let component = COMPONENTS
                    .iter()
                    .find(|c| a.trim() == format!("image: {}", default_image(c)))
                    .unwrap_or_else(|| {
                        panic!("{path}: a line that is no image line changed: {a:?}")
                    });
                assert_eq!(
                    b.trim(),
                    format!("image: registry.example.com/mirror/{component}:7")
                );
                assert_eq!(
                    a.len() - a.trim_start().len(),
                    b.len() - b.trim_start().len()
                );
                *changed.entry(*component).or_insert(0) += 1;
            }
        }
    }
    // One container per component, and Kapacitor's init container.
    let expected: BTreeMap<&str, usize> = COMPONENTS
        .iter()
        .map(|c| (*c, if *c == "kapacitor" { 2 } else { 1 }))
        .collect();
    assert_eq!(changed, expected);
    assert_eq!(
        images(&opts),
        [
            "registry.example.com/mirror/grafana:7",
            "registry.example.com/mirror/influxdb:7",
            "registry.example.com/mirror/kapacitor:7",
            "registry.example.com/mirror/telegraf:7"
        ]
    );
}

fn get<'a>(node: &'a Yaml<'a>, path: &[&str]) -> Option<&'a Yaml<'a>> {
    path.iter().try_fold(node, |n, key| n.as_mapping_get(key))
}

fn str_at<'a>(node: &'a Yaml<'a>, path: &[&str]) -> Option<&'a str> {
    get(node, path).and_then(|n| n.as_str())
}

const CLUSTER_SCOPED: [&str; 3] = ["Namespace", "ClusterRole", "ClusterRoleBinding"];

#[test]
fn every_rendered_document_is_a_kubernetes_object_whose_files_load() {
    let opts = MonitoringOptions::default();
    let mut pod_images = Vec::new();
    let mut objects = Vec::new();
    for (path, content) in render(&opts) {
        let docs = Yaml::load_from_str(&content).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(!docs.is_empty(), "{path}: no document");
        for doc in &docs {
            let kind = str_at(doc, &["kind"]).unwrap_or_else(|| panic!("{path}: no kind"));
            let name = str_at(doc, &["metadata", "name"])
                .unwrap_or_else(|| panic!("{path}: {kind} without a string metadata.name"));
            assert!(
                str_at(doc, &["apiVersion"]).is_some(),
                "{path}: {kind}/{name}"
            );
            let namespace = str_at(doc, &["metadata", "namespace"]);
            if CLUSTER_SCOPED.contains(&kind) {
                assert_eq!(namespace, None, "{path}: {kind}/{name}");
            } else {
                assert_eq!(namespace, Some("monitoring"), "{path}: {kind}/{name}");
            }
            objects.push(format!("{kind}/{name}"));
            // An init container runs one of the stack's images too.
            if let Some(init) = get(doc, &["spec", "template", "spec", "initContainers"]) {
                for c in init.as_sequence().unwrap() {
                    let image = str_at(c, &["image"]).unwrap();
                    assert!(
                        images(&opts).iter().any(|i| i == image),
                        "{path}: init container image {image}"
                    );
                }
            }
            if let Some(containers) = get(doc, &["spec", "template", "spec", "containers"]) {
                for c in containers.as_sequence().unwrap() {
                    pod_images.push(str_at(c, &["image"]).unwrap().to_string());
                }
                let selector = get(doc, &["spec", "selector", "matchLabels"]).unwrap();
                let labels = get(doc, &["spec", "template", "metadata", "labels"]).unwrap();
                for (k, v) in selector.as_mapping().unwrap() {
                    assert_eq!(
                        labels.as_mapping().unwrap().get(k),
                        Some(v),
                        "{path}: {name}"
                    );
                }
            }
            if kind == "ConfigMap" {
                for (key, value) in get(doc, &["data"]).unwrap().as_mapping().unwrap() {
                    let (key, value) = (key.as_str().unwrap(), value.as_str().unwrap());
                    check_config_file(&path, key, value);
                }
            }
        }
    }
    pod_images.sort();
    assert_eq!(pod_images, images(&opts));
    for expected in [
        "Namespace/monitoring",
        "Service/influxdb",
        "Deployment/influxdb",
        "DaemonSet/telegraf",
        "ServiceAccount/telegraf",
        "ClusterRole/tele-monitoring-telegraf",
        "ClusterRoleBinding/tele-monitoring-telegraf",
        "ConfigMap/telegraf",
        "Service/kapacitor",
        "Deployment/kapacitor",
        "ConfigMap/kapacitor",
        "ConfigMap/kapacitor-alerts",
        "Service/grafana",
        "Deployment/grafana",
        "ConfigMap/grafana-provisioning",
        "ConfigMap/grafana-dashboards",
    ] {
        assert!(objects.iter().any(|o| o == expected), "missing {expected}");
    }
}

fn check_config_file(path: &str, key: &str, value: &str) {
    let what = format!("{path}: {key}");
    if key.ends_with(".conf") {
        let table: toml::Table = value.parse().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(!table.is_empty(), "{what}");
    } else if key.ends_with(".json") {
        let dashboard: serde_json::Value =
            serde_json::from_str(value).unwrap_or_else(|e| panic!("{what}: {e}"));
        let panels = dashboard["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{what}");
        for p in panels {
            assert_eq!(p["datasource"]["uid"], "influxdb-k8s", "{what}");
        }
    } else if key.ends_with(".yaml") {
        Yaml::load_from_str(value).unwrap_or_else(|e| panic!("{what}: {e}"));
    } else if key.ends_with(".tick") {
        let name = key.trim_end_matches(".tick");
        let (_, script) = alerts().into_iter().find(|(n, _)| *n == name).unwrap();
        assert_eq!(value, script, "{what}");
    } else {
        panic!("{what}: a key of no known kind");
    }
}

#[test]
fn telegraf_collects_what_the_alerts_and_dashboards_read() {
    let files = render(&MonitoringOptions::default());
    let telegraf = &files
        .iter()
        .find(|(p, _)| p == "30-telegraf.yaml")
        .unwrap()
        .1;
    let docs = Yaml::load_from_str(telegraf).unwrap();
    let conf = docs
        .iter()
        .find_map(|d| str_at(d, &["data", "telegraf.conf"]))
        .unwrap();
    let conf: toml::Table = conf.parse().unwrap();
    let inputs = conf["inputs"].as_table().unwrap();
    let names: Vec<&str> = inputs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "cpu",
            "disk",
            "diskio",
            "kernel",
            "kubernetes",
            "mem",
            "net",
            "system"
        ]
    );
    let out = &conf["outputs"]["influxdb"][0];
    assert_eq!(out["database"].as_str(), Some("k8s"));
}

/// A TICKscript's `var NAME = VALUE` lines.
fn vars(script: &str) -> Vec<(String, String)> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix("var "))
        .filter_map(|l| l.split_once(" = "))
        // Values only (numbers, durations, strings), not pipelines.
        .filter(|(_, v)| {
            v.trim_start()
                .starts_with(|c: char| c.is_ascii_digit() || c == '\'')
        })
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn alert_thresholds_match_the_golden_list() {
    let mut listing = String::new();
    for (name, script) in alerts() {
        let vars = vars(script);
        let list: Vec<String> = vars.iter().map(|(n, v)| format!("{n}={v}")).collect();
        listing.push_str(&format!(
            "{name}:{}\n",
            list.iter().map(|v| format!(" {v}")).collect::<String>()
        ));
    }
    golden("alert-thresholds.txt", &listing);
    // The thresholds the docs promise, stated again here on purpose.
    let expect = |name: &str, want: &[(&str, &str)]| {
        let (_, script) = alerts().into_iter().find(|(n, _)| *n == name).unwrap();
        let vars = vars(script);
        for (k, v) in want {
            assert!(
                vars.iter().any(|(n, val)| n == k && val == v),
                "{name}: expected var {k} = {v}, has {vars:?}"
            );
        }
    };
    expect("high-cpu", &[("warnAt", "75.0"), ("critAt", "90.0")]);
    expect("high-memory", &[("warnAt", "80.0"), ("critAt", "90.0")]);
    expect("filesystem", &[("warnAt", "80.0"), ("critAt", "90.0")]);
    expect("inodes", &[("warnAt", "90.0"), ("critAt", "95.0")]);
    expect("pod-cpu-share", &[("maxShare", "0.8")]);
    expect("br-netfilter", &[("silence", "5m")]);
    expect("certificates", &[("warnDays", "30.0"), ("critDays", "7.0")]);
}

#[test]
fn every_alert_is_well_formed_and_goes_to_both_handlers() {
    let names: Vec<&str> = alerts().iter().map(|(n, _)| *n).collect();
    for name in [
        "high-cpu",
        "high-memory",
        "filesystem",
        "inodes",
        "etcd-down",
        "etcd-latency",
        "br-netfilter",
        "ip-forward",
        "node-not-ready",
        "pod-cpu-share",
        "certificates",
    ] {
        assert!(names.contains(&name), "no {name} alert");
    }
    for (name, script) in alerts() {
        check_tickscript(name, script);
        let alerts = script.matches("|alert()").count() + script.matches("|deadman(").count();
        assert!(alerts > 0, "{name}: no alert node");
        assert_eq!(
            script.matches(".email()").count(),
            alerts,
            "{name}: .email() per alert"
        );
        assert_eq!(
            script.matches(".endpoint('alerttarget')").count(),
            alerts,
            "{name}: .post().endpoint('alerttarget') per alert"
        );
        assert_eq!(
            script.matches(".stateChangesOnly()").count(),
            alerts,
            "{name}"
        );
    }
    let (_, netfilter) = alerts()
        .into_iter()
        .find(|(n, _)| *n == "br-netfilter")
        .unwrap();
    assert!(netfilter.contains(".measurement('br_netfilter')"));
    assert!(netfilter.contains("|deadman(0.0, silence)"));
    for (name, measurement, field) in [
        ("ip-forward", "ip_forward", "enabled"),
        ("node-not-ready", "node_ready", "ready"),
        ("br-netfilter", "br_netfilter", "loaded"),
        ("etcd-down", "etcd", "healthy"),
    ] {
        let (_, s) = alerts().into_iter().find(|(n, _)| *n == name).unwrap();
        assert!(
            s.contains(&format!(".measurement('{measurement}')")),
            "{name}"
        );
        assert!(
            s.contains(&format!(".crit(lambda: \"{field}\" == FALSE)")),
            "{name}"
        );
    }
}

/// What can be checked of TICKscript without Kapacitor: strings and
/// brackets balance, every chaining step starts a line with `|` and every
/// property with `.`, and every bare word a lambda uses is a declared var.
fn check_tickscript(name: &str, script: &str) {
    let mut declared: Vec<String> = vars(script).into_iter().map(|(n, _)| n).collect();
    for line in script.lines() {
        if let Some(rest) = line.strip_prefix("var ") {
            declared.push(rest.split_whitespace().next().unwrap().to_string());
        }
    }
    for (n, raw) in script.lines().enumerate() {
        let line = raw.trim();
        let at = format!("{name}.tick:{}", n + 1);
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        assert!(
            line.starts_with('|')
                || line.starts_with('.')
                || line.starts_with("var ")
                || line == "stream"
                || declared.iter().any(|d| line == d),
            "{at}: unexpected line {line:?}"
        );
        // Strings: '...' with \' escapes; outside them, brackets balance.
        let mut depth = 0i32;
        let mut in_single = false;
        let mut in_double = false;
        let mut chars = line.chars().peekable();
        let mut bare = String::new();
        let mut bare_words = Vec::new();
        while let Some(c) = chars.next() {
            if in_single {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '\'' => in_single = false,
                    _ => {}
                }
                continue;
            }
            if in_double {
                if c == '"' {
                    in_double = false;
                }
                continue;
            }
            if c.is_ascii_alphanumeric() || c == '_' {
                bare.push(c);
                continue;
            }
            if !bare.is_empty() {
                bare_words.push(std::mem::take(&mut bare));
            }
            match c {
                '\'' => in_single = true,
                '"' => in_double = true,
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "{at}: unbalanced ) in {line:?}");
        }
        if !bare.is_empty() {
            bare_words.push(bare);
        }
        assert!(
            !in_single && !in_double,
            "{at}: unterminated string in {line:?}"
        );
        assert_eq!(depth, 0, "{at}: unbalanced ( in {line:?}");
        if let Some(lambda) = line.find("lambda:") {
            let _ = lambda;
            for word in &bare_words {
                let known = ["lambda", "float", "int", "FALSE", "TRUE", "AND", "OR"];
                let is_number = word.chars().all(|c| c.is_ascii_digit());
                let is_method =
                    line.contains(&format!(".{word}(")) || line.contains(&format!("|{word}("));
                assert!(
                    known.contains(&word.as_str())
                        || is_number
                        || is_method
                        || declared.contains(word),
                    "{at}: {word:?} in a lambda is neither a field (quoted) nor a declared var"
                );
            }
        }
    }
}

#[test]
fn each_component_reads_influxdb_with_its_own_user() {
    let secrets_of = |yaml: &str| -> Vec<String> {
        let mut names: Vec<String> = yaml
            .lines()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0].trim() == "secretKeyRef:")
            .filter_map(|w| w[1].trim().strip_prefix("name: ").map(String::from))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let telegraf = include_str!("../monitoring/telegraf.yaml");
    let grafana = include_str!("../monitoring/grafana.yaml");
    let kapacitor = include_str!("../monitoring/kapacitor.yaml");
    let influxdb = include_str!("../monitoring/influxdb.yaml");
    assert_eq!(secrets_of(telegraf), ["influxdb-telegraf"]);
    assert_eq!(secrets_of(grafana), ["grafana-admin", "influxdb-grafana"]);
    assert_eq!(secrets_of(kapacitor), ["influxdb-kapacitor"]);
    assert_eq!(secrets_of(influxdb), Vec::<String>::new());
    // Kapacitor's user may only read: it makes no subscription itself.
    assert!(kapacitor.contains("disable-subscriptions = true"));
    // Telegraf reads the host as nobody, without capabilities, read-only.
    for line in [
        "runAsUser: 65534",
        "runAsNonRoot: true",
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "drop: [\"ALL\"]",
    ] {
        assert!(telegraf.contains(line), "telegraf: no {line}");
    }
    assert!(!telegraf.contains("privileged: true"));
    let hostfs = telegraf.split("- name: hostfs\n").nth(1).unwrap();
    assert!(hostfs
        .trim_start()
        .starts_with("mountPath: /hostfs\n              readOnly: true"));
}

/// The value of the environment variable `name` of the first container of
/// the workload in `file`.
fn env_value(file: &str, name: &str) -> Option<String> {
    let files = render(&MonitoringOptions::default());
    let text = &files.iter().find(|(p, _)| p == file).unwrap().1;
    let docs = Yaml::load_from_str(text).unwrap();
    let doc = docs
        .iter()
        .find(|d| str_at(d, &["kind"]) == Some("Deployment"))?;
    let containers = get(doc, &["spec", "template", "spec", "containers"])?;
    let env = get(&containers.as_sequence()?[0], &["env"])?;
    env.as_sequence()?
        .iter()
        .find(|e| str_at(e, &["name"]) == Some(name))
        .and_then(|e| str_at(e, &["value"]).map(String::from))
}

#[test]
fn kapacitor_and_grafana_serve_https_and_kapacitor_asks_every_caller_for_a_user() {
    let files = render(&MonitoringOptions::default());
    let kapacitor = &files
        .iter()
        .find(|(p, _)| p == "20-kapacitor.yaml")
        .unwrap()
        .1;
    let docs = Yaml::load_from_str(kapacitor).unwrap();
    let conf: toml::Table = docs
        .iter()
        .find_map(|d| str_at(d, &["data", "kapacitor.conf"]))
        .unwrap()
        .parse()
        .unwrap();
    let http = conf["http"].as_table().unwrap();
    assert_eq!(http["auth-enabled"].as_bool(), Some(true));
    assert_eq!(http["https-enabled"].as_bool(), Some(true));
    assert_eq!(conf["auth"]["enabled"].as_bool(), Some(true));
    // Users are Kapacitor's own, not an InfluxDB Enterprise meta node's.
    assert_eq!(conf["auth"]["meta-addr"].as_str(), Some(""));
    // The init container that makes the users listens on loopback only,
    // and makes exactly the two users the installer has passwords for.
    let deployment = docs
        .iter()
        .find(|d| str_at(d, &["kind"]) == Some("Deployment"))
        .unwrap();
    let init = &get(deployment, &["spec", "template", "spec", "initContainers"])
        .unwrap()
        .as_sequence()
        .unwrap()[0];
    let env: Vec<(String, String)> = get(init, &["env"])
        .unwrap()
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            (
                str_at(e, &["name"]).unwrap().to_string(),
                str_at(e, &["value"]).unwrap().to_string(),
            )
        })
        .collect();
    assert!(env.contains(&(
        "KAPACITOR_HTTP_BIND_ADDRESS".into(),
        "127.0.0.1:9092".into()
    )));
    let script = get(init, &["command"]).unwrap().as_sequence().unwrap()[2]
        .as_str()
        .unwrap();
    assert!(script.contains("user tele-installer '[\"api\",\"config_api\"]'"));
    assert!(script.contains("user influxdb-subscriber '[\"write_points\"]'"));
    assert_eq!(
        env_value("40-grafana.yaml", "GF_SERVER_PROTOCOL").as_deref(),
        Some("https")
    );
    assert_eq!(
        env_value("10-influxdb.yaml", "INFLUXDB_SUBSCRIBER_CA_CERTS").as_deref(),
        Some("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    );
    assert_eq!(
        env_value("10-influxdb.yaml", "INFLUXDB_DATA_QUERY_LOG_ENABLED").as_deref(),
        Some("false")
    );
}
