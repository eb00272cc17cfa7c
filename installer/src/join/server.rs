//! The join service of a master: `GET /v1/ca` (the cluster CA, public),
//! `POST /v1/check` (whether a node would be admitted; nothing changes),
//! `POST /v1/join` (a token and a node: its credentials and the cluster's
//! settings), `POST /v1/joined` (the node is Ready: its profile's labels and
//! taints are put on it), `POST /v1/bundle-credentials` (a token and a
//! node: a client certificate valid for an hour) and `GET /v1/bundle/PATH`
//! (with that certificate: the part of the bundle a node runs, for nodes
//! that join with the tele binary alone), and `GET /v1/tele` (with a join
//! token as bearer: the master's tele, for machines' start-up scripts). Requests are handled one at a
//! time; bodies are bounded; every refusal says why and what to do.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tele_bundle::bundle_json::{self, BundleMeta, BUNDLE_JSON};

use super::{
    BundleCredentials, JoinRequest, JoinResponse, JoinedRequest, LeaveRequest, NodeFile, Refusal,
    RenewRequest, RenewResponse, WaitAnswer, WaitRequest, MAX_BODY,
};
use crate::durable::write_durably;
use crate::node::NodeConfig;
use crate::registry_server::body::{FileBody, ResponseBody};
use crate::state_dir::StateDir;
use crate::token::{Token, TokenStore};

/// A node the master admitted.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmittedNode {
    /// Its name.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// Its pod subnet.
    pub pod_subnet: String,
    /// The node profile it joined as.
    pub role: Option<String>,
    /// SHA-256 (hex) of the secret it shows when it leaves.
    #[serde(default)]
    pub leave_secret_sha256: String,
}

/// The files under `dir` (hidden ones left out), as sent to a node.
fn node_files(dir: &std::path::Path) -> anyhow::Result<Vec<NodeFile>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry?;
        if !entry.file_type().is_file() || entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("under dir")
            .display()
            .to_string();
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&entry.metadata()?.permissions()) & 0o777;
        files.push(NodeFile {
            path: rel,
            mode,
            content: std::fs::read_to_string(entry.path())?,
        });
    }
    Ok(files)
}

