//! tele's install path: from an extracted bundle to a running Kubernetes
//! cluster with the app on it.
//!
//! The steps: verify the bundle, run [`preflight`] checks, write the
//! operation [`plan`] to the state directory, then run its phases, each
//! idempotent and recorded when done: [`pki`] (certificates and
//! kubeconfigs), node configuration, the services (under systemd or the tele
//! agent's supervisor), the bundle's image [`registry_server`] that
//! containerd uses as a mirror, the Kubernetes control plane, the app and its
//! hooks.
#![deny(missing_docs)]

pub mod alerting;
pub mod components;
pub mod health;
pub mod influx;
pub mod install;
pub mod kube;
pub mod monitoring;
pub mod monitoring_phase;
pub mod node;
pub mod pki;
pub mod plan;
pub mod preflight;
pub mod registry_server;
pub mod status;
pub mod supervisor;
pub mod uninstall;
