//! The nodes that wait in the CAPACITY step. For a bare-metal flavor of
//! several nodes the wizard makes, before the install, a join token for
//! each profile of the manifest's flavors (in the state directory's token
//! store, where the first node's join service finds them later) and serves
//! the start of the join protocol on the node's join port: the cluster CA
//! (`GET /v1/ca`, pinned by the tokens) and `POST /v1/wait`. A machine that
//! runs a join command shown on the page asks there, with its preflight
//! results, and waits; the page lists it live, the admin may give it
//! another profile (it gets that profile's token in its next answer), and
//! the Install button waits for the flavor's count. When the install
//! starts the line closes (the first node's join service takes the port);
//! the nodes in it join as soon as that node is installed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::{json, Answer, Shared};
use crate::join::{Refusal, WaitAnswer, WaitRequest};
use crate::preflight::CheckResult;
use crate::state_dir::StateDir;
use crate::token::{Token, TokenStore};

/// The most nodes listed at once.
const MAX_NODES: usize = 256;
/// A node not heard from for this long is shown as gone (it asks every 3 s).
const GONE_AFTER: Duration = Duration::from_secs(20);

/// One machine in line.
struct Waiting {
    name: String,
    ip: IpAddr,
    /// The profile its command named.
    asked: Option<String>,
    /// The profile the admin gave it.
    assigned: Option<String>,
    checks: Option<Vec<CheckResult>>,
    since: Instant,
    seen: Instant,
}

/// The line: the tokens and commands of each profile, and who waits.
pub(super) struct Line {
    /// Profile -> its token.
    tokens: BTreeMap<String, Token>,
    /// Profile -> its join command.
    commands: BTreeMap<String, String>,
    /// This machine (the first node): no one else may take its name or address.
    this_name: String,
    this_ip: IpAddr,
    nodes: Vec<Waiting>,
    /// Closed when the install starts.
    open: bool,
}

impl Line {
    /// A line for the manifest's flavors of several nodes (None when every
    /// flavor has one node): a token (24 h) and join command per profile,
    /// `ip` being this machine's address.
    pub(super) fn new(
        state: &StateDir,
        manifest: &tele_manifests::Manifest,
        this_name: String,
        ip: IpAddr,
    ) -> anyhow::Result<Option<Line>> {
        let flavors = manifest
            .installer
            .as_ref()
            .and_then(|i| i.flavors.as_ref())
            .map(|f| f.items.as_slice())
            .unwrap_or_default();
        if !flavors
            .iter()
            .any(|f| f.nodes.iter().map(|n| n.count).sum::<u32>() > 1)
        {
            return Ok(None);
        }
        let mut profiles: Vec<&str> = Vec::new();
        for n in flavors.iter().flat_map(|f| &f.nodes) {
            if !profiles.contains(&n.profile.as_str()) {
                profiles.push(&n.profile);
            }
        }
        let pin = crate::pki::ca_pin(&state.pki())?;
        let store = TokenStore::new(state);
        let mut tokens = BTreeMap::new();
        let mut commands = BTreeMap::new();
        for p in profiles {
            let (token, _) = store.create(Some(p), crate::token::DEFAULT_TTL, &pin)?;
            commands.insert(
                p.to_string(),
                crate::install::join_command_at(ip, crate::install::JOIN_PORT, &token, Some(p)),
            );
            tokens.insert(p.to_string(), token);
        }
        Ok(Some(Line {
            tokens,
            commands,
            this_name,
            this_ip: ip,
            nodes: Vec::new(),
            open: true,
        }))
    }

    /// What the page shows: the commands and the nodes in line.
    pub(super) fn view(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .map(|n| {
                let failed: Vec<&str> = n
                    .checks
                    .iter()
                    .flatten()
                    .filter(|c| c.status == crate::preflight::Status::Fail)
                    .map(|c| c.name.as_str())
                    .collect();
                serde_json::json!({
                    "name": n.name,
                    "ip": n.ip,
                    "profile": n.assigned.as_ref().or(n.asked.as_ref()),
                    "asked": n.asked,
                    "checks": n.checks,
                    "failed": failed,
                    "waitingSecs": n.since.elapsed().as_secs(),
                    "gone": n.seen.elapsed() > GONE_AFTER,
                })
            })
            .collect();
        serde_json::json!({
            "open": self.open,
            "commands": self.commands,
            "nodes": nodes,
        })
    }

