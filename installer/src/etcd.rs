//! The masters' etcd cluster, managed with the runtime's `etcdctl` over
//! mutual TLS: members are added one at a time, as learners first (they
//! take no part in quorum until they have caught up and are promoted), and
//! removed only when the members left can still form a quorum.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::state_dir::StateDir;

/// etcd takes no new member now: another is still a learner, or the
/// cluster is settling after one joined (members are added one at a time).
#[derive(Debug, thiserror::Error)]
#[error("etcd takes no new member now: {0}")]
pub struct Busy(pub String);

/// etcd users with the root role: `root` (etcd wants it before it turns
/// access control on; it has no password, so no one can log in as it) and
/// the common name of the API servers' client certificate.
pub const ROOT_USERS: [&str; 2] = ["root", crate::pki::APISERVER_ETCD_CLIENT_CN];

/// One member as `etcdctl member list` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: u64,
    /// Its name (empty until a newly added member first starts).
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Its client URLs (empty until it first starts).
    pub client_urls: Vec<String>,
    /// A learner: not yet a voting member.
    pub is_learner: bool,
}

/// `etcdctl` against some of the cluster's members.
pub struct Etcdctl {
    bin: PathBuf,
    endpoints: Vec<String>,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Etcdctl {
    /// `etcdctl` of the install in `state`, with the API server's etcd
    /// client certificate, talking to `endpoints`.
    pub fn new(state: &StateDir, endpoints: Vec<String>) -> anyhow::Result<Etcdctl> {
        let bin = crate::node::runtime_binaries(state.root())?
            .get("etcdctl")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the runtime has no etcdctl"))?;
        let pki = state.pki();
        Ok(Etcdctl {
            bin,
            endpoints,
            ca: pki.etcd_ca_cert(),
            cert: pki.cert("apiserver-etcd-client"),
            key: pki.key("apiserver-etcd-client"),
        })
    }

    /// `etcdctl` at `bin` with the given CA and client certificate.
    pub fn with_files(
        bin: PathBuf,
        endpoints: Vec<String>,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    ) -> Etcdctl {
        Etcdctl {
            bin,
            endpoints,
            ca,
            cert,
            key,
        }
    }

    /// `etcdctl` against this master's own etcd.
    pub fn local(state: &StateDir, client_port: u16) -> anyhow::Result<Etcdctl> {
        Etcdctl::new(state, vec![format!("https://127.0.0.1:{client_port}")])
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints.join(",")))
            .arg(format!("--cacert={}", self.ca.display()))
            .arg(format!("--cert={}", self.cert.display()))
            .arg(format!("--key={}", self.key.display()))
            .arg("--dial-timeout=3s")
            .arg("--command-timeout=10s")
            .args(args)
            .output()?;
        crate::kube::stdout_or_stderr("etcdctl", args, out)
    }

    /// Turns on etcd's access control, once, on the first master. A client
    /// certificate's common name is its user there: the API servers' (also
    /// tele's own etcdctl) gets the root role, every other name none, so
    /// the health checker's certificate reaches `/health` and no key.
    /// Safe to repeat: existing users are kept, and enabling what is
    /// enabled is a no-op in etcd.
    pub fn enable_auth(&self) -> anyhow::Result<()> {
        for user in ROOT_USERS {
            if self.run(&["user", "get", user]).is_err() {
                self.run(&["user", "add", user, "--no-password"])?;
            }
            self.run(&["user", "grant-role", user, "root"])?;
        }
        self.run(&["auth", "enable"])?;
        Ok(())
    }

    /// The cluster's members.
    pub fn members(&self) -> anyhow::Result<Vec<Member>> {
        parse_members(&self.run(&["member", "list", "-w", "json"])?)
    }

    /// Adds `name` at `peer_url` as a learner, unless a member already has
    /// that peer URL; refuses while another member is still a learner (etcd
    /// takes one at a time). Returns the `--initial-cluster` the new member
    /// starts with.
    pub fn add_learner(&self, name: &str, peer_url: &str) -> anyhow::Result<String> {
        let members = self.members()?;
        let mine = members
            .iter()
            .find(|m| m.peer_urls.iter().any(|u| u == peer_url));
        if mine.is_none() {
            if let Some(other) = members.iter().find(|m| m.is_learner) {
                return Err(Busy(format!(
                    "another master ({}) is still joining",
                    other.peer_urls.join(",")
                ))
                .into());
            }
            // Right after a member joined, etcd refuses another until all
            // are connected: a transient refusal, like a learner's.
            if let Err(e) = self.run(&[
                "member",
                "add",
                name,
                "--learner",
                &format!("--peer-urls={peer_url}"),
            ]) {
                let text = e.to_string();
                if text.contains("unhealthy cluster") || text.contains("too many learner") {
                    return Err(Busy("the cluster is settling after a member joined".into()).into());
                }
                return Err(e);
            }
        }
        Ok(initial_cluster(&self.members()?, name, peer_url))
    }

    /// Promotes the learner at `peer_url` to a voting member; true once it
    /// is one (false while it is still catching up with the leader).
    pub fn promote(&self, peer_url: &str) -> anyhow::Result<bool> {
        let members = self.members()?;
        let Some(me) = members
            .iter()
            .find(|m| m.peer_urls.iter().any(|u| u == peer_url))
        else {
            anyhow::bail!("no etcd member has the peer URL {peer_url}");
        };
        if !me.is_learner {
            return Ok(true);
        }
        match self.run(&["member", "promote", &format!("{:x}", me.id)]) {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains("in sync with leader") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the member named `name`, refusing when the members left
    /// could not form a quorum. `healthy` says whether a member answers.
    /// False when there is no such member.
    pub fn remove(&self, name: &str, healthy: impl Fn(&Member) -> bool) -> anyhow::Result<bool> {
        let Some(gone) = self.removable(name, healthy)? else {
            return Ok(false);
        };
        // Right after a member (re)connected, etcd refuses to change its
        // membership until every member has been connected for a while.
        let begun = std::time::Instant::now();
        loop {
            match self.run(&["member", "remove", &format!("{:x}", gone.id)]) {
                Ok(_) => return Ok(true),
                Err(e)
                    if e.to_string().contains("unhealthy cluster")
                        && begun.elapsed() < Duration::from_secs(60) =>
                {
                    std::thread::sleep(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the member named `name` could be removed now (see
    /// [`Etcdctl::remove`]); changes nothing. False when there is no such member.
    pub fn check_removal(
        &self,
        name: &str,
        healthy: impl Fn(&Member) -> bool,
    ) -> anyhow::Result<bool> {
        Ok(self.removable(name, healthy)?.is_some())
    }

    fn removable(
        &self,
        name: &str,
        healthy: impl Fn(&Member) -> bool,
    ) -> anyhow::Result<Option<Member>> {
        let members = self.members()?;
        let Some(gone) = members.iter().find(|m| m.name == name) else {
            return Ok(None);
        };
        if !gone.is_learner {
            let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
            let left: Vec<&&Member> = voters.iter().filter(|m| m.id != gone.id).collect();
            let healthy_left = left.iter().filter(|m| healthy(m)).count();
            let quorum = left.len() / 2 + 1;
            if left.is_empty() {
                anyhow::bail!("{name} is the cluster's last etcd member");
            }
            if healthy_left < quorum {
                anyhow::bail!(
                    "removing {name} would leave {healthy_left} healthy of {} etcd members, fewer than the {quorum} a quorum needs",
                    left.len()
                );
            }
        }
        Ok(Some(gone.clone()))
    }
}

/// True when the etcd member answers its health endpoint within `limit`.
pub fn member_answers(state: &StateDir, m: &Member, limit: Duration) -> bool {
    let Ok(ctl) = Etcdctl::new(state, m.client_urls.clone()) else {
        return false;
    };
    !m.client_urls.is_empty()
        && std::thread::scope(|s| {
            let h = s.spawn(|| ctl.run(&["endpoint", "health"]).is_ok());
            let begun = std::time::Instant::now();
            while !h.is_finished() && begun.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(50));
            }
            h.is_finished() && h.join().unwrap_or(false)
        })
}

/// `name1=peer1,name2=peer2,...` for a member joining as `name` at `peer_url`.
fn initial_cluster(members: &[Member], name: &str, peer_url: &str) -> String {
    let mut parts: Vec<String> = members
        .iter()
        .filter(|m| !m.peer_urls.iter().any(|u| u == peer_url))
        .flat_map(|m| m.peer_urls.iter().map(move |u| format!("{}={u}", m.name)))
        .collect();
    parts.push(format!("{name}={peer_url}"));
    parts.sort();
    parts.join(",")
}

fn parse_members(json: &str) -> anyhow::Result<Vec<Member>> {
    #[derive(serde::Deserialize)]
    struct List {
        #[serde(default)]
        members: Vec<Raw>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        #[serde(rename = "ID")]
        id: u64,
        #[serde(default)]
        name: String,
        #[serde(default, rename = "peerURLs")]
        peer_urls: Vec<String>,
        #[serde(default, rename = "clientURLs")]
        client_urls: Vec<String>,
        #[serde(default)]
        is_learner: bool,
    }
    let list: List = serde_json::from_str(json)?;
    Ok(list
        .members
        .into_iter()
        .map(|r| Member {
            id: r.id,
            name: r.name,
            peer_urls: r.peer_urls,
            client_urls: r.client_urls,
            is_learner: r.is_learner,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"header":{"cluster_id":1,"member_id":2,"raft_term":3},"members":[
        {"ID":1311240452930016534,"name":"m1","peerURLs":["https://10.0.0.1:2380"],"clientURLs":["https://10.0.0.1:2379"]},
        {"ID":17237436991929493444,"peerURLs":["https://10.0.0.2:2380"],"isLearner":true}]}"#;

    #[test]
    fn members_parse_from_etcdctl_json() {
        let m = parse_members(LIST).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].name, "m1");
        assert!(!m[0].is_learner);
        assert_eq!(m[1].id, 17237436991929493444);
        assert!(m[1].is_learner && m[1].name.is_empty());
    }

    #[test]
    fn the_initial_cluster_names_every_member_and_the_new_one() {
        let m = parse_members(LIST).unwrap();
        assert_eq!(
            initial_cluster(&m, "m2", "https://10.0.0.2:2380"),
            "m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380"
        );
    }
}
