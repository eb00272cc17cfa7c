//! tele's install path: from an extracted bundle to a running Kubernetes
//! cluster with the app on it.
//!
//! [`install::install`] checks the flags, verifies the bundle, builds the
//! [`plan`] from the [`phase`] kinds (preflight, PKI, the node's runtime and
//! [`component`]s, the app, monitoring, hooks), saves it in the
//! [`state_dir`], and runs it; `--resume` carries on after a failure or a
//! kill. Everything that runs on a node is a [`component::Component`]
//! started through one [`service::ServiceManager`]: systemd units where PID
//! 1 is systemd, the tele agent elsewhere.
#![deny(missing_docs)]

/// Crash-safe writes, shared with the build path.
pub use tele_bundle::durable;

pub mod alerting;
pub mod api_proxy;
pub mod cloud;
pub mod cluster_dns;
pub mod component;
pub mod error;
pub mod etcd;
pub mod health;
pub mod influx;
pub mod install;
pub mod interrupt;
pub mod join;
pub mod kube;
pub mod kubelet_client;
pub mod leave;
pub mod local_volumes;
pub mod log_rotation;
pub mod monitoring;
pub mod monitoring_phase;
pub mod node;
pub mod phase;
pub mod pki;
pub mod plan;
pub mod pod_network;
pub mod preflight;
pub mod procfs;
pub mod registry_server;
pub mod renew;
pub mod reporter;
pub mod service;
pub mod state_dir;
pub mod status;
pub mod token;
pub mod uninstall;
pub mod wizard;
