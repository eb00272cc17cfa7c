//! Files compiled into tele, so that a `tele` binary built anywhere carries
//! them: the monitoring stack every bundle ships (InfluxDB, Telegraf,
//! Kapacitor, Grafana) and its default alerts (Kapacitor TICKscripts).
//!
//! ```
//! use tele_assets::{images, render, MonitoringOptions};
//!
//! let opts = MonitoringOptions::default();
//! let files = render(&opts);
//! assert!(files.iter().any(|(path, _)| path == "10-influxdb.yaml"));
//! assert!(images(&opts).contains(&"influxdb:1.8.10".to_string()));
//! ```
#![deny(missing_docs)]

pub mod monitoring;

pub use monitoring::{
    alerts, default_image, images, render, MonitoringOptions, ALERTS_LABEL, COMPONENTS, NAMESPACE,
};