/// The nodes admitted through this master (`STATE/nodes.json`).
pub fn admitted_nodes(state: &StateDir) -> Vec<AdmittedNode> {
    std::fs::read(nodes_file(state))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn nodes_file(state: &StateDir) -> PathBuf {
    state.root().join("nodes.json")
}

fn refuse(status: StatusCode, error: impl Into<String>, hint: &str) -> (StatusCode, Refusal) {
    (
        status,
        Refusal {
            error: error.into(),
            hint: Some(hint.into()),
            retry: false,
        },
    )
}

fn is_master(profile: &Option<tele_manifests::NodeProfile>) -> bool {
    profile
        .as_ref()
        .is_some_and(|p| p.service_role.as_deref() == Some("master"))
}

/// The pod subnets the cluster's Nodes carry (those admitted through other
/// masters too), by node name.
fn subnets_in_use(state: &StateDir) -> Vec<(String, String)> {
    crate::phase::kubectl(state)
        .and_then(|k| crate::pod_network::nodes(&k))
        .unwrap_or_default()
        .into_iter()
        .filter(|n| !n.subnet.is_empty())
        .map(|n| (n.name, n.subnet))
        .collect()
}

/// A failure of the master's own, not of the request.
fn internal(e: anyhow::Error) -> (StatusCode, Refusal) {
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{e:#}"),
        "see the join service's log on the master",
    )
}

/// The `index`th /24 of an IPv4 pod network.
fn subnet(pod_cidr: &str, index: u32) -> Option<String> {
    let (base, bits) = pod_cidr.split_once('/')?;
    let base: std::net::Ipv4Addr = base.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    if bits > 24 || index >= 1 << (24 - bits) {
        return None;
    }
    let ip = std::net::Ipv4Addr::from(u32::from(base) + (index << 8));
    Some(format!("{ip}/24"))
}

/// The whole service's state.
struct Service {
    state: StateDir,
    lock: Mutex<()>,
}

impl Service {
    fn check_token(&self, text: &str, role: Option<&str>) -> Result<Token, (StatusCode, Refusal)> {
        let token = Token::from_credential(text)
            .map_err(|e| refuse(StatusCode::FORBIDDEN, e.to_string(), e.hint()))?;
        TokenStore::new(&self.state)
            .check(&token, role)
            .map_err(|e| refuse(StatusCode::FORBIDDEN, e.to_string(), e.hint()))?;
        Ok(token)
    }

    fn profile(
        &self,
        role: Option<&str>,
    ) -> Result<Option<tele_manifests::NodeProfile>, (StatusCode, Refusal)> {
        let Some(role) = role else { return Ok(None) };
        let manifest = tele_manifests::load_manifest(&self.state.manifest_file()).map_err(|e| {
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the master cannot read the app manifest: {e}"),
                "reinstall the master",
            )
        })?;
        let names: Vec<&str> = manifest
            .node_profiles
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let p = manifest
            .node_profiles
            .iter()
            .find(|p| p.name == role)
            .cloned()
            .ok_or_else(|| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("the app has no node profile `{role}`"),
                    &format!("join with --role set to one of: {}", names.join(", ")),
                )
            })?;
        Ok(Some(p))
    }

    /// Whether `req` would be admitted; changes nothing. The master's
    /// settings and the nodes admitted so far come back for [`Service::admit`].
    fn precheck(
        &self,
        req: &JoinRequest,
    ) -> Result<(NodeConfig, Vec<AdmittedNode>, String), (StatusCode, Refusal)> {
        self.check_token(&req.token, req.role.as_deref())?;
        self.profile(req.role.as_deref())?;
        let cfg = NodeConfig::load(&self.state).map_err(internal)?;
        if req.node_name == cfg.node_name || req.node_ip == cfg.node_ip {
            return Err(refuse(
                StatusCode::CONFLICT,
                format!(
                    "{} ({}) is the master's own name or address",
                    req.node_name, req.node_ip
                ),
                "join from another machine, with its own --node-name and --advertise-addr",
            ));
        }
        let nodes = admitted_nodes(&self.state);
        let in_use = subnets_in_use(&self.state);
        if let Some(other) = nodes
            .iter()
            .find(|n| n.name == req.node_name && n.ip != req.node_ip)
        {
            return Err(refuse(
                StatusCode::CONFLICT,
                format!(
                    "a node named {} with address {} is already in the cluster",
                    other.name, other.ip
                ),
                "give this machine another --node-name",
            ));
        }
        // The node's pod subnet: its own from before, or the first free /24.
        let pod_subnet = match nodes.iter().find(|n| n.name == req.node_name) {
            Some(n) => n.pod_subnet.clone(),
            None => (0..)
                .map_while(|i| subnet(&cfg.pod_cidr, i))
                .find(|s| {
                    *s != cfg.node_pod_subnet
                        && !nodes.iter().any(|n| &n.pod_subnet == s)
                        && !in_use.iter().any(|(n, u)| u == s && *n != req.node_name)
                })
                .ok_or_else(|| {
                    refuse(
                        StatusCode::CONFLICT,
                        format!("the pod network {} has no free /24 left", cfg.pod_cidr),
                        "the cluster holds as many nodes as its pod network allows",
                    )
                })?,
        };
        Ok((cfg, nodes, pod_subnet))
    }

    fn check(&self, req: JoinRequest) -> Result<serde_json::Value, (StatusCode, Refusal)> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.precheck(&req)?;
        Ok(serde_json::json!({ "ok": true }))
    }

    /// Whether the cluster can take the node yet: a master's join service
    /// runs once the cluster's control plane does, so yes for a token it
    /// knows. (Before the first node is installed it is the install
    /// wizard that answers, and says not yet.) The node's preflight results
    /// are for the wizard's page; here they are not needed.
    fn wait(&self, req: WaitRequest) -> Result<serde_json::Value, (StatusCode, Refusal)> {
        self.check_token(&req.join.token, req.join.role.as_deref())?;
        let cfg = NodeConfig::load(&self.state).map_err(internal)?;
        let answer = WaitAnswer {
            ready: true,
            message: String::new(),
            profile: None,
            token: None,
            cluster_name: cfg.cloud_settings.map(|s| s.cluster_id),
        };
        serde_json::to_value(answer).map_err(|e| internal(e.into()))
    }

    /// A short-lived client certificate for fetching the bundle, for a node
    /// that would be admitted (nothing else changes).
    fn bundle_credentials(
        &self,
        req: JoinRequest,
    ) -> Result<serde_json::Value, (StatusCode, Refusal)> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.precheck(&req)?;
        if !self.state.bundle_meta_file().is_file() {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "this master keeps no bundle to serve (it was installed by an older tele)",
                "join from the extracted bundle: `./install join ...`",
            ));
        }
        let (cert, key) = crate::pki::issue_bundle_reader(&self.state.pki_dir(), &req.node_name)
            .map_err(|e| internal(e.into()))?;
        log(&format!(
            "bundle credentials for {} ({})",
            req.node_name, req.node_ip
        ));
        serde_json::to_value(BundleCredentials { cert, key }).map_err(|e| internal(e.into()))
    }

    /// Where the master keeps the bundle file `path` (relative to the
    /// bundle's top directory), when it is one a node runs.
    fn bundle_file(&self, path: &str) -> Option<PathBuf> {
        if path == BUNDLE_JSON {
            return Some(self.state.bundle_meta_file());
        }
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return None;
        }
        let meta = read_bundle_meta(&self.state.bundle_meta_file())?;
        let listed = meta
            .files
            .iter()
            .any(|f| f.path == path && bundle_json::is_node_file(path))
            || bundle_json::blob_hex_of_entry(path)
                .is_some_and(|hex| meta.blobs.iter().any(|b| b.digest.hex() == hex));
        if !listed {
            return None;
        }
        if path == "app.yaml" {
            Some(self.state.manifest_file())
        } else if let Some(rest) = path.strip_prefix("runtime/") {
            Some(self.state.runtime_dir().join(rest))
        } else {
            path.strip_prefix("images/")
                .map(|rest| self.state.images_dir().join(rest))
        }
    }

    fn admit(&self, req: JoinRequest) -> Result<JoinResponse, (StatusCode, Refusal)> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let (cfg, mut nodes, pod_subnet) = self.precheck(&req)?;
        let master = is_master(&self.profile(req.role.as_deref())?);
        let work = tempfile::tempdir_in(self.state.root()).map_err(|e| internal(e.into()))?;
        let etcd = if master {
            Some(self.add_etcd_member(&cfg, &req, work.path())?)
        } else {
            crate::pki::issue_worker(
                &self.state.pki_dir(),
                work.path(),
                &cfg.worker_pki_config(&req.node_name, req.node_ip),
            )
            .map_err(|e| internal(e.into()))?;
            None
        };
        let mut api_servers = crate::api_proxy::read(&self.state);
        if !api_servers.contains(&cfg.own_api_server()) {
            api_servers.push(cfg.own_api_server());
        }
        api_servers.sort();
        let files = node_files(work.path()).map_err(internal)?;
        let leave_secret = crate::token::random_hex(16).map_err(internal)?;
        nodes.retain(|n| n.name != req.node_name);
        {
            nodes.push(AdmittedNode {
                name: req.node_name.clone(),
                ip: req.node_ip,
                pod_subnet: pod_subnet.clone(),
                role: req.role.clone(),
                leave_secret_sha256: crate::token::sha256_hex(&leave_secret),
            });
            let bytes = serde_json::to_vec_pretty(&nodes).map_err(|e| internal(e.into()))?;
            write_durably(&nodes_file(&self.state), &bytes, 0o600)
                .map_err(|e| internal(e.into()))?;
        }
        log(&format!(
            "admitted {} ({}) as a {} with pod subnet {pod_subnet}",
            req.node_name,
            req.node_ip,
            if master { "master" } else { "worker" }
        ));
        Ok(JoinResponse {
            api_servers,
            etcd,
            pod_cidr: cfg.pod_cidr.clone(),
            node_pod_subnet: pod_subnet,
            service_cidr: cfg.service_cidr.clone(),
            files,
            leave_secret,
            cert_validity_secs: Some(cfg.cert_validity_secs),
        })
    }

    /// Renews the certificates and kubeconfigs of the worker `node`, whose
    /// kubelet certificate the request came with: the same files as at its
    /// admission, for the name and address it was admitted with.
    fn renew(
        &self,
        node: Option<&str>,
        req: RenewRequest,
    ) -> Result<RenewResponse, (StatusCode, Refusal)> {
        let Some(node) = node.filter(|n| *n == req.node_name) else {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "renewing {}'s certificates needs that node's kubelet client certificate",
                    req.node_name
                ),
                "a node whose certificates expired must leave and join again",
            ));
        };
        let cfg = NodeConfig::load(&self.state).map_err(internal)?;
        let admitted = admitted_nodes(&self.state)
            .into_iter()
            .find(|n| n.name == node)
            .ok_or_else(|| {
                refuse(
                    StatusCode::NOT_FOUND,
                    format!("{node} was not admitted through this master"),
                    "renew through the master the node joined through",
                )
            })?;
        if is_master(&self.profile(admitted.role.as_deref())?) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!("{node} is a master: it renews its certificates itself"),
                "",
            ));
        }
        let work = tempfile::tempdir_in(self.state.root()).map_err(|e| internal(e.into()))?;
        crate::pki::issue_worker(
            &self.state.pki_dir(),
            work.path(),
            &cfg.worker_pki_config(node, admitted.ip),
        )
        .map_err(|e| internal(e.into()))?;
        let files = node_files(work.path()).map_err(internal)?;
        log(&format!("renewed the certificates of {node}"));
        Ok(RenewResponse { files })
    }

    /// Adds a joining master to etcd as a learner (one at a time: while
    /// another is joining, the refusal asks it to retry) and puts the
    /// cluster CA, etcd's CA, the Secrets' encryption key and the
    /// service-account keys in `out` for it.
    fn add_etcd_member(
        &self,
        cfg: &NodeConfig,
        req: &JoinRequest,
        out: &std::path::Path,
    ) -> Result<crate::node::EtcdJoin, (StatusCode, Refusal)> {
        let ctl =
            crate::etcd::Etcdctl::local(&self.state, cfg.ports.etcd_client).map_err(internal)?;
        let peer_url = format!(
            "https://{}:{}",
            crate::node::fmt_host(req.node_ip),
            cfg.ports.etcd_peer
        );
        let initial_cluster = ctl
            .add_learner(&req.node_name, &peer_url)
            .map_err(|e| match e.downcast::<crate::etcd::Busy>() {
                Ok(busy) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Refusal {
                        error: busy.to_string(),
                        hint: Some("masters join one at a time; this one will be admitted once the other has".into()),
                        retry: true,
                    },
                ),
                Err(e) => internal(e),
            })?;
        let endpoints = ctl
            .members()
            .map_err(internal)?
            .into_iter()
            .filter(|m| !m.is_learner)
            .flat_map(|m| m.client_urls)
            .collect();
        let pki = self.state.pki();
        for (from, to, mode) in [
            (pki.ca_cert(), "ca.crt", 0o644),
            (pki.key("ca"), "ca.key", 0o600),
            (pki.etcd_ca_cert(), "etcd-ca.crt", 0o644),
            (pki.key("etcd-ca"), "etcd-ca.key", 0o600),
            (pki.encryption_config(), "encryption.yaml", 0o600),
            (pki.sa_key(), "sa.key", 0o600),
            (pki.sa_pub(), "sa.pub", 0o644),
        ] {
            let bytes = std::fs::read(&from).map_err(|e| internal(e.into()))?;
            write_durably(&out.join(to), &bytes, mode).map_err(|e| internal(e.into()))?;
        }
        Ok(crate::node::EtcdJoin {
            initial_cluster,
            endpoints,
        })
    }

    /// Takes a leaving master out of etcd (`dry_run`: checks it could);
    /// refused when etcd would lose its quorum.
    fn leave_etcd(&self, node: &str, dry_run: bool) -> Result<(), (StatusCode, Refusal)> {
        let cfg = NodeConfig::load(&self.state).map_err(internal)?;
        remove_etcd_member(&self.state, &cfg, node, dry_run).map_err(|e| {
            refuse(
                StatusCode::CONFLICT,
                format!("{e:#}"),
                "bring the other masters back first, or add one",
            )
        })?;
        Ok(())
    }

    fn leave(&self, req: LeaveRequest) -> Result<serde_json::Value, (StatusCode, Refusal)> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut nodes = admitted_nodes(&self.state);
        let known = nodes.iter().any(|n| {
            n.name == req.node_name
                && !n.leave_secret_sha256.is_empty()
                && n.leave_secret_sha256 == crate::token::sha256_hex(&req.leave_secret)
        });
        if !known {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is not a node this master admitted, or its secret does not match",
                    req.node_name
                ),
                "run `tele leave` on the node itself, or `tele remove NODE` on the master",
            ));
        }
        match req.step.as_str() {
            "drain" => {
                // A master that leaves must not take the quorum with it.
                self.leave_etcd(&req.node_name, true)?;
                drain(&self.state, &req.node_name).map_err(internal)?
            }
            "etcd" => self.leave_etcd(&req.node_name, false)?,
            "forget" => {
                forget(&self.state, &req.node_name).map_err(internal)?;
                nodes.retain(|n| n.name != req.node_name);
            }
            other => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    format!("no leave step `{other}`"),
                    "send what `tele leave` sends",
                ))
            }
        }
        log(&format!("{}: {} done", req.node_name, req.step));
        Ok(serde_json::json!({ "ok": true }))
    }

    fn joined(&self, req: JoinedRequest) -> Result<serde_json::Value, (StatusCode, Refusal)> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let token = self.check_token(&req.token, req.role.as_deref())?;
        let Some(admitted) = admitted_nodes(&self.state)
            .into_iter()
            .find(|n| n.name == req.node_name)
        else {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("{} was not admitted", req.node_name),
                "run the join again",
            ));
        };
        let profile = self.profile(req.role.as_deref())?;
        let k = crate::phase::kubectl(&self.state).map_err(internal)?;
        let node = format!("node/{}", req.node_name);
        let mut labels: Vec<String> = if is_master(&profile) {
            crate::phase::system::ROLE_LABELS
                .iter()
                .map(|l| format!("{l}="))
                .collect()
        } else {
            vec!["node-role.kubernetes.io/worker=".to_string()]
        };
        let mut taints = Vec::new();
        if let Some(p) = &profile {
            labels.extend(p.labels.iter().map(|(k, v)| format!("{k}={v}")));
            taints.extend(p.taints.iter().map(|t| match &t.value {
                Some(v) => format!("{}={v}:{}", t.key, t.effect),
                None => format!("{}:{}", t.key, t.effect),
            }));
        }
        let mut args: Vec<&str> = vec!["label", "--overwrite", &node];
        args.extend(labels.iter().map(String::as_str));
        k.run(&args).map_err(internal)?;
        let subnet = format!(
            "{}={}",
            crate::pod_network::SUBNET_ANNOTATION,
            admitted.pod_subnet
        );
        k.run(&["annotate", "--overwrite", &node, &subnet])
            .map_err(internal)?;
        if !taints.is_empty() {
            let mut args: Vec<&str> = vec!["taint", "--overwrite", &node];
            args.extend(taints.iter().map(String::as_str));
            k.run(&args).map_err(internal)?;
        }
        TokenStore::new(&self.state)
            .record_use(&token.id, &req.node_name)
            .map_err(internal)?;
        log(&format!(
            "{} is Ready; labelled {}",
            req.node_name,
            labels.join(" ")
        ));
        Ok(serde_json::json!({ "ok": true, "labels": labels, "taints": taints }))
    }
}

