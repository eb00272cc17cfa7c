//! The cluster's names, as the Kubernetes DNS specification
//! (kubernetes/dns `docs/specification.md`, schema 1.1.0) gives them, from
//! the Services and Endpoints the watch keeps ([`Zone`]), and the answer to
//! one question ([`Zone::answer`]).
//!
//! - `<svc>.<ns>.svc.<zone>`: A/AAAA the cluster IP; for a headless Service
//!   the addresses of its ready endpoints; CNAME for an ExternalName Service.
//! - `<hostname>.<svc>.<ns>.svc.<zone>`: A for each endpoint of a headless
//!   Service (its `hostname`, as a StatefulSet's pods have, else its address
//!   with dashes).
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV for each named port, to
//!   the Service's name (ClusterIP) or to each endpoint's name (headless).
//! - PTR for cluster IPs and named endpoints; `<a-b-c-d>.<ns>.pod.<zone>`:
//!   A of that address; `dns-version.<zone>`: TXT `1.1.0`.
//! - A name under the zone that names nothing: NXDOMAIN; a name that exists
//!   without records of the asked type: no data. Reverse names in the
//!   service or pod network that name nothing: NXDOMAIN. Anything else is
//!   not the cluster's ([`Answer::Elsewhere`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How long answers may be cached (as CoreDNS's kubernetes plugin).
pub const TTL: u32 = 5;
/// The schema version of the specification followed.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// A Service port with a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Its name.
    pub name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The port number.
    pub port: u16,
}

/// What a Service's name resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// Its cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the addresses of its endpoints.
    Headless {
        /// Not-ready endpoints are published too.
        publish_not_ready: bool,
    },
    /// An alias for another name.
    ExternalName(String),
}

/// One Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Its kind.
    pub kind: ServiceKind,
    /// Its named ports.
    pub ports: Vec<Port>,
}

/// One address of an Endpoints object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub ip: IpAddr,
    /// `hostname` (a pod with `hostname` and `subdomain`).
    pub hostname: Option<String>,
    /// Listed under `addresses` (not `notReadyAddresses`).
    pub ready: bool,
}

impl Endpoint {
    /// Its name under the Service: its hostname, else its address with dashes.
    fn label(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| self.ip.to_string().replace(['.', ':'], "-"))
    }
}

/// An Endpoints object's addresses and named ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// The addresses.
    pub addresses: Vec<Endpoint>,
    /// The named ports.
    pub ports: Vec<Port>,
}

/// An IPv4 network, for reverse names that are the cluster's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net4 {
    base: u32,
    bits: u32,
}

impl Net4 {
    /// `A.B.C.D/N`, or None.
    pub fn parse(cidr: &str) -> Option<Net4> {
        let (ip, bits) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
        Some(Net4 {
            base: u32::from(ip),
            bits,
        })
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - self.bits).unwrap_or(0);
        u32::from(ip) & mask == self.base & mask
    }
}

/// The answer to one question.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// These records.
    Records(Vec<Record>),
    /// The name exists, with no records of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// Not a name of the cluster: ask the node's resolvers.
    Elsewhere,
}

/// The cluster's names: its Services and Endpoints by namespace and name.
#[derive(Clone, Debug)]
pub struct Zone {
    domain: Name,
    /// `(namespace, name)` to the Service.
    pub services: BTreeMap<(String, String), Service>,
    /// `(namespace, name)` to the Service's Endpoints.
    pub endpoints: BTreeMap<(String, String), Endpoints>,
    /// The service and pod networks: their reverse names are the cluster's.
    networks: Vec<Net4>,
    /// The zone's SOA record.
    soa: Record,
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok()
}

fn record(owner: &Name, data: RData) -> Record {
    Record::from_rdata(owner.clone(), TTL, data)
}

fn address(owner: &Name, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => record(owner, RData::A(A(v4))),
        IpAddr::V6(v6) => record(owner, RData::AAAA(AAAA(v6))),
    }
}

/// Whether `ip` answers a question of type `qtype`.
fn fits(ip: &IpAddr, qtype: RecordType) -> bool {
    match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        RecordType::ANY => true,
        _ => false,
    }
}

/// The IPv4 address a reverse name (`d.c.b.a.in-addr.arpa.`) stands for.
fn reverse_v4(labels: &[&str]) -> Option<Ipv4Addr> {
    match labels {
        [d, c, b, a, "in-addr", "arpa"] => format!("{a}.{b}.{c}.{d}").parse().ok(),
        _ => None,
    }
}