    /// Gives node `name` the profile `profile`.
    pub(super) fn assign(&mut self, name: &str, profile: &str) -> Result<(), String> {
        if !self.tokens.contains_key(profile) {
            return Err(format!("the app's flavors have no profile `{profile}`"));
        }
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| format!("no node `{name}` waits"))?;
        node.assigned = Some(profile.to_string());
        Ok(())
    }

    /// Whether nodes may still wait (the install has not started).
    pub(super) fn is_open(&self) -> bool {
        self.open
    }

    /// Closes the line (the install starts).
    pub(super) fn close(&mut self) {
        self.open = false;
    }

    /// A node asking whether it may join yet.
    fn ask(&mut self, req: WaitRequest) -> Result<WaitAnswer, (StatusCode, Refusal)> {
        let refuse = |status, error: String, hint: &str| {
            (
                status,
                Refusal {
                    error,
                    hint: Some(hint.to_string()),
                    retry: false,
                },
            )
        };
        let j = &req.join;
        let token = Token::from_credential(&j.token)
            .map_err(|e| refuse(StatusCode::FORBIDDEN, e.to_string(), e.hint()))?;
        let known = self
            .tokens
            .values()
            .any(|t| t.id == token.id && t.secret == token.secret);
        if !known {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "the wizard does not know this token".into(),
                "copy the join command the wizard's page shows",
            ));
        }
        let role = self
            .tokens
            .iter()
            .find(|(_, t)| t.id == token.id)
            .map(|(p, _)| p.clone());
        if j.role.is_some() && j.role != role {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "token {} is for nodes of profile `{}`, not `{}`",
                    token.id,
                    role.unwrap_or_default(),
                    j.role.clone().unwrap_or_default()
                ),
                "run the command as the page shows it",
            ));
        }
        if j.node_name == self.this_name || j.node_ip == self.this_ip {
            return Err(refuse(
                StatusCode::CONFLICT,
                format!(
                    "{} ({}) is the first node's own name or address",
                    j.node_name, j.node_ip
                ),
                "run the join command on another machine",
            ));
        }
        if let Some(other) = self
            .nodes
            .iter()
            .find(|n| n.node_differs(&j.node_name, j.node_ip) && n.seen.elapsed() < GONE_AFTER)
        {
            return Err(refuse(
                StatusCode::CONFLICT,
                format!("{} waits already with the address {}", other.name, other.ip),
                "give this machine another --node-name",
            ));
        }
        let now = Instant::now();
        let node = match self.nodes.iter().position(|n| n.name == j.node_name) {
            Some(i) => &mut self.nodes[i],
            None => {
                if self.nodes.len() >= MAX_NODES {
                    return Err(refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{MAX_NODES} nodes wait already"),
                        "install the first node, then join the others",
                    ));
                }
                self.nodes.push(Waiting {
                    name: j.node_name.clone(),
                    ip: j.node_ip,
                    asked: j.role.clone(),
                    assigned: None,
                    checks: None,
                    since: now,
                    seen: now,
                });
                self.nodes.last_mut().expect("just pushed")
            }
        };
        node.ip = j.node_ip;
        node.seen = now;
        if j.role != node.asked && node.assigned.as_ref() == j.role.as_ref() {
            // It took the profile it was given: that is its profile now.
            node.asked = j.role.clone();
            node.assigned = None;
        }
        node.checks = req.checks;
        let change = node.assigned.clone().filter(|p| Some(p) != j.role.as_ref());
        let failed = node
            .checks
            .as_ref()
            .is_some_and(|c| crate::preflight::failed(c));
        Ok(WaitAnswer {
            ready: false,
            message: if failed {
                "the first node is not installed yet; this machine's checks failed and are shown on the wizard's page".into()
            } else {
                "waiting in the install wizard's CAPACITY step until the first node is installed"
                    .into()
            },
            token: change
                .as_ref()
                .and_then(|p| self.tokens.get(p))
                .map(Token::credential),
            profile: change,
            cluster_name: None,
        })
    }
}

impl Waiting {
    fn node_differs(&self, name: &str, ip: IpAddr) -> bool {
        (self.name == name) != (self.ip == ip)
    }
}

