//! The node health checker (`tele health-check`): measures the node every
//! 10 s and writes to InfluxDB, buffering on disk while it cannot.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct HealthChecker;

impl Component for HealthChecker {
    fn name(&self) -> &'static str {
        "health-checker"
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        Ok(ServiceSpec::new("health-checker", n.state.tele())
            .arg("health-check")
            .arg("--state-dir")
            .arg(n.state.root().display().to_string())
            .env("PATH", n.path_env()?))
    }
    fn probe(&self, _n: &NodeContext) -> Probe {
        Probe::Running
    }
}