/// Removes the master `node` from the etcd cluster (nothing when it is not
/// a member), refusing when the members left could not form a quorum;
/// with `dry_run`, only checks that it could. True when it is (or would be) removed.
pub fn remove_etcd_member(
    state: &StateDir,
    cfg: &NodeConfig,
    node: &str,
    dry_run: bool,
) -> anyhow::Result<bool> {
    if cfg.role != crate::node::NodeRole::Master {
        return Ok(false);
    }
    let ctl = crate::etcd::Etcdctl::local(state, cfg.ports.etcd_client)?;
    let answers =
        |m: &crate::etcd::Member| crate::etcd::member_answers(state, m, Duration::from_secs(3));
    if dry_run {
        ctl.check_removal(node, answers)
    } else {
        ctl.remove(node, answers)
    }
}

/// Evicts the pods of `node` (DaemonSets' stay) and marks it unschedulable.
pub fn drain(state: &StateDir, node: &str) -> anyhow::Result<()> {
    let k = crate::phase::kubectl(state)?;
    if k.run(&["get", "node", node]).is_err() {
        return Ok(());
    }
    k.run(&[
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--force",
        "--timeout=120s",
    ])?;
    Ok(())
}

/// Deletes the Node `node` and forgets it here (its pod subnet is free again).
pub fn forget(state: &StateDir, node: &str) -> anyhow::Result<()> {
    let k = crate::phase::kubectl(state)?;
    k.run(&["delete", "node", node, "--ignore-not-found"])?;
    let mut nodes = admitted_nodes(state);
    nodes.retain(|n| n.name != node);
    write_durably(
        &nodes_file(state),
        &serde_json::to_vec_pretty(&nodes)?,
        0o600,
    )?;
    Ok(())
}