/// The join port's answers while the line is open.
pub(super) async fn handle(shared: std::sync::Arc<Shared>, req: Request<Incoming>) -> Answer {
    let refusal = |status: StatusCode, error: &str| {
        json(
            status,
            &serde_json::json!({"error": error, "hint": "this is the install wizard's line for joining nodes", "retry": false}),
        )
    };
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/v1/ca") => {
            let state = StateDir::new(&shared.state_dir);
            match std::fs::read(state.pki().ca_cert()) {
                Ok(pem) => super::answer(StatusCode::OK, "application/x-pem-file", pem),
                Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        (Method::POST, "/v1/wait") => {
            use http_body_util::BodyExt;
            let body = match http_body_util::Limited::new(req.into_body(), super::MAX_BODY)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return refusal(StatusCode::PAYLOAD_TOO_LARGE, "the request is too large")
                }
            };
            let asked = match serde_json::from_slice::<WaitRequest>(&body) {
                Ok(r) => r,
                Err(e) => return refusal(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let mut line = shared.line.lock().unwrap();
            let Some(line) = line.as_mut() else {
                return refusal(StatusCode::NOT_FOUND, "no node waits here");
            };
            match line.ask(asked) {
                Ok(a) => json(StatusCode::OK, &serde_json::to_value(a).unwrap_or_default()),
                Err((status, r)) => json(status, &serde_json::to_value(r).unwrap_or_default()),
            }
        }
        _ => refusal(
            StatusCode::NOT_FOUND,
            "the first node is not installed yet: only /v1/ca and /v1/wait are served",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::JoinRequest;
    use crate::preflight::Status;

    fn line(dir: &std::path::Path) -> Line {
        let state = StateDir::new(dir);
        crate::pki::ensure_service_cert(
            &state.pki_dir(),
            "wizard",
            &["10.0.0.1".to_string()],
            time::Duration::days(1),
            false,
        )
        .unwrap();
        let manifest = tele_manifests::parse_manifest(
            std::path::Path::new("app.yaml"),
            "apiVersion: bundle.gravitational.io/v2\nkind: Bundle\nmetadata: {name: a, resourceVersion: 1.0.0}\n\
             installer:\n  flavors:\n    items:\n      - name: two\n        nodes: [{profile: master, count: 1}, {profile: worker, count: 1}]\n\
             nodeProfiles:\n  - {name: master, serviceRole: master}\n  - {name: worker}\n",
        )
        .unwrap();
        Line::new(
            &state,
            &manifest,
            "first".into(),
            "10.0.0.1".parse().unwrap(),
        )
        .unwrap()
        .unwrap()
    }

    fn asking(
        line: &Line,
        profile: &str,
        name: &str,
        ip: &str,
        checks: Vec<CheckResult>,
    ) -> WaitRequest {
        WaitRequest {
            join: JoinRequest {
                token: line.tokens[profile].credential(),
                node_name: name.into(),
                node_ip: ip.parse().unwrap(),
                role: Some(profile.into()),
            },
            checks: Some(checks),
        }
    }

    /// Node n2 (10.0.0.2) asks as `profile`, its checks one of `status`.
    fn n2_asks(
        line: &mut Line,
        profile: &str,
        status: Status,
    ) -> Result<WaitAnswer, (StatusCode, Refusal)> {
        let r = asking(line, profile, "n2", "10.0.0.2", vec![check(status)]);
        line.ask(r)
    }

    fn check(status: Status) -> CheckResult {
        CheckResult {
            name: "cpu".into(),
            status,
            detail: "2 CPUs".into(),
            fix: None,
        }
    }

    #[test]
    fn a_node_waits_is_shown_and_takes_the_profile_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut line = line(dir.path());
        assert!(line.commands["worker"].starts_with("sudo ./install join 10.0.0.1 --token "));
        // The tokens are the cluster's: the first node's join service knows them.
        let store = TokenStore::new(&StateDir::new(dir.path()));
        store.check(&line.tokens["worker"], Some("worker")).unwrap();

        let a = n2_asks(&mut line, "worker", Status::Pass).unwrap();
        assert!(
            !a.ready && a.profile.is_none() && a.token.is_none(),
            "{a:?}"
        );
        let view = line.view();
        assert_eq!(view["nodes"][0]["name"], "n2");
        assert_eq!(view["nodes"][0]["profile"], "worker");
        assert_eq!(view["nodes"][0]["checks"][0]["status"], "pass");

        line.assign("n2", "master").unwrap();
        assert_eq!(line.view()["nodes"][0]["profile"], "master");
        let a = n2_asks(&mut line, "worker", Status::Pass).unwrap();
        assert_eq!(a.profile.as_deref(), Some("master"));
        assert_eq!(a.token, Some(line.tokens["master"].credential()));
        // Asking with it, the node is of that profile.
        let a = n2_asks(&mut line, "master", Status::Fail).unwrap();
        assert!(a.profile.is_none(), "{a:?}");
        assert!(a.message.contains("checks failed"), "{}", a.message);
        assert_eq!(line.view()["nodes"][0]["failed"][0], "cpu");
        assert!(line.assign("n2", "nosuch").is_err());
        assert!(line.assign("n9", "worker").is_err());
    }

    #[test]
    fn the_line_refuses_strangers_and_the_first_node_s_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut line = line(dir.path());
        let mut r = asking(&line, "worker", "n2", "10.0.0.2", vec![]);
        r.join.token = "abcdef.0123456789abcdef0123456789abcdef".into();
        assert_eq!(line.ask(r).unwrap_err().0, StatusCode::FORBIDDEN);
        let mut r = asking(&line, "worker", "n2", "10.0.0.2", vec![]);
        r.join.role = Some("master".into());
        assert_eq!(line.ask(r).unwrap_err().0, StatusCode::FORBIDDEN);
        let r = asking(&line, "worker", "first", "10.0.0.2", vec![]);
        assert_eq!(line.ask(r).unwrap_err().0, StatusCode::CONFLICT);
        line.ask(asking(&line, "worker", "n2", "10.0.0.2", vec![]))
            .unwrap();
        let r = asking(&line, "worker", "n3", "10.0.0.2", vec![]);
        assert_eq!(line.ask(r).unwrap_err().0, StatusCode::CONFLICT);
        assert!(line.view()["nodes"].as_array().unwrap().len() == 1);
    }
}
