//! The node's cluster DNS (`tele cluster-dns`): a DNS server on the node's
//! address, port 53, UDP and TCP, that the kubelet gives every pod of the
//! node as its nameserver (node-local, as NodeLocal DNSCache). Built on
//! hickory-server.
//!
//! Names of the cluster domain and reverse names of its networks are
//! answered from the [`zone::Zone`], which [`watch`] keeps in step with the
//! Services and Endpoints (and keeps while the API server is away). Other
//! names go to the node's own resolvers (its `/etc/resolv.conf`), each
//! question with at most [`FORWARD_BUDGET`] for all of them: with none
//! reachable (an air gap) the answer is SERVFAIL within that, not after a
//! client's 5-second timeout.
//!
//! The answering thread is real time while its work is light
//! ([`priority`]): its answers do not wait behind the node's other work.

pub mod priority;
pub mod watch;
pub mod zone;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Name, Record};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use zone::{Answer, Zone};

/// The most time a question for a name outside the cluster may take.
pub const FORWARD_BUDGET: Duration = Duration::from_millis(800);
/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The UDP payload size offered to EDNS clients.
const EDNS_PAYLOAD: u16 = 1232;

/// The service's stderr is its log.
#[allow(clippy::print_stderr)]
fn log(line: &str) {
    eprintln!("cluster-dns: {line}");
}

/// The nameservers of a `resolv.conf`, but `except` (this server).
pub fn upstreams(resolv_conf: &str, except: SocketAddr) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: std::net::IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .filter(|a| *a != except && !(except.ip().is_unspecified() && a.port() == except.port()))
        .take(3)
        .collect()
}

/// Answers questions: the cluster's from the zone, the rest from upstream.
pub struct Handler {
    zone: Arc<RwLock<Zone>>,
    upstreams: Vec<SocketAddr>,
}

impl Handler {
    /// A handler answering from `zone`, asking `upstreams` for other names.
    pub fn new(zone: Arc<RwLock<Zone>>, upstreams: Vec<SocketAddr>) -> Handler {
        Handler { zone, upstreams }
    }

