//! The 4-node cluster benchmark (run by `bench/cluster-bench`, ignored by
//! `cargo test`): three masters and a worker on systemd hosts, from the
//! first `./install --flavor ha` to every node Ready, with the three joins
//! run one after the other on one set of fresh hosts, and at the same time
//! on another. Writes its figures as JSON to `$CLUSTER_BENCH_OUT`.

mod support;

use std::time::{Duration, Instant};

use support::example::example_bundle;
use support::systemd_host::boot_hosts;
use support::*;

struct Round {
    install: f64,
    joins: Vec<f64>,
    joins_wall: f64,
    ready: f64,
}

fn join_cmd(summary: &serde_json::Value, profile: &str) -> String {
    let c = summary["joinCommands"][profile].as_str().unwrap();
    format!(
        "cd /opt/hello && {} --autofix --timeout 900 --output-format json >/dev/null",
        c.trim_start_matches("sudo ")
    )
}

fn round(bundle: &std::path::Path, concurrent: bool) -> Round {
    let hosts = boot_hosts("tele-b", 61, 4, bundle);
    let begun = Instant::now();
    let o = hosts[0].exec(&[
        "/opt/hello/install",
        "--flavor",
        "ha",
        "--autofix",
        "--timeout",
        "300",
        "--output-format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let install = begun.elapsed().as_secs_f64();
    let summary = json(&o);
    let cmds = [
        join_cmd(&summary, "master"),
        join_cmd(&summary, "master"),
        join_cmd(&summary, "node"),
    ];
    let joins_begun = Instant::now();
    let mut joins = Vec::new();
    if concurrent {
        let children: Vec<_> = hosts[1..]
            .iter()
            .zip(&cmds)
            .map(|(h, c)| (Instant::now(), h.command(&["sh", "-c", c]).spawn().unwrap()))
            .collect();
        for (start, mut child) in children {
            assert!(child.wait().unwrap().success(), "a join failed");
            joins.push(start.elapsed().as_secs_f64());
        }
    } else {
        for (h, c) in hosts[1..].iter().zip(&cmds) {
            let start = Instant::now();
            let o = h.sh(c);
            assert!(o.status.success(), "{}", stderr(&o));
            joins.push(start.elapsed().as_secs_f64());
        }
    }
    let joins_wall = joins_begun.elapsed().as_secs_f64();
    hosts[0].eventually(
        "kubectl get nodes --no-headers | grep -c ' Ready '",
        "4",
        Duration::from_secs(300),
    );
    hosts[0].eventually(
        "kubectl get deployments -A --no-headers | awk '{split($3,a,\"/\"); if (a[1]!=a[2]) bad=1} END {print bad ? \"waiting\" : \"ready\"}'",
        "ready",
        Duration::from_secs(300),
    );
    Round {
        install,
        joins,
        joins_wall,
        ready: begun.elapsed().as_secs_f64(),
    }
}

#[test]
#[ignore = "a benchmark: run bench/cluster-bench"]
#[allow(clippy::print_stderr)]
fn cluster_of_four_sequential_and_concurrent_joins() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut out = Vec::new();
    for i in 0..rounds {
        for concurrent in [false, true] {
            let r = round(&bundle, concurrent);
            let row = serde_json::json!({
                "round": i + 1,
                "joins": if concurrent { "concurrent" } else { "sequential" },
                "installSeconds": r.install,
                "joinSeconds": r.joins,
                "joinsWallSeconds": r.joins_wall,
                "allReadySeconds": r.ready,
            });
            eprintln!("{row}");
            out.push(row);
        }
    }
    let path = std::env::var("CLUSTER_BENCH_OUT").unwrap_or("cluster-bench.json".into());
    std::fs::write(path, serde_json::to_vec_pretty(&out).unwrap()).unwrap();
}
