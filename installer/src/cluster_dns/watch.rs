//! Keeps the [`Zone`] in step with the cluster: a list-and-watch of every
//! Service and every Endpoints object (kube-rs's watcher: relists after a
//! lost watch, backs off while the API server is away). Only what names
//! need is kept of each object. While the API server is unreachable the zone
//! keeps what it last knew; a relist replaces it whole once complete.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use ::kube::runtime::watcher::{self, Event};
use ::kube::runtime::WatchStreamExt;
use ::kube::{Api, Client, ResourceExt};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1 as core;

use super::zone::{Endpoint, Endpoints, Port, Service, ServiceKind, Zone};

type Key = (String, String);

fn key<K: ResourceExt>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

fn ports<'a>(
    named: impl Iterator<Item = (Option<&'a String>, Option<&'a String>, i32)>,
) -> Vec<Port> {
    named
        .filter_map(|(name, protocol, port)| {
            Some(Port {
                name: name.filter(|n| !n.is_empty())?.to_lowercase(),
                protocol: protocol.map_or("tcp".into(), |p| p.to_lowercase()),
                port: u16::try_from(port).ok()?,
            })
        })
        .collect()
}

/// What names need of a Service.
pub fn service(s: &core::Service) -> Option<Service> {
    let spec = s.spec.as_ref()?;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        ServiceKind::ExternalName(spec.external_name.clone()?)
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless {
            publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
        }
    } else {
        let ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse().ok())
            .fold(Vec::new(), |mut v, ip| {
                if !v.contains(&ip) {
                    v.push(ip);
                }
                v
            });
        ServiceKind::ClusterIp(ips)
    };
    let ports = ports(
        spec.ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_ref(), p.protocol.as_ref(), p.port)),
    );
    Some(Service { kind, ports })
}

/// What names need of an Endpoints object.
pub fn endpoints(e: &core::Endpoints) -> Endpoints {
    let mut out = Endpoints::default();
    for subset in e.subsets.iter().flatten() {
        for (list, ready) in [
            (&subset.addresses, true),
            (&subset.not_ready_addresses, false),
        ] {
            for a in list.iter().flatten() {
                if let Ok(ip) = a.ip.parse() {
                    out.addresses.push(Endpoint {
                        ip,
                        hostname: a.hostname.clone().filter(|h| !h.is_empty()),
                        ready,
                    });
                }
            }
        }
        for p in ports(
            subset
                .ports
                .iter()
                .flatten()
                .map(|p| (p.name.as_ref(), p.protocol.as_ref(), p.port)),
        ) {
            if !out.ports.contains(&p) {
                out.ports.push(p);
            }
        }
    }
    out
}

/// Applies a watch's events to one map of the zone (`pick`), converting
/// each object with `convert`; a relist replaces the map once complete.
async fn follow<K, V>(
    api: Api<K>,
    zone: Arc<RwLock<Zone>>,
    what: &'static str,
    pick: fn(&mut Zone) -> &mut BTreeMap<Key, V>,
    convert: fn(&K) -> Option<V>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures_util::pin_mut!(stream);
    let mut relist: Option<BTreeMap<Key, V>> = None;
    let mut last_error = String::new();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                let text = e.to_string();
                if text != last_error {
                    super::log(&format!(
                        "watching {what}: {text} (answers keep the last known state)"
                    ));
                    last_error = text;
                }
                continue;
            }
        };
        last_error.clear();
        let mut zone = zone.write().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Init => relist = Some(BTreeMap::new()),
            Event::InitApply(obj) => {
                if let (Some(map), Some(v)) = (relist.as_mut(), convert(&obj)) {
                    map.insert(key(&obj), v);
                }
            }
            Event::InitDone => {
                if let Some(map) = relist.take() {
                    super::log(&format!("{} {what} known", map.len()));
                    *pick(&mut zone) = map;
                }
            }
            Event::Apply(obj) => {
                let map = pick(&mut zone);
                match convert(&obj) {
                    Some(v) => {
                        map.insert(key(&obj), v);
                    }
                    None => {
                        map.remove(&key(&obj));
                    }
                }
            }
            Event::Delete(obj) => {
                pick(&mut zone).remove(&key(&obj));
            }
        }
    }
}

/// Watches the cluster's Services and Endpoints with the credentials of
/// `kubeconfig` (read-only ones: kube-proxy's) into `zone`, for ever.
pub async fn run(kubeconfig: &Path, zone: Arc<RwLock<Zone>>) -> anyhow::Result<()> {
    let config = ::kube::Config::from_custom_kubeconfig(
        ::kube::config::Kubeconfig::read_from(kubeconfig)?,
        &::kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(config)?;
    tokio::join!(
        follow(
            Api::<core::Service>::all(client.clone()),
            zone.clone(),
            "services",
            |z| &mut z.services,
            service,
        ),
        follow(
            Api::<core::Endpoints>::all(client),
            zone,
            "endpoints",
            |z| &mut z.endpoints,
            |e| Some(endpoints(e)),
        ),
    );
    Ok(())
}