impl Zone {
    /// An empty zone for `domain` (e.g. `cluster.local`) whose reverse names
    /// in `networks` (CIDRs) are the cluster's.
    pub fn new(domain: &str, networks: &[&str]) -> Zone {
        let domain = name(&format!("{}.", domain.trim_end_matches('.')))
            .unwrap_or_else(|| Name::from_ascii("cluster.local.").expect("a name"));
        let under = |relative: &str| {
            name(&format!("{relative}.{}", domain.to_ascii())).unwrap_or_else(|| domain.clone())
        };
        let soa = record(
            &domain,
            RData::SOA(SOA::new(
                under("ns.dns"),
                under("hostmaster"),
                1,
                7200,
                1800,
                86400,
                TTL,
            )),
        );
        Zone {
            domain,
            services: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            networks: networks.iter().filter_map(|n| Net4::parse(n)).collect(),
            soa,
        }
    }

    /// The zone's SOA record, for the authority section of negative answers.
    pub fn soa(&self) -> Record {
        self.soa.clone()
    }

    fn fqdn(&self, relative: &str) -> Option<Name> {
        name(&format!("{relative}.{}", self.domain.to_ascii()))
    }

    /// The answer to `qname`/`qtype`.
    pub fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        let text = qname.to_lowercase().to_ascii();
        let text = text.trim_end_matches('.');
        let labels: Vec<&str> = text.split('.').collect();
        if let Some(ip) = reverse_v4(&labels) {
            return self.reverse(qname, ip, qtype);
        }
        let domain = self.domain.to_ascii();
        let domain = domain.trim_end_matches('.');
        let relative = if text == domain {
            Vec::new()
        } else if let Some(rest) = text.strip_suffix(&format!(".{domain}")) {
            rest.split('.').collect()
        } else {
            return Answer::Elsewhere;
        };
        let records = |r: Vec<Record>| {
            if r.is_empty() {
                Answer::NoData
            } else {
                Answer::Records(r)
            }
        };
        match relative.as_slice() {
            [] => records(if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                vec![self.soa()]
            } else {
                vec![]
            }),
            ["dns-version"] => records(if matches!(qtype, RecordType::TXT | RecordType::ANY) {
                vec![record(
                    qname,
                    RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])),
                )]
            } else {
                vec![]
            }),
            ["svc"] | ["pod"] => Answer::NoData,
            [ns, "svc"] | [ns, "pod"] => {
                if self.services.keys().any(|(n, _)| n == ns) {
                    Answer::NoData
                } else {
                    Answer::NxDomain
                }
            }
            [svc, ns, "svc"] => match self.service(ns, svc) {
                Some(s) => records(self.service_records(qname, ns, svc, s, qtype)),
                None => Answer::NxDomain,
            },
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                let Some(s) = self.service(ns, svc) else {
                    return Answer::NxDomain;
                };
                let (port, proto) = (&port[1..], &proto[1..]);
                let srv = self.srv_records(qname, ns, svc, s, Some((port, proto)));
                if srv.is_empty() {
                    Answer::NxDomain
                } else if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    Answer::Records(srv)
                } else {
                    Answer::NoData
                }
            }
            [host, svc, ns, "svc"] => {
                let found: Vec<&Endpoint> = self
                    .published(ns, svc)
                    .into_iter()
                    .filter(|e| e.label() == *host)
                    .collect();
                if found.is_empty() {
                    return Answer::NxDomain;
                }
                records(
                    found
                        .iter()
                        .filter(|e| fits(&e.ip, qtype))
                        .map(|e| address(qname, e.ip))
                        .collect(),
                )
            }
            [dashed, _ns, "pod"] => {
                let ip = dashed
                    .replace('-', ".")
                    .parse::<Ipv4Addr>()
                    .map(IpAddr::V4)
                    .or_else(|_| dashed.replace('-', ":").parse::<IpAddr>());
                match ip {
                    Ok(ip) if fits(&ip, qtype) => Answer::Records(vec![address(qname, ip)]),
                    Ok(_) => Answer::NoData,
                    Err(_) => Answer::NxDomain,
                }
            }
            _ => Answer::NxDomain,
        }
    }

    fn service(&self, ns: &str, svc: &str) -> Option<&Service> {
        self.services.get(&(ns.to_string(), svc.to_string()))
    }

    /// The endpoints a headless Service's names resolve to.
    fn published(&self, ns: &str, svc: &str) -> Vec<&Endpoint> {
        let Some(Service {
            kind: ServiceKind::Headless { publish_not_ready },
            ..
        }) = self.service(ns, svc)
        else {
            return Vec::new();
        };
        self.endpoints
            .get(&(ns.to_string(), svc.to_string()))
            .map(|e| {
                e.addresses
                    .iter()
                    .filter(|a| a.ready || *publish_not_ready)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn service_records(
        &self,
        qname: &Name,
        ns: &str,
        svc: &str,
        s: &Service,
        qtype: RecordType,
    ) -> Vec<Record> {
        match &s.kind {
            ServiceKind::ExternalName(target) => {
                match name(&format!("{}.", target.trim_end_matches('.'))) {
                    Some(t) => vec![record(qname, RData::CNAME(CNAME(t)))],
                    None => vec![],
                }
            }
            ServiceKind::ClusterIp(ips) if qtype != RecordType::SRV => ips
                .iter()
                .filter(|ip| fits(ip, qtype))
                .map(|ip| address(qname, *ip))
                .collect(),
            ServiceKind::Headless { .. } if qtype != RecordType::SRV => self
                .published(ns, svc)
                .into_iter()
                .filter(|e| fits(&e.ip, qtype))
                .map(|e| address(qname, e.ip))
                .collect(),
            _ => self.srv_records(qname, ns, svc, s, None),
        }
    }

    /// SRV records of the Service's named ports (`only`: one port and protocol).
    fn srv_records(
        &self,
        qname: &Name,
        ns: &str,
        svc: &str,
        s: &Service,
        only: Option<(&str, &str)>,
    ) -> Vec<Record> {
        let wanted = |p: &&Port| only.is_none_or(|(n, proto)| p.name == n && p.protocol == proto);
        let Some(service_name) = self.fqdn(&format!("{svc}.{ns}.svc")) else {
            return Vec::new();
        };
        match &s.kind {
            ServiceKind::ExternalName(_) => Vec::new(),
            ServiceKind::ClusterIp(_) => s
                .ports
                .iter()
                .filter(wanted)
                .map(|p| {
                    record(
                        qname,
                        RData::SRV(SRV::new(0, 100, p.port, service_name.clone())),
                    )
                })
                .collect(),
            ServiceKind::Headless { .. } => {
                let endpoints = self.published(ns, svc);
                let ports: Vec<Port> = self
                    .endpoints
                    .get(&(ns.to_string(), svc.to_string()))
                    .map(|e| e.ports.clone())
                    .unwrap_or_default();
                let weight = u16::try_from(100 / endpoints.len().max(1)).unwrap_or(1);
                ports
                    .iter()
                    .filter(wanted)
                    .flat_map(|p| {
                        endpoints.iter().filter_map(move |e| {
                            let target = self.fqdn(&format!("{}.{svc}.{ns}.svc", e.label()))?;
                            Some(record(
                                qname,
                                RData::SRV(SRV::new(0, weight, p.port, target)),
                            ))
                        })
                    })
                    .collect()
            }
        }
    }

    fn reverse(&self, qname: &Name, ip: Ipv4Addr, qtype: RecordType) -> Answer {
        let ip = IpAddr::V4(ip);
        let mut names = Vec::new();
        for ((ns, svc), s) in &self.services {
            match &s.kind {
                ServiceKind::ClusterIp(ips) if ips.contains(&ip) => {
                    names.extend(self.fqdn(&format!("{svc}.{ns}.svc")));
                }
                ServiceKind::Headless { .. } => {
                    for e in self.published(ns, svc) {
                        if e.ip == ip && e.hostname.is_some() {
                            names.extend(self.fqdn(&format!("{}.{svc}.{ns}.svc", e.label())));
                        }
                    }
                }
                _ => {}
            }
        }
        if !names.is_empty() {
            return if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                Answer::Records(
                    names
                        .into_iter()
                        .map(|n| record(qname, RData::PTR(PTR(n))))
                        .collect(),
                )
            } else {
                Answer::NoData
            };
        }
        let IpAddr::V4(v4) = ip else {
            return Answer::Elsewhere;
        };
        if self.networks.iter().any(|n| n.contains(v4)) {
            Answer::NxDomain
        } else {
            Answer::Elsewhere
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        let mut z = Zone::new("cluster.local", &["10.100.0.0/16", "10.244.0.0/16"]);
        let key = |ns: &str, n: &str| (ns.to_string(), n.to_string());
        let http = Port {
            name: "http".into(),
            protocol: "tcp".into(),
            port: 80,
        };
        z.services.insert(
            key("shop", "api"),
            Service {
                kind: ServiceKind::ClusterIp(vec!["10.100.0.20".parse().unwrap()]),
                ports: vec![http.clone()],
            },
        );
        z.services.insert(
            key("shop", "db"),
            Service {
                kind: ServiceKind::Headless {
                    publish_not_ready: false,
                },
                ports: vec![],
            },
        );
        z.endpoints.insert(
            key("shop", "db"),
            Endpoints {
                addresses: vec![
                    Endpoint {
                        ip: "10.244.1.5".parse().unwrap(),
                        hostname: Some("db-0".into()),
                        ready: true,
                    },
                    Endpoint {
                        ip: "10.244.2.6".parse().unwrap(),
                        hostname: None,
                        ready: true,
                    },
                    Endpoint {
                        ip: "10.244.2.7".parse().unwrap(),
                        hostname: Some("db-2".into()),
                        ready: false,
                    },
                ],
                ports: vec![Port {
                    name: "pg".into(),
                    protocol: "tcp".into(),
                    port: 5432,
                }],
            },
        );
        z.services.insert(
            key("shop", "bank"),
            Service {
                kind: ServiceKind::ExternalName("api.bank.example".into()),
                ports: vec![],
            },
        );
        z
    }

    fn ask(z: &Zone, q: &str, t: RecordType) -> Answer {
        z.answer(&Name::from_ascii(q).unwrap(), t)
    }

    /// The record data of an answer, as text (`A 10.0.0.1`, `SRV 0 100 80 x.`).
    fn data(a: Answer) -> Vec<String> {
        match a {
            Answer::Records(r) => r
                .iter()
                .map(|r| format!("{} {}", r.record_type(), r.data))
                .collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn every_record_kind_of_the_specification() {
        use RecordType::*;
        let z = zone();
        let table: &[(&str, RecordType, &[&str])] = &[
            ("api.shop.svc.cluster.local.", A, &["A 10.100.0.20"]),
            ("API.Shop.svc.cluster.local", A, &["A 10.100.0.20"]),
            ("api.shop.svc.cluster.local.", AAAA, &["NoData"]),
            (
                "_http._tcp.api.shop.svc.cluster.local.",
                SRV,
                &["SRV 0 100 80 api.shop.svc.cluster.local."],
            ),
            ("_http._udp.api.shop.svc.cluster.local.", SRV, &["NxDomain"]),
            // Headless: the ready endpoints, by address and by name.
            (
                "db.shop.svc.cluster.local.",
                A,
                &["A 10.244.1.5", "A 10.244.2.6"],
            ),
            ("db-0.db.shop.svc.cluster.local.", A, &["A 10.244.1.5"]),
            (
                "10-244-2-6.db.shop.svc.cluster.local.",
                A,
                &["A 10.244.2.6"],
            ),
            ("db-2.db.shop.svc.cluster.local.", A, &["NxDomain"]),
            (
                "_pg._tcp.db.shop.svc.cluster.local.",
                SRV,
                &[
                    "SRV 0 50 5432 db-0.db.shop.svc.cluster.local.",
                    "SRV 0 50 5432 10-244-2-6.db.shop.svc.cluster.local.",
                ],
            ),
            (
                "bank.shop.svc.cluster.local.",
                A,
                &["CNAME api.bank.example."],
            ),
            (
                "20.0.100.10.in-addr.arpa.",
                PTR,
                &["PTR api.shop.svc.cluster.local."],
            ),
            (
                "5.1.244.10.in-addr.arpa.",
                PTR,
                &["PTR db-0.db.shop.svc.cluster.local."],
            ),
            ("9.9.244.10.in-addr.arpa.", PTR, &["NxDomain"]),
            ("1.2.0.192.in-addr.arpa.", PTR, &["Elsewhere"]),
            ("10-244-3-4.shop.pod.cluster.local.", A, &["A 10.244.3.4"]),
            ("dns-version.cluster.local.", TXT, &["TXT 1.1.0"]),
            ("shop.svc.cluster.local.", A, &["NoData"]),
            ("nope.svc.cluster.local.", A, &["NxDomain"]),
            ("web.shop.svc.cluster.local.", A, &["NxDomain"]),
            ("example.com.", A, &["Elsewhere"]),
            ("cluster.local.example.com.", A, &["Elsewhere"]),
        ];
        for (q, t, want) in table {
            assert_eq!(data(ask(&z, q, *t)), *want, "{q} {t}");
        }
    }

    #[test]
    fn not_ready_endpoints_are_published_when_the_service_asks() {
        let mut z = zone();
        let db = z.services.get_mut(&("shop".into(), "db".into())).unwrap();
        db.kind = ServiceKind::Headless {
            publish_not_ready: true,
        };
        assert_eq!(
            data(ask(&z, "db-2.db.shop.svc.cluster.local.", RecordType::A)),
            ["A 10.244.2.7"]
        );
    }
}