/// The service's stderr is its log (`logs/join-server.log`).
#[allow(clippy::print_stderr)]
fn log(line: &str) {
    eprintln!("join: {line}");
}

/// The most a `bundle.json` may weigh.
pub const MAX_BUNDLE_JSON: u64 = 64 << 20;

type Body = ResponseBody;

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut r = Response::new(ResponseBody::Full(Full::new(Bytes::from(
        serde_json::to_vec(value).unwrap_or_default(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, (StatusCode, Refusal)> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request is too large",
                "send what `tele join` sends",
            )
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("bad request: {e}"),
            "send what `tele join` sends",
        )
    })
}

type Outcome = Result<serde_json::Value, (StatusCode, Refusal)>;

/// Reads the request's JSON and runs `f` on it away from the async threads
/// (it writes files and runs kubectl).
async fn call<T, F>(service: Arc<Service>, req: Request<Incoming>, f: F) -> Outcome
where
    T: serde::de::DeserializeOwned + Send + 'static,
    F: FnOnce(&Service, T) -> Outcome + Send + 'static,
{
    let body: T = read_json(req).await?;
    tokio::task::spawn_blocking(move || f(&service, body))
        .await
        .unwrap_or_else(|e| {
            Err(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
                "see the join service's log",
            ))
        })
}