    /// The upstream answer to the question `raw` (a whole DNS message), or
    /// None when no resolver answered within [`FORWARD_BUDGET`].
    async fn forward(&self, raw: &[u8], id: u16) -> Option<Message> {
        let deadline = Instant::now() + FORWARD_BUDGET;
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            // The time left, shared among the resolvers not yet asked.
            let share = left / u32::try_from(self.upstreams.len() - i).unwrap_or(1);
            if share.is_zero() {
                break;
            }
            let bind: SocketAddr = if upstream.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else {
                continue;
            };
            if socket.connect(upstream).await.is_err() || socket.send(raw).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            let got = tokio::time::timeout(share, async {
                loop {
                    let n = socket.recv(&mut buf).await.ok()?;
                    match Message::from_vec(&buf[..n]) {
                        Ok(m) if m.metadata.id == id => return Some(m),
                        _ => continue,
                    }
                }
            })
            .await;
            if let Ok(Some(m)) = got {
                return Some(m);
            }
        }
        None
    }

    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: &mut R,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_PAYLOAD);
            e
        });
        let builder = || MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let queries = request.queries.queries();
        if request.metadata.op_code != OpCode::Query || queries.len() != 1 {
            let code = if request.metadata.op_code == OpCode::Query {
                ResponseCode::FormErr
            } else {
                ResponseCode::NotImp
            };
            return handle
                .send_response(builder().error_msg(&request.metadata, code))
                .await;
        }
        let q = &queries[0];
        let qname: Name = q.name().clone().into();
        let (answer, soa) = {
            let zone = self.zone.read().unwrap_or_else(|e| e.into_inner());
            let answer = zone.answer(&qname, q.query_type());
            // Negative answers carry the zone's SOA (for negative caching).
            let soa = matches!(answer, Answer::NoData | Answer::NxDomain).then(|| zone.soa());
            (answer, soa)
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let none: [&Record; 0] = [];
        match answer {
            Answer::Records(records) => {
                meta.authoritative = true;
                handle
                    .send_response(builder().build(meta, records.iter(), none, none, none))
                    .await
            }
            Answer::NoData | Answer::NxDomain => {
                meta.authoritative = true;
                if answer == Answer::NxDomain {
                    meta.response_code = ResponseCode::NXDomain;
                }
                let soa: Vec<Record> = soa.into_iter().collect();
                handle
                    .send_response(builder().build(meta, none, none, soa.iter(), none))
                    .await
            }
            Answer::Elsewhere => {
                match self.forward(request.as_slice(), request.metadata.id).await {
                    Some(m) => {
                        meta.response_code = m.metadata.response_code;
                        meta.authoritative = m.metadata.authoritative;
                        meta.truncation = m.metadata.truncation;
                        handle
                            .send_response(builder().build(
                                meta,
                                m.answers.iter(),
                                m.authorities.iter(),
                                none,
                                m.additionals.iter(),
                            ))
                            .await
                    }
                    None => {
                        handle
                            .send_response(
                                builder().error_msg(&request.metadata, ResponseCode::ServFail),
                            )
                            .await
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        match self.respond(request, &mut response_handle).await {
            Ok(info) => info,
            Err(_) => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// What the service needs to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to answer (UDP and TCP).
    pub listen: SocketAddr,
    /// Read-only credentials for the watch of Services and Endpoints.
    pub kubeconfig: Option<PathBuf>,
    /// The resolvers for other names.
    pub upstreams: Vec<SocketAddr>,
    /// Govern the answering thread's priority ([`priority`]): real time
    /// while its work is light. `serve` must then run on a current-thread
    /// runtime (the thread that answers is the one governed).
    pub realtime: bool,
}

/// Serves the cluster DNS from `zone` (kept by a watch when the options
/// name a kubeconfig) until `stop` completes.
pub async fn serve(
    opts: &Options,
    zone: Arc<RwLock<Zone>>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let upstreams = opts.upstreams.clone();
    log(&format!(
        "answering on {} (udp, tcp); other names go to {}",
        opts.listen,
        if upstreams.is_empty() {
            "no resolver (none in the node's resolv.conf)".to_string()
        } else {
            upstreams
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    let bind_error = |e: std::io::Error| {
        anyhow::anyhow!(
            "cannot listen on {}: {e} (is another DNS server using port {} on that address?)",
            opts.listen,
            opts.listen.port()
        )
    };
    let udp = tokio::net::UdpSocket::bind(opts.listen)
        .await
        .map_err(bind_error)?;
    let tcp = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(bind_error)?;
    let mut server = hickory_server::Server::new(Handler::new(zone.clone(), upstreams));
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 65535);
    let governing = opts
        .realtime
        .then(|| tokio::spawn(priority::govern(|line: &str| log(line))));
    let kubeconfig = opts.kubeconfig.clone();
    let watching = tokio::spawn(async move {
        if let Some(kubeconfig) = kubeconfig {
            if let Err(e) = watch::run(&kubeconfig, zone).await {
                log(&format!("cannot watch the cluster: {e:#}"));
            }
        }
    });
    tokio::select! {
        done = server.block_until_done() => {
            done.map_err(|e| anyhow::anyhow!("the DNS server stopped: {e}"))?;
        }
        _ = stop => {}
    }
    watching.abort();
    if let Some(g) = governing {
        g.abort();
    }
    Ok(())
}

/// `tele cluster-dns`: the cluster DNS of the install in `state_dir`, on
/// `listen`, until SIGTERM or SIGINT.
pub fn run(state_dir: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    let state = crate::state_dir::StateDir::new(state_dir);
    let cfg = crate::node::NodeConfig::load(&state)?;
    // The watch's TLS (kube-rs over rustls) uses the same provider as the rest of tele.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let opts = Options {
        listen,
        kubeconfig: Some(state.pki().kubeconfig("kube-proxy")),
        upstreams: upstreams(&resolv, listen),
        realtime: true,
    };
    let networks = [cfg.service_cidr.as_str(), cfg.pod_cidr.as_str()];
    let zone = Arc::new(RwLock::new(Zone::new(CLUSTER_DOMAIN, &networks)));
    // One thread: a question is read, answered and sent on the thread that
    // took it, with no hand-over between threads to wait for (the tail
    // latency of a node-local DNS is its point); the watch shares it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        serve(&opts, zone, stop).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::RecordType;

    /// A server on a free port of 127.0.0.1 answering from `zone`, asking
    /// `upstreams`; stops when the sender is dropped.
    fn server(
        zone: Zone,
        upstreams: Vec<SocketAddr>,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let (listen, stop, _) = governed_server(zone, upstreams, false);
        (listen, stop)
    }

    /// [`server`], with its thread's priority governed when `realtime`;
    /// also the answering thread's id.
    fn governed_server(
        zone: Zone,
        upstreams: Vec<SocketAddr>,
        realtime: bool,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, u32) {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen: SocketAddr = ([127, 0, 0, 1], port).into();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tid_tx
                .send(u32::try_from(nix::unistd::gettid().as_raw()).unwrap())
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let opts = Options {
                listen,
                kubeconfig: None,
                upstreams,
                realtime,
            };
            rt.block_on(serve(&opts, Arc::new(RwLock::new(zone)), async move {
                let _ = stopped.await;
            }))
            .unwrap();
        });
        (listen, stop, tid_rx.recv().unwrap())
    }

    /// Asks `server` over UDP; the answer and how long it took.
    fn ask(server: SocketAddr, name: &str, t: RecordType) -> (Message, Duration) {
        let mut m = Message::query();
        m.metadata.id = 4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let began = Instant::now();
        let mut buf = [0u8; 4096];
        // The server may still be starting.
        for _ in 0..50 {
            socket.send_to(&m.to_vec().unwrap(), server).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                return (Message::from_vec(&buf[..n]).unwrap(), began.elapsed());
            }
        }
        panic!("{server} never answered");
    }

    fn api_zone() -> Zone {
        let mut z = Zone::new(CLUSTER_DOMAIN, &["10.100.0.0/16"]);
        z.services.insert(
            ("shop".into(), "api".into()),
            zone::Service {
                kind: zone::ServiceKind::ClusterIp(vec!["10.100.0.20".parse().unwrap()]),
                ports: vec![],
            },
        );
        z
    }

    #[test]
    fn cluster_names_are_answered_and_others_forwarded_or_failed_fast() {
        // The node's resolver: another server, whose zone is example.com.
        let (upstream, _u) = server(Zone::new("example.com", &[]), vec![]);
        let (dns, _d) = server(api_zone(), vec![upstream]);
        let (m, _) = ask(dns, "api.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data.to_string(), "10.100.0.20");
        let (m, _) = ask(dns, "web.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1, "the SOA, for negative caching");
        // Outside the cluster: the upstream's answer.
        let (m, _) = ask(dns, "dns-version.example.com.", RecordType::TXT);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers[0].data.to_string(), "1.1.0");
        // No resolver that answers (an air gap): SERVFAIL, well before a
        // client's 5-second timeout.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (dns, _d) = server(api_zone(), vec![silent.local_addr().unwrap()]);
        let (m, took) = ask(dns, "example.org.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(took < Duration::from_secs(3), "{took:?}");
        let (m, _) = ask(dns, "api.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.answers.len(), 1);
    }

    /// Polls the policy of thread `tid` of this process until it is `want`.
    fn wait_for_policy(tid: u32, want: u32, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if priority::policy_of(std::process::id(), tid) == Some(want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    #[test]
    #[allow(clippy::print_stderr)]
    fn the_answering_thread_is_real_time_until_a_flood_and_again_after_it() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: real-time priority needs root");
            return;
        }
        let (dns, _d, tid) = governed_server(api_zone(), vec![], true);
        let _ = ask(dns, "api.shop.svc.cluster.local.", RecordType::A);
        assert!(
            wait_for_policy(tid, 1, Duration::from_secs(5)),
            "SCHED_FIFO (1) at start: {:?}",
            priority::policy_of(std::process::id(), tid)
        );
        // A flood: questions as fast as one socket sends them (answers
        // unread), until the thread is back among the normal tasks.
        let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flooder = {
            let flooding = flooding.clone();
            std::thread::spawn(move || {
                let mut m = Message::query();
                m.add_query(Query::query(
                    Name::from_ascii("api.shop.svc.cluster.local.").unwrap(),
                    RecordType::A,
                ));
                let wire = m.to_vec().unwrap();
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 512];
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = socket.send_to(&wire, dns);
                    while socket.recv_from(&mut buf).is_ok() {}
                }
            })
        };
        let demoted = wait_for_policy(tid, 0, Duration::from_secs(20));
        flooding.store(false, std::sync::atomic::Ordering::Relaxed);
        flooder.join().unwrap();
        assert!(
            demoted,
            "a flood puts the answering thread back to normal (0)"
        );
        // Calm: real time again after CALM_FOR, and it still answers.
        assert!(
            wait_for_policy(tid, 1, priority::CALM_FOR * 4),
            "real time again once calm"
        );
        let (m, _) = ask(dns, "api.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.answers.len(), 1);
    }

    #[test]
    fn upstreams_are_the_nameservers_but_this_server() {
        let conf = "# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver 10.0.0.5\nnameserver fe80::1%eth0\noptions ndots:1\n";
        let me: SocketAddr = "10.0.0.5:53".parse().unwrap();
        assert_eq!(
            upstreams(conf, me),
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
