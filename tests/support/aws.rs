//! AWS's APIs for the tests: moto's server (EC2, ELB, IAM) from the
//! virtualenv scripts/install-deps makes, and tests/support/aws_fixture.py,
//! which makes in it what an admin has before installing.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{free_port, ok, stdout, wait_for_port, KillOnDrop};

/// A program of the moto virtualenv (`TELE_MOTO_VENV`, else
/// ~/.cache/tele/moto-venv).
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("TELE_MOTO_VENV").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/tele/moto-venv"),
        PathBuf::from,
    );
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/install-deps",
        bin.display()
    );
    bin
}

/// Runs aws_fixture.py with `args`; what it printed.
pub fn fixture(args: &[&str]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/support/aws_fixture.py");
    let o = ok(Command::new(venv_bin("python")).arg(script).args(args));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// moto's server on `host`, stopped when dropped, and its URL. With
/// `open_requests`, moto checks every request's signature and IAM
/// permissions after that many requests (its INITIAL_NO_AUTH_ACTION_COUNT).
pub fn moto(host: &str, open_requests: Option<u32>) -> (KillOnDrop, String) {
    let port = free_port();
    let mut cmd = Command::new(venv_bin("moto_server"));
    cmd.args(["-H", host, "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(n) = open_requests {
        cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
    }
    let child = KillOnDrop(cmd.spawn().expect("moto_server runs"));
    wait_for_port(&format!("{host}:{port}"));
    (child, format!("http://{host}:{port}"))
}