/// Streams the bundle file `path` to a bundle reader.
async fn bundle_file(service: &Service, path: &str, reader: Option<&str>) -> Response<Body> {
    let Some(reader) = reader else {
        let (status, refusal) = refuse(
            StatusCode::FORBIDDEN,
            "the bundle is served only to a client certificate from /v1/bundle-credentials",
            "join with `tele join ADDR --token TOKEN`, which asks for one",
        );
        return json_response(status, &refusal);
    };
    let not_here = || {
        let (status, refusal) = refuse(
            StatusCode::NOT_FOUND,
            format!("`{path}` is not a part of the bundle that nodes run"),
            "ask for what bundle.json lists under app.yaml, runtime/ and images/",
        );
        json_response(status, &refusal)
    };
    let Some(file) = service.bundle_file(path) else {
        return not_here();
    };
    if path == BUNDLE_JSON {
        log(&format!("{reader} fetches the bundle"));
    }
    stream_file(&file, not_here).await
}

/// The master's own tele (the static build the bundle's `install` is), for
/// a machine's start-up script that joins with a token: `GET /v1/tele` with
/// `Authorization: Bearer TOKEN`. The token is checked, not used up.
async fn tele_binary(service: &Service, authorization: Option<&str>) -> Response<Body> {
    let credential = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default();
    if let Err((status, refusal)) = service.check_token(credential.trim(), None) {
        log(&format!("refused ({status}): tele for {}", refusal.error));
        return json_response(status, &refusal);
    }
    let missing = || {
        let (status, refusal) = refuse(
            StatusCode::NOT_FOUND,
            "this master keeps no copy of tele",
            "copy the bundle's `install` to the machine and join with it",
        );
        json_response(status, &refusal)
    };
    log("tele fetched with a join token");
    stream_file(&service.state.tele(), missing).await
}

