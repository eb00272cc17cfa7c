//! The node's local API endpoint (`tele api-proxy`): every component of a
//! node reaches the API at `https://127.0.0.1:PORT`, and this proxy passes
//! each TCP connection (TLS end to end: every API server's certificate
//! names 127.0.0.1) to one of the masters' API servers, this node's own
//! first on a master. A server that refuses or does not answer within a
//! second is passed over for ten seconds; connections to a server that
//! stops answering are closed within half a minute (TCP keepalive and user
//! timeout), so that their clients reconnect to another. Every ten seconds
//! the list is refreshed from the `kubernetes` Endpoints (the API servers
//! that are alive), read through the proxy itself with kube-proxy's
//! credentials, and saved for the next start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use crate::durable::write_durably;
use crate::state_dir::StateDir;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const PASS_OVER: Duration = Duration::from_secs(10);
const REFRESH: Duration = Duration::from_secs(10);

/// The API servers saved in `state` (empty when none are).
pub fn read(state: &StateDir) -> Vec<SocketAddr> {
    std::fs::read(state.api_servers_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Saves the API servers (crash-safe).
pub fn write(state: &StateDir, servers: &[SocketAddr]) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(servers)?;
    bytes.push(b'\n');
    write_durably(&state.api_servers_file(), &bytes, 0o644)?;
    Ok(())
}

/// The API servers named by the `kubernetes` Endpoints, as `kubectl get -o json` prints a list of them.
fn servers_of_endpoints(json: &str) -> Vec<SocketAddr> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in v["items"].as_array().into_iter().flatten() {
        for subset in item["subsets"].as_array().into_iter().flatten() {
            let port = subset["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "https" || p["port"].is_u64())
                .and_then(|p| p["port"].as_u64())
                .and_then(|p| u16::try_from(p).ok());
            let Some(port) = port else { continue };
            for a in subset["addresses"].as_array().into_iter().flatten() {
                if let Some(ip) = a["ip"].as_str().and_then(|s| s.parse().ok()) {
                    out.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Which servers to try, in order: the preferred one (this master's own)
/// first, then the rest starting from a rotating offset; servers passed
/// over come last.
fn order(
    servers: &[SocketAddr],
    prefer: Option<SocketAddr>,
    down: &HashMap<SocketAddr, Instant>,
    turn: usize,
) -> Vec<SocketAddr> {
    let now = Instant::now();
    let is_down = |s: &SocketAddr| down.get(s).is_some_and(|until| *until > now);
    let mut rest: Vec<SocketAddr> = servers
        .iter()
        .copied()
        .filter(|s| Some(*s) != prefer)
        .collect();
    if !rest.is_empty() {
        let k = turn % rest.len();
        rest.rotate_left(k);
    }
    let mut all: Vec<SocketAddr> = prefer
        .filter(|p| servers.contains(p))
        .into_iter()
        .chain(rest)
        .collect();
    all.sort_by_key(is_down);
    all
}

struct Proxy {
    servers: Mutex<Vec<SocketAddr>>,
    down: Mutex<HashMap<SocketAddr, Instant>>,
    prefer: Option<SocketAddr>,
    turn: std::sync::atomic::AtomicUsize,
}

impl Proxy {
    async fn connect(&self) -> Option<TcpStream> {
        let candidates = {
            let servers = self
                .servers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
            let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            order(&servers, self.prefer, &down, turn)
        };
        for server in candidates {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
                Ok(Ok(stream)) => {
                    self.down
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&server);
                    return Some(stream);
                }
                _ => {
                    log(&format!("{server} does not answer; passing it over"));
                    self.down
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(server, Instant::now() + PASS_OVER);
                }
            }
        }
        None
    }
}

/// Connections to a server that stops answering end within about half a minute.
fn watch_liveness(stream: &TcpStream) {
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&keepalive);
    let _ = sock.set_tcp_user_timeout(Some(Duration::from_secs(25)));
}

async fn serve(proxy: Arc<Proxy>, mut client: TcpStream) {
    let Some(mut server) = proxy.connect().await else {
        log("no API server answers");
        return;
    };
    watch_liveness(&server);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// Reads the live API servers through the proxy; None when the API does not answer.
fn refresh(state: &StateDir) -> Option<Vec<SocketAddr>> {
    let bin = crate::node::runtime_binaries(state.root())
        .ok()?
        .get("kubectl")
        .cloned()?;
    let k = crate::kube::Kubectl::new(bin, state.pki().kubeconfig("kube-proxy"));
    let json = k
        .run(&[
            "get",
            "endpoints",
            "--namespace=default",
            "--field-selector=metadata.name=kubernetes",
            "--request-timeout=5s",
            "-o",
            "json",
        ])
        .ok()?;
    Some(servers_of_endpoints(&json)).filter(|s| !s.is_empty())
}

/// The proxy's stderr is its log.
#[allow(clippy::print_stderr)]
fn log(line: &str) {
    eprintln!("api-proxy: {line}");
}

/// Serves the local API endpoint of the install in `state_dir` on `listen`
/// until SIGTERM or SIGINT; `prefer` is this master's own API server.
pub fn run(
    state_dir: &std::path::Path,
    listen: SocketAddr,
    prefer: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let state = StateDir::new(state_dir);
    let servers = read(&state);
    anyhow::ensure!(
        !servers.is_empty() || prefer.is_some(),
        "no API servers are known: `{}` is missing or empty\nhint: run the install or join again with --resume",
        state.api_servers_file().display()
    );
    let proxy = Arc::new(Proxy {
        servers: Mutex::new(if servers.is_empty() {
            prefer.into_iter().collect()
        } else {
            servers
        }),
        down: Mutex::new(HashMap::new()),
        prefer,
        turn: Default::default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        log(&format!("serving on {listen}"));
        let refresher = {
            let proxy = proxy.clone();
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REFRESH).await;
                    let st = state.clone();
                    let Ok(Some(fresh)) = tokio::task::spawn_blocking(move || refresh(&st)).await
                    else {
                        continue;
                    };
                    let changed = {
                        let mut servers = proxy.servers.lock().unwrap_or_else(|e| e.into_inner());
                        let changed = *servers != fresh;
                        *servers = fresh.clone();
                        changed
                    };
                    if changed {
                        log(&format!("API servers: {fresh:?}"));
                        if let Err(e) = write(&state, &fresh) {
                            log(&format!("cannot save the API servers: {e:#}"));
                        }
                    }
                }
            })
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                accepted = listener.accept() => {
                    match accepted {
                        Ok((stream, _)) => { tokio::spawn(serve(proxy.clone(), stream)); }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
        }
        refresher.abort();
        Ok::<(), anyhow::Error>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_live_api_servers_come_from_the_kubernetes_endpoints() {
        let json = r#"{"items":[{"metadata":{"name":"kubernetes"},"subsets":[{
            "addresses":[{"ip":"10.0.0.2"},{"ip":"10.0.0.1"}],
            "ports":[{"name":"https","port":6443,"protocol":"TCP"}]}]}]}"#;
        assert_eq!(
            servers_of_endpoints(json),
            [a("10.0.0.1:6443"), a("10.0.0.2:6443")]
        );
        assert!(servers_of_endpoints(r#"{"items":[]}"#).is_empty());
        assert!(servers_of_endpoints("not json").is_empty());
    }

    #[test]
    fn the_own_server_comes_first_the_rest_rotate_and_dead_ones_last() {
        let servers = [a("10.0.0.1:6443"), a("10.0.0.2:6443"), a("10.0.0.3:6443")];
        let none = HashMap::new();
        assert_eq!(
            order(&servers, Some(servers[1]), &none, 0),
            [servers[1], servers[0], servers[2]]
        );
        assert_eq!(
            order(&servers, Some(servers[1]), &none, 1),
            [servers[1], servers[2], servers[0]]
        );
        assert_eq!(order(&servers, None, &none, 1)[0], servers[1]);
        let down = HashMap::from([(servers[1], Instant::now() + PASS_OVER)]);
        assert_eq!(
            order(&servers, Some(servers[1]), &down, 0),
            [servers[0], servers[2], servers[1]]
        );
        let expired = HashMap::from([(servers[1], Instant::now() - Duration::from_secs(1))]);
        assert_eq!(
            order(&servers, Some(servers[1]), &expired, 0)[0],
            servers[1]
        );
    }
}