/// Streams `file` with its length and permission bits; `not_here` answers
/// when it is missing or not a plain file.
async fn stream_file(
    file: &std::path::Path,
    not_here: impl Fn() -> Response<Body>,
) -> Response<Body> {
    let opened = async {
        let f = tokio::fs::File::open(&file).await?;
        let meta = f.metadata().await?;
        Ok::<_, std::io::Error>((f, meta))
    };
    match opened.await {
        Ok((f, meta)) if meta.is_file() => {
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o755;
            let mut r = Response::new(ResponseBody::File(FileBody {
                file: f,
                remaining: meta.len(),
                buffer: vec![0; crate::registry_server::CHUNK_BYTES].into_boxed_slice(),
            }));
            let headers = r.headers_mut();
            headers.insert(
                hyper::header::CONTENT_LENGTH,
                hyper::header::HeaderValue::from(meta.len()),
            );
            headers.insert(
                MODE_HEADER,
                hyper::header::HeaderValue::from_str(&format!("{mode:o}")).expect("ascii"),
            );
            r
        }
        Ok(_) => not_here(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => not_here(),
        Err(e) => {
            let (status, refusal) = internal(e.into());
            json_response(status, &refusal)
        }
    }
}

/// The `bundle.json` at `path`, read to at most [`MAX_BUNDLE_JSON`] bytes.
fn read_bundle_meta(path: &std::path::Path) -> Option<BundleMeta> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_BUNDLE_JSON + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_BUNDLE_JSON {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// The permission bits (octal) of a bundle file as the master keeps it.
pub const MODE_HEADER: &str = "x-tele-mode";

async fn handle(
    service: Arc<Service>,
    req: Request<Incoming>,
    reader: Option<Arc<str>>,
    node: Option<Arc<str>>,
) -> Response<Body> {
    if req.method() == Method::GET {
        if let Some(path) = req.uri().path().strip_prefix("/v1/bundle/") {
            return bundle_file(&service, path, reader.as_deref()).await;
        }
        if req.uri().path() == "/v1/tele" {
            let auth = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            return tele_binary(&service, auth).await;
        }
    }
    let outcome = match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/ca") => {
            return match std::fs::read(service.state.pki().ca_cert()) {
                Ok(pem) => Response::new(ResponseBody::Full(Full::new(Bytes::from(pem)))),
                Err(e) => json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &Refusal {
                        error: e.to_string(),
                        hint: None,
                        retry: false,
                    },
                ),
            };
        }
        (&Method::POST, "/v1/join") => {
            call(service, req, |s, r: JoinRequest| {
                s.admit(r)
                    .map(|v| serde_json::to_value(v).unwrap_or_default())
            })
            .await
        }
        (&Method::POST, "/v1/check") => call(service, req, Service::check).await,
        (&Method::POST, "/v1/wait") => call(service, req, Service::wait).await,
        (&Method::POST, "/v1/bundle-credentials") => {
            call(service, req, Service::bundle_credentials).await
        }
        (&Method::POST, "/v1/leave") => call(service, req, Service::leave).await,
        (&Method::POST, "/v1/joined") => call(service, req, Service::joined).await,
        (&Method::POST, "/v1/renew") => {
            call(service, req, move |s, r: RenewRequest| {
                s.renew(node.as_deref(), r)
                    .map(|v| serde_json::to_value(v).unwrap_or_default())
            })
            .await
        }
        _ => Err(refuse(
            StatusCode::NOT_FOUND,
            "no such endpoint",
            "this is tele's join service",
        )),
    };
    match outcome {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err((status, refusal)) => {
            log(&format!("refused ({status}): {}", refusal.error));
            json_response(status, &refusal)
        }
    }
}

/// The common name of a client certificate (already checked against the
/// cluster CA by the TLS layer) when it is a bundle reader's.
fn bundle_reader(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = cert.subject();
    let in_group = subject
        .iter_organization()
        .any(|o| o.as_str().is_ok_and(|o| o == crate::pki::BUNDLE_READERS));
    let cn = subject.iter_common_name().next()?.as_str().ok()?;
    in_group.then(|| cn.to_string())
}

/// The node a client certificate (already checked against the cluster CA by
/// the TLS layer) speaks for: a kubelet's, `system:node:NAME` in the group
/// `system:nodes`.
fn node_identity(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = cert.subject();
    let in_group = subject
        .iter_organization()
        .any(|o| o.as_str().is_ok_and(|o| o == "system:nodes"));
    let cn = subject.iter_common_name().next()?.as_str().ok()?;
    let name = cn.strip_prefix("system:node:")?;
    in_group.then(|| name.to_string())
}

/// Serves the join service of the install in `state_dir` on `listen` until
/// SIGTERM or SIGINT.
pub fn run(state_dir: &std::path::Path, listen: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        log(&format!("serving on {listen}"));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        serve(state_dir, listener, stop).await
    })
}

/// Serves the join service of the install in `state_dir` on `listener`
/// until `stop` completes.
pub async fn serve(
    state_dir: &std::path::Path,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = StateDir::new(state_dir);
    let pki = state.pki();
    // Client certificates are asked for (and checked against the cluster
    // CA) but not required: joining nodes have none until admitted.
    let tls = crate::registry_server::tls_acceptor_with_clients(
        &crate::registry_server::TlsFiles {
            cert: pki.cert("join-server"),
            key: pki.key("join-server"),
        },
        Some(&pki.ca_cert()),
    )?;
    let service = Arc::new(Service {
        state,
        lock: Mutex::new(()),
    });
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let tls = tls.clone();
                let service = service.clone();
                tokio::spawn(async move {
                    let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(15), tls.accept(stream)).await else { return };
                    let peer = stream.get_ref().1.peer_certificates().and_then(|c| c.first());
                    let reader: Option<Arc<str>> = peer.and_then(bundle_reader).map(Arc::from);
                    let node: Option<Arc<str>> = peer.and_then(node_identity).map(Arc::from);
                    let svc = service_fn(move |req| {
                        let service = service.clone();
                        let reader = reader.clone();
                        let node = node.clone();
                        async move { Ok::<_, Infallible>(handle(service, req, reader, node).await) }
                    });
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(30))
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn pod_subnets_are_the_24s_of_the_pod_network() {
        assert_eq!(super::subnet("10.244.0.0/16", 0).unwrap(), "10.244.0.0/24");
        assert_eq!(super::subnet("10.244.0.0/16", 3).unwrap(), "10.244.3.0/24");
        assert_eq!(super::subnet("10.244.0.0/16", 256), None);
        assert_eq!(super::subnet("10.244.0.0/23", 1).unwrap(), "10.244.1.0/24");
        assert_eq!(super::subnet("10.244.0.0/23", 2), None);
    }
}
