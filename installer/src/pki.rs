//! The cluster's PKI: the cluster CA, the serving and client certificates of
//! every component, the service-account key pair and the component
//! kubeconfigs, all under one directory of the state directory. etcd has a CA
//! of its own, whose only clients are the API servers and the health checker:
//! no certificate the cluster CA signs (a kubelet's, kube-proxy's, an approved
//! CSR's) opens etcd. The key that encrypts Secrets in etcd is kept here too.
//!
//! [`ensure`] is idempotent so the PKI phase can be rerun after a crash or
//! on `--resume`: it keeps the CA and every private key it finds, and
//! reissues a certificate only when it is missing or no longer says what the
//! configuration asks for (names and addresses, subject, key usage, issuer,
//! key, or a third of its life left or less). A CA certificate with a
//! third of its life left or less is remade from its key with the same
//! name and the life it had: what it signed still verifies against the new
//! one, and the old one, still valid, keeps working where it has not been
//! replaced yet. A second run with the same configuration writes nothing.
//!
//! Keys are ECDSA P-256 (PKCS#8 PEM), which etcd 3.4 and the Go TLS stack of
//! Kubernetes 1.20 accept for serving, client and service-account keys.
//!
//! Layout under `dir` (0700):
//!
//! | file | mode |
//! |------|------|
//! | `ca.crt`, `ca.key` | 0644, 0600 |
//! | `etcd-ca.crt`, `etcd-ca.key` (signs [`ETCD_LEAF_CERTS`] only) | 0644, 0600 |
//! | `encryption.yaml` (the API server's EncryptionConfiguration: Secrets in etcd under AES-CBC, a key made at install) | 0600 |
//! | `<name>.crt`, `<name>.key` for each of [`LEAF_CERTS`] | 0644, 0600 |
//! | `sa.key` (private, for `--service-account-signing-key-file`), `sa.pub` (for `--service-account-key-file`) | 0600, 0644 |
//! | `kubeconfig/<name>.conf` for each of [`KUBECONFIGS`] (they hold keys) | 0600 |

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, Permissions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// Common name of the cluster CA.
pub const CA_COMMON_NAME: &str = "tele-cluster-ca";
/// Common name of etcd's CA.
pub const ETCD_CA_COMMON_NAME: &str = "tele-etcd-ca";
/// The common name of the API servers' etcd client certificate: their user
/// in etcd, the one with the root role.
pub const APISERVER_ETCD_CLIENT_CN: &str = "kube-apiserver-etcd-client";

/// The leaf certificates that etcd's CA signs: etcd's own (serving and
/// peer) and its only clients'.
pub const ETCD_LEAF_CERTS: &[&str] = &[
    "etcd-server",
    "apiserver-etcd-client",
    "etcd-healthcheck-client",
];

/// Names of the leaf certificates written as `<name>.crt` / `<name>.key`.
///
/// `front-proxy-client` is signed by the cluster CA: kube-apiserver must be
/// run with `--requestheader-allowed-names=front-proxy-client` so no other
/// certificate from this CA can assert identities through request headers.
pub const LEAF_CERTS: &[&str] = &[
    "etcd-server",
    "apiserver",
    "apiserver-etcd-client",
    "etcd-healthcheck-client",
    "apiserver-kubelet-client",
    "kubelet-server",
    "registry",
    "registry-client",
    "front-proxy-client",
];

/// Names of the kubeconfigs written as `kubeconfig/<name>.conf`.
pub const KUBECONFIGS: &[&str] = &[
    "admin",
    "controller-manager",
    "scheduler",
    "kubelet",
    "kube-proxy",
    "volumes",
];

/// How long a new CA certificate is valid unless the install says
/// otherwise (`--ca-validity`).
pub const DEFAULT_CA_VALIDITY: Duration = Duration::days(3650);
/// How long leaf certificates and kubeconfigs are valid unless the install
/// says otherwise (`--cert-validity`).
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::days(365);
/// Backdating covers clocks that differ a little between nodes: an hour, or
/// a twentieth of a short validity.
const BACKDATE: Duration = Duration::hours(1);
const KUBECONFIG_CLUSTER: &str = "tele";

/// What the certificates must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiConfig {
    /// The node's name (hostname-like); a DNS SAN and part of the kubelet's identity.
    pub node_name: String,
    /// The node's addresses (IP SANs).
    pub node_ips: Vec<IpAddr>,
    /// Extra DNS SANs, e.g. the machine's hostname.
    pub hostnames: Vec<String>,
    /// The service CIDR, e.g. `10.100.0.0/16`; its first address is the
    /// `kubernetes` service IP, a SAN of the API server.
    pub service_cidr: String,
    /// The cluster DNS domain, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// The API server URL written into kubeconfigs, e.g. `https://10.0.0.5:6443`.
    pub api_server: String,
    /// How long the leaf certificates and kubeconfigs it issues are valid;
    /// each is reissued once a third of its life is left.
    pub leaf_validity: Duration,
    /// How long a CA certificate made new is valid (one remade keeps the
    /// life of the one it replaces).
    pub ca_validity: Duration,
}

/// The PKI on disk, as left by [`ensure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// The PKI directory.
    pub dir: PathBuf,
    /// Files written by this [`ensure`] call, relative to `dir` (empty when
    /// everything was already in place): services using them need a restart.
    pub written: Vec<String>,
}

impl Pki {
    /// The paths of a PKI in `dir` (nothing is read or written).
    pub fn at(dir: impl Into<PathBuf>) -> Pki {
        Pki {
            dir: dir.into(),
            written: Vec::new(),
        }
    }

    /// The CA certificate (`ca.crt`).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// etcd's CA certificate (`etcd-ca.crt`): what etcd trusts, and what
    /// its clients check etcd against.
    pub fn etcd_ca_cert(&self) -> PathBuf {
        self.dir.join("etcd-ca.crt")
    }

    /// The API server's encryption configuration (`encryption.yaml`, 0600).
    pub fn encryption_config(&self) -> PathBuf {
        self.dir.join(ENCRYPTION_CONFIG)
    }

    /// The certificate of `name` (`ca` or one of [`LEAF_CERTS`]).
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    /// The private key of `name` (`ca` or one of [`LEAF_CERTS`]).
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// The kubelet's own certificate directory (its `--cert-dir`), where
    /// it keeps the client certificates it rotates
    /// ([`crate::kubelet_client`]).
    pub fn kubelet_cert_dir(&self) -> PathBuf {
        self.dir.join(KUBELET_CERT_DIR)
    }

    /// The kubelet's current client certificate and key (a link the
    /// kubelet moves on each rotation).
    pub fn kubelet_client_current(&self) -> PathBuf {
        self.dir.join(KUBELET_CLIENT_CURRENT)
    }

    /// The kubeconfig of `name` (one of [`KUBECONFIGS`]).
    pub fn kubeconfig(&self, name: &str) -> PathBuf {
        self.dir.join("kubeconfig").join(format!("{name}.conf"))
    }

    /// The kubeconfig this node's own tools use: the admin's on a master; on
    /// a worker, which holds none, the kubelet's (it may read nodes and services).
    pub fn node_kubeconfig(&self) -> PathBuf {
        let admin = self.kubeconfig("admin");
        if admin.is_file() {
            admin
        } else {
            self.kubeconfig("kubelet")
        }
    }

    /// The service-account signing key (private, PKCS#8 PEM).
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }

    /// The service-account public key (PEM), for verifying tokens.
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }
}

/// True when every file [`ensure`] writes is there (their content is
/// checked by `ensure` itself).
pub fn is_complete(pki: &Pki) -> bool {
    let mut files = vec![
        pki.ca_cert(),
        pki.key("ca"),
        pki.etcd_ca_cert(),
        pki.key("etcd-ca"),
        pki.encryption_config(),
        pki.sa_key(),
        pki.sa_pub(),
    ];
    for n in LEAF_CERTS {
        files.push(pki.cert(n));
        files.push(pki.key(n));
    }
    for n in KUBECONFIGS {
        files.push(pki.kubeconfig(n));
    }
    files.iter().all(|f| f.is_file())
}

/// Why the PKI could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be read or written.
    #[error("failed to {action} `{path}`: {source}")]
    Io {
        /// What was being done, e.g. `write`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The service CIDR is not a usable network.
    #[error("invalid service CIDR `{cidr}`: {reason}")]
    ServiceCidr {
        /// The CIDR as given.
        cidr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An existing key could not be used; it is never replaced silently
    /// because certificates and tokens already depend on it.
    #[error("`{path}` is not a usable private key: {reason} (hint: move it away to have a new one generated, which invalidates everything it signed)")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate could not be made, e.g. a name that is not a valid DNS name.
    #[error("failed to issue `{name}`: {source}")]
    Issue {
        /// The certificate's name.
        name: String,
        /// The cause.
        source: rcgen::Error,
    },
}

/// The first address of `cidr` after the network address: the IP of the
/// `kubernetes` service, e.g. `10.100.0.1` for `10.100.0.0/16`.
pub fn first_service_ip(cidr: &str) -> Result<IpAddr, PkiError> {
    let bad = |reason: &str| PkiError::ServiceCidr {
        cidr: cidr.to_string(),
        reason: reason.to_string(),
    };
    let (addr, prefix) = cidr
        .trim()
        .split_once('/')
        .ok_or_else(|| bad("expected ADDRESS/PREFIX, e.g. 10.100.0.0/16"))?;
    let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    let prefix: u32 = prefix.parse().map_err(|_| bad("prefix is not a number"))?;
    match addr {
        IpAddr::V4(v4) => {
            if prefix > 30 {
                return Err(bad("prefix must be at most 30 to hold services"));
            }
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            Ok(IpAddr::V4(Ipv4Addr::from((u32::from(v4) & mask) + 1)))
        }
        IpAddr::V6(v6) => {
            if prefix > 126 {
                return Err(bad("prefix must be at most 126 to hold services"));
            }
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            Ok(IpAddr::V6(Ipv6Addr::from((u128::from(v6) & mask) + 1)))
        }
    }
}

/// Creates what is missing under `dir` and reissues certificates that no
/// longer match `cfg`; see the module docs for the layout and rules.
pub fn ensure(dir: &Path, cfg: &PkiConfig) -> Result<Pki, PkiError> {
    ensure_with(dir, cfg, false)
}

/// [`ensure`], but every leaf certificate and kubeconfig is issued anew
/// (for the keys it keeps), whatever time it has left.
pub fn reissue(dir: &Path, cfg: &PkiConfig) -> Result<Pki, PkiError> {
    ensure_with(dir, cfg, true)
}

fn ensure_with(dir: &Path, cfg: &PkiConfig, reissue: bool) -> Result<Pki, PkiError> {
    let mut pki = Pki {
        dir: dir.to_path_buf(),
        written: Vec::new(),
    };
    let service_ip = first_service_ip(&cfg.service_cidr)?;
    ensure_dir(dir)?;
    ensure_dir(&dir.join("kubeconfig"))?;

    let ca_key = load_or_generate_key(&mut pki, "ca.key")?;
    let ca = load_named_ca(&mut pki, &ca_key, "ca", CA_COMMON_NAME, cfg.ca_validity)?;
    let etcd_ca_key = load_or_generate_key(&mut pki, "etcd-ca.key")?;
    let etcd_ca = load_named_ca(
        &mut pki,
        &etcd_ca_key,
        "etcd-ca",
        ETCD_CA_COMMON_NAME,
        cfg.ca_validity,
    )?;

    for spec in leaf_specs(cfg, service_ip) {
        let signer = if ETCD_LEAF_CERTS.contains(&spec.name.as_str()) {
            &etcd_ca
        } else {
            &ca
        };
        ensure_leaf(&mut pki, &spec, signer, reissue)?;
    }
    if !pki.encryption_config().is_file() {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| PkiError::Io {
            action: "make a key for",
            path: pki.encryption_config(),
            source: io::Error::other(e.to_string()),
        })?;
        write_file(
            &mut pki,
            ENCRYPTION_CONFIG,
            encryption_config(&BASE64.encode(secret)).as_bytes(),
            0o600,
        )?;
    }

    let sa_key = load_or_generate_key(&mut pki, "sa.key")?;
    let sa_pub = sa_key.public_key_pem();
    if read_optional(&pki.sa_pub())?.as_deref() != Some(sa_pub.as_str()) {
        write_file(&mut pki, "sa.pub", sa_pub.as_bytes(), 0o644)?;
    }

    for spec in kubeconfig_specs(cfg) {
        let file = format!("kubeconfig/{}.conf", spec.name);
        let existing = read_optional(&dir.join(&file))?;
        let current = !reissue
            && existing
                .as_deref()
                .is_some_and(|text| kubeconfig_is_current(text, &spec, &ca, &cfg.api_server));
        if !current {
            write_kubeconfig(&mut pki, &spec, &ca, &cfg.api_server)?;
        }
    }
    Ok(pki)
}

/// A serving certificate `<name>.crt`/`<name>.key` for an in-cluster
/// service, signed by the cluster CA that [`ensure`] made in `dir`, valid
/// for `validity`; kept when it still names exactly `sans` and has more than
/// a third of its life left (and `reissue` is false). Returns the
/// certificate and key paths, and whether the certificate was (re)issued.
pub fn ensure_service_cert(
    dir: &Path,
    name: &str,
    sans: &[String],
    validity: Duration,
    reissue: bool,
) -> Result<(PathBuf, PathBuf, bool), PkiError> {
    let mut pki = Pki {
        dir: dir.to_path_buf(),
        written: Vec::new(),
    };
    let ca_key = load_or_generate_key(&mut pki, "ca.key")?;
    let ca = load_ca(&mut pki, &ca_key)?;
    let cn = sans.first().map(String::as_str).unwrap_or(name);
    let spec = spec(
        name,
        cn,
        &[],
        Usage::Server,
        sans.iter().map(|s| San::from_name(s)).collect(),
    )
    .valid_for(validity);
    ensure_leaf(&mut pki, &spec, &ca, reissue)?;
    let issued = pki.written.iter().any(|f| *f == format!("{name}.crt"));
    Ok((pki.cert(name), pki.key(name), issued))
}

/// The pin of the cluster CA in `pki`: `sha256:<hex>` of its
/// SubjectPublicKeyInfo, as kubeadm's discovery token CA hash.
pub fn ca_pin(pki: &Pki) -> Result<String, PkiError> {
    let pem = read_optional(&pki.ca_cert())?.ok_or_else(|| PkiError::Io {
        action: "read",
        path: pki.ca_cert(),
        source: io::Error::new(io::ErrorKind::NotFound, "no cluster CA"),
    })?;
    pin_of_pem(&pem).ok_or_else(|| PkiError::Io {
        action: "parse",
        path: pki.ca_cert(),
        source: io::Error::new(io::ErrorKind::InvalidData, "not a PEM certificate"),
    })
}

/// The pin (`sha256:<hex>` of the public key) of a PEM certificate.
pub fn pin_of_pem(pem: &str) -> Option<String> {
    use sha2::Digest as _;
    let der = parse_pem(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    Some(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(spki))
    ))
}

/// The credentials of a worker node, issued by the cluster CA in `master`
/// into `out`: `ca.crt`, the kubelet's serving certificate, the node
/// registry's certificate and its client's (containerd's), and the kubelet's and kube-proxy's kubeconfigs
/// (for `cfg.api_server`). The CA's key never leaves `master`.
pub fn issue_worker(master: &Path, out: &Path, cfg: &PkiConfig) -> Result<(), PkiError> {
    let mut signer = Pki::at(master);
    require_ca_key(&signer)?;
    let ca_key = load_or_generate_key(&mut signer, "ca.key")?;
    let ca = load_ca(&mut signer, &ca_key)?;
    let mut node = Pki::at(out);
    ensure_dir(out)?;
    ensure_dir(&out.join("kubeconfig"))?;
    write_file(&mut node, "ca.crt", ca.pem.as_bytes(), 0o644)?;
    let service_ip = first_service_ip(&cfg.service_cidr)?;
    for spec in leaf_specs(cfg, service_ip)
        .into_iter()
        .filter(|s| ["kubelet-server", "registry", "registry-client"].contains(&s.name.as_str()))
    {
        ensure_leaf(&mut node, &spec, &ca, false)?;
    }
    for spec in kubeconfig_specs(cfg)
        .into_iter()
        .filter(|s| ["kubelet", "kube-proxy", "volumes"].contains(&s.name.as_str()))
    {
        write_kubeconfig(&mut node, &spec, &ca, &cfg.api_server)?;
    }
    Ok(())
}

/// Refuses to sign where the cluster CA's key is not (a worker): signing
/// must never make a new CA.
fn require_ca_key(signer: &Pki) -> Result<(), PkiError> {
    if signer.key("ca").is_file() {
        return Ok(());
    }
    Err(PkiError::Io {
        action: "read",
        path: signer.key("ca"),
        source: io::Error::new(io::ErrorKind::NotFound, "this node holds no cluster CA"),
    })
}

/// The group (certificate organisation) of the short-lived client
/// certificates that let a joining node fetch the bundle from a master.
pub const BUNDLE_READERS: &str = "tele:bundle-readers";
/// How long such a certificate is valid.
pub const BUNDLE_READER_VALIDITY: Duration = Duration::hours(1);

/// A client certificate and its new key (PEM), issued by the cluster CA in
/// `master` to `node` for fetching the bundle from the masters' join
/// service: group [`BUNDLE_READERS`], valid for [`BUNDLE_READER_VALIDITY`].
/// It grants nothing else (no role in the cluster names that group).
pub fn issue_bundle_reader(master: &Path, node: &str) -> Result<(String, String), PkiError> {
    let mut signer = Pki::at(master);
    require_ca_key(&signer)?;
    let ca_key = load_or_generate_key(&mut signer, "ca.key")?;
    let ca = load_ca(&mut signer, &ca_key)?;
    let spec = spec(
        "bundle-reader",
        &format!("tele:bundle-reader:{node}"),
        &[BUNDLE_READERS],
        Usage::Client,
        vec![],
    );
    let key = KeyPair::generate().map_err(|source| PkiError::Issue {
        name: spec.name.clone(),
        source,
    })?;
    let cert = issue_valid_for(&spec, &key, &ca, BUNDLE_READER_VALIDITY)?;
    Ok((cert, key.serialize_pem()))
}

/// When one certificate of a PKI directory expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// The file, relative to the PKI directory (`apiserver.crt`,
    /// `kubeconfig/admin.conf`).
    pub file: String,
    /// Its notBefore and notAfter, seconds since the epoch.
    pub not_before: i64,
    /// See `not_before`.
    pub not_after: i64,
}

impl Expiry {
    /// Seconds left at `now` (negative once expired).
    pub fn seconds_left(&self, now: i64) -> i64 {
        self.not_after - now
    }
}

/// The kubelet's certificate directory, relative to the PKI directory.
pub const KUBELET_CERT_DIR: &str = "kubelet";
/// The client certificate the kubelet uses (a symlink it moves on each
/// rotation), relative to the PKI directory.
pub const KUBELET_CLIENT_CURRENT: &str = "kubelet/kubelet-client-current.pem";

/// The expiry of the first certificate in `pem`, reported as `file`.
pub fn pem_expiry(file: String, pem: &str) -> Option<Expiry> {
    let der = parse_pem(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(Expiry {
        file,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The expiry of every certificate in `dir`: the CAs and leaves (`*.crt`),
/// the client certificates of `kubeconfig/*.conf` and the kubelet's current
/// client certificate, sorted by file. Files that do not parse are left
/// out (each file is read with a bound).
pub fn expiries(dir: &Path) -> Vec<Expiry> {
    use std::io::Read as _;
    let read = |path: &Path| -> Option<String> {
        let mut text = String::new();
        fs::File::open(path)
            .ok()?
            .take(1 << 20)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    };
    let of_pem = pem_expiry;
    let mut out = Vec::new();
    let list = |sub: &str, ext: &str| -> Vec<(String, PathBuf)> {
        let mut files: Vec<(String, PathBuf)> = fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                name.ends_with(ext).then(|| {
                    let rel = if sub.is_empty() {
                        name
                    } else {
                        format!("{sub}/{name}")
                    };
                    (rel, e.path())
                })
            })
            .collect();
        files.sort();
        files
    };
    for (rel, path) in list("", ".crt") {
        if let Some(e) = read(&path).and_then(|pem| of_pem(rel, &pem)) {
            out.push(e);
        }
    }
    for (rel, path) in list("kubeconfig", ".conf") {
        let cert = read(&path).and_then(|text| kubeconfig_data(&text, "client-certificate-data"));
        if let Some(e) = cert.and_then(|pem| of_pem(rel, &pem)) {
            out.push(e);
        }
    }
    let current = KUBELET_CLIENT_CURRENT.to_string();
    if let Some(e) = read(&dir.join(&current)).and_then(|pem| of_pem(current, &pem)) {
        out.push(e);
    }
    out
}

/// Issues the client certificate of `spec` (a new key) and writes it as
/// `kubeconfig/<name>.conf` for `api_server`, 0600.
fn write_kubeconfig(
    pki: &mut Pki,
    spec: &CertSpec,
    ca: &Ca<'_>,
    api_server: &str,
) -> Result<(), PkiError> {
    let key = KeyPair::generate().map_err(|source| PkiError::Issue {
        name: spec.name.clone(),
        source,
    })?;
    let cert = issue(spec, &key, ca)?;
    let text = render_kubeconfig(&spec.name, api_server, &ca.pem, &cert, &key);
    write_file(
        pki,
        &format!("kubeconfig/{}.conf", spec.name),
        text.as_bytes(),
        0o600,
    )
}

/// The file name of the API server's encryption configuration.
const ENCRYPTION_CONFIG: &str = "encryption.yaml";

/// The API server's EncryptionConfiguration: Secrets written with AES-CBC
/// under `key` (base64 of 32 random bytes); `identity` last so Secrets
/// written before encryption was on can still be read.
fn encryption_config(key: &str) -> String {
    format!(
        "# Written by tele at install: the key that encrypts Secrets in etcd. Keep it secret.\napiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: {key}\n      - identity: {{}}\n"
    )
}

/// The cluster CA (made if missing) as a signer.
fn load_ca<'a>(pki: &mut Pki, ca_key: &'a KeyPair) -> Result<Ca<'a>, PkiError> {
    load_named_ca(pki, ca_key, "ca", CA_COMMON_NAME, DEFAULT_CA_VALIDITY)
}

/// The CA `<name>.crt` (made if missing, with common name `cn`) as a signer.
fn load_named_ca<'a>(
    pki: &mut Pki,
    ca_key: &'a KeyPair,
    name: &str,
    cn: &str,
    new_life: Duration,
) -> Result<Ca<'a>, PkiError> {
    let pem = ensure_ca_cert(pki, ca_key, name, cn, new_life)?;
    let ski = subject_key_id(&pem).unwrap_or_default();
    let issuer = Issuer::from_ca_cert_pem(&pem, ca_key).map_err(|source| PkiError::Issue {
        name: name.to_string(),
        source,
    })?;
    Ok(Ca { issuer, ski, pem })
}

/// Keeps `<name>.crt` when it still matches `spec` and `ca` (and `reissue`
/// is false), else issues it anew for the kept (or a new) key.
fn ensure_leaf(pki: &mut Pki, spec: &CertSpec, ca: &Ca<'_>, reissue: bool) -> Result<(), PkiError> {
    let key = load_or_generate_key(pki, &format!("{}.key", spec.name))?;
    let cert_file = format!("{}.crt", spec.name);
    let current = !reissue
        && read_optional(&pki.dir.join(&cert_file))?
            .as_deref()
            .is_some_and(|pem| cert_is_current(pem, &spec.identity, &ca.ski, &key));
    if !current {
        let pem = issue(spec, &key, ca)?;
        write_file(pki, &cert_file, pem.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// The signing side: the CA's issuer and what leaves must point back to.
struct Ca<'a> {
    issuer: Issuer<'a, &'a KeyPair>,
    /// Subject key identifier of `ca.crt`; leaves carry it as their authority key id.
    ski: Vec<u8>,
    pem: String,
}

/// A name in a certificate's subjectAltName.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    fn from_name(name: &str) -> San {
        match name.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(name.to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Everything about a certificate that follows from the configuration; a
/// certificate on disk is kept when its identity equals the wanted one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    common_name: String,
    organizations: Vec<String>,
    sans: BTreeSet<San>,
    server_auth: bool,
    client_auth: bool,
}

struct CertSpec {
    name: String,
    identity: Identity,
    validity: Duration,
}

impl CertSpec {
    fn valid_for(mut self, validity: Duration) -> CertSpec {
        self.validity = validity;
        self
    }
}

#[derive(Clone, Copy)]
enum Usage {
    Server,
    Client,
    ServerAndClient,
}

fn spec(name: &str, cn: &str, orgs: &[&str], usage: Usage, sans: Vec<San>) -> CertSpec {
    let (server_auth, client_auth) = match usage {
        Usage::Server => (true, false),
        Usage::Client => (false, true),
        Usage::ServerAndClient => (true, true),
    };
    CertSpec {
        name: name.to_string(),
        identity: Identity {
            common_name: cn.to_string(),
            organizations: orgs.iter().map(|o| o.to_string()).collect(),
            sans: sans.into_iter().collect(),
            server_auth,
            client_auth,
        },
        validity: DEFAULT_LEAF_VALIDITY,
    }
}

fn leaf_specs(cfg: &PkiConfig, service_ip: IpAddr) -> Vec<CertSpec> {
    leaf_identities(cfg, service_ip)
        .into_iter()
        .map(|s| s.valid_for(cfg.leaf_validity))
        .collect()
}

fn leaf_identities(cfg: &PkiConfig, service_ip: IpAddr) -> Vec<CertSpec> {
    let node_ips = || cfg.node_ips.iter().copied().map(San::Ip);
    let node_name = || San::from_name(&cfg.node_name);
    let hostnames = || cfg.hostnames.iter().map(|h| San::from_name(h));
    let loopback = || {
        [
            San::Ip(IpAddr::from([127, 0, 0, 1])),
            San::Dns("localhost".to_string()),
        ]
    };
    let kubernetes = [
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        format!("kubernetes.default.svc.{}", cfg.cluster_domain),
    ]
    .map(|n| San::from_name(&n));

    let local_server: Vec<San> = node_ips().chain(loopback()).chain([node_name()]).collect();
    let apiserver: Vec<San> = local_server
        .iter()
        .cloned()
        .chain([San::Ip(service_ip)])
        .chain(hostnames())
        .chain(kubernetes)
        .collect();
    let kubelet: Vec<San> = node_ips().chain([node_name()]).chain(hostnames()).collect();
    vec![
        spec(
            "etcd-server",
            "etcd-server",
            &[],
            Usage::ServerAndClient,
            local_server.clone(),
        ),
        spec("apiserver", "kube-apiserver", &[], Usage::Server, apiserver),
        spec(
            "apiserver-etcd-client",
            APISERVER_ETCD_CLIENT_CN,
            &[],
            Usage::Client,
            vec![],
        ),
        spec(
            "etcd-healthcheck-client",
            "tele-health-checker",
            &[],
            Usage::Client,
            vec![],
        ),
        spec(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &["system:masters"],
            Usage::Client,
            vec![],
        ),
        spec(
            "kubelet-server",
            &format!("system:node:{}", cfg.node_name),
            &[],
            Usage::Server,
            kubelet,
        ),
        spec(
            "registry",
            "tele-registry",
            &[],
            Usage::Server,
            local_server,
        ),
        // The node's containerd, the only client the node's registry lets in.
        spec(
            "registry-client",
            "tele-registry-client",
            &[],
            Usage::Client,
            vec![],
        ),
        spec(
            "front-proxy-client",
            "front-proxy-client",
            &[],
            Usage::Client,
            vec![],
        ),
    ]
}

fn kubeconfig_specs(cfg: &PkiConfig) -> Vec<CertSpec> {
    kubeconfig_identities(cfg)
        .into_iter()
        .map(|s| s.valid_for(cfg.leaf_validity))
        .collect()
}

fn kubeconfig_identities(cfg: &PkiConfig) -> Vec<CertSpec> {
    let node = format!("system:node:{}", cfg.node_name);
    vec![
        spec(
            "admin",
            "kubernetes-admin",
            &["system:masters"],
            Usage::Client,
            vec![],
        ),
        spec(
            "controller-manager",
            "system:kube-controller-manager",
            &[],
            Usage::Client,
            vec![],
        ),
        spec(
            "scheduler",
            "system:kube-scheduler",
            &[],
            Usage::Client,
            vec![],
        ),
        spec("kubelet", &node, &["system:nodes"], Usage::Client, vec![]),
        spec(
            "kube-proxy",
            "system:kube-proxy",
            &[],
            Usage::Client,
            vec![],
        ),
        spec(
            "volumes",
            crate::local_volumes::USER,
            &[],
            Usage::Client,
            vec![],
        ),
    ]
}

/// Returns the CA certificate PEM, reusing `<name>.crt` when it belongs to
/// `key` and has more than a third of its life left. Otherwise it is made
/// from `key`: with the life of the one it replaces (same key, same
/// name), or `new_life` when there was none.
fn ensure_ca_cert(
    pki: &mut Pki,
    key: &KeyPair,
    name: &str,
    cn: &str,
    new_life: Duration,
) -> Result<String, PkiError> {
    let file = format!("{name}.crt");
    let mut validity = new_life;
    if let Some(pem) = read_optional(&pki.dir.join(&file))? {
        let found = parse_pem(&pem).and_then(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
            let ours = cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
                && cert.is_ca();
            let v = cert.validity();
            let life = v.not_after.timestamp() - v.not_before.timestamp();
            ours.then(|| (has_time_left(&cert), validity_of_life(life)))
        });
        match found {
            Some((true, _)) => return Ok(pem),
            Some((false, Some(life))) => validity = life,
            _ => {}
        }
    }
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - backdate(validity);
    params.not_after = now + validity;
    params.serial_number = Some(serial(key, name));
    let cert = params.self_signed(key).map_err(|source| PkiError::Issue {
        name: name.to_string(),
        source,
    })?;
    let pem = cert.pem();
    write_file(pki, &file, pem.as_bytes(), 0o644)?;
    Ok(pem)
}

/// How far before its issue a certificate valid for `validity` starts.
fn backdate(validity: Duration) -> Duration {
    BACKDATE.min(validity / 20)
}

/// The validity that, with its [`backdate`], makes a certificate of
/// `life` seconds (notBefore to notAfter); None for no life.
fn validity_of_life(life: i64) -> Option<Duration> {
    let life = Duration::seconds(life);
    if life <= Duration::ZERO {
        return None;
    }
    // Backdated by an hour when that is under a twentieth, else by a
    // twentieth (a twenty-first of the whole life).
    Some(if BACKDATE * 20 <= life - BACKDATE {
        life - BACKDATE
    } else {
        life * 20 / 21
    })
}

fn issue(spec: &CertSpec, key: &KeyPair, ca: &Ca<'_>) -> Result<String, PkiError> {
    issue_valid_for(spec, key, ca, spec.validity)
}

/// [`issue`] with a validity of `validity`.
fn issue_valid_for(
    spec: &CertSpec,
    key: &KeyPair,
    ca: &Ca<'_>,
    validity: Duration,
) -> Result<String, PkiError> {
    let err = |source| PkiError::Issue {
        name: spec.name.clone(),
        source,
    };
    let id = &spec.identity;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for org in &id.organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org.as_str());
    }
    params
        .distinguished_name
        .push(DnType::CommonName, id.common_name.as_str());
    for san in &id.sans {
        params.subject_alt_names.push(match san {
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Dns(name) => SanType::DnsName(name.clone().try_into().map_err(err)?),
        });
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    if id.server_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if id.client_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - backdate(validity);
    params.not_after = now + validity;
    params.serial_number = Some(serial(key, &spec.name));
    Ok(params.signed_by(key, &ca.issuer).map_err(err)?.pem())
}

/// A serial unique per issuance: rcgen's default derives it from the public
/// key alone, which would repeat when a certificate is reissued for a kept key.
fn serial(key: &KeyPair, name: &str) -> SerialNumber {
    let mut hash = Sha256::new();
    hash.update(key.public_key_raw());
    hash.update(name.as_bytes());
    hash.update(
        OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .to_be_bytes(),
    );
    hash.update(std::process::id().to_be_bytes());
    let mut bytes = hash.finalize()[..16].to_vec();
    // Positive and without a leading zero byte, as RFC 5280 asks.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Whether the certificate `pem` can stay: same identity, issued by the
/// current CA, for `key`, and not about to expire.
fn cert_is_current(pem: &str, wanted: &Identity, ca_ski: &[u8], key: &KeyPair) -> bool {
    let Some(der) = parse_pem(pem) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
        && has_time_left(&cert)
        && authority_key_id(&cert).as_deref() == Some(ca_ski)
        && identity_of(&cert).as_ref() == Some(wanted)
}

/// True while more than a third of the certificate's life is left: a leaf
/// is reissued at two thirds of its life at the latest.
fn has_time_left(cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    let validity = cert.validity();
    let life = validity.not_after.timestamp() - validity.not_before.timestamp();
    let left = validity.not_after.timestamp() - OffsetDateTime::now_utc().unix_timestamp();
    left > life / 3
}

fn identity_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<Identity> {
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let organizations = subject
        .iter_organization()
        .map(|o| o.as_str().map(str::to_string))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let mut sans = BTreeSet::new();
    if let Some(ext) = cert.subject_alternative_name().ok()? {
        for name in &ext.value.general_names {
            sans.insert(match name {
                GeneralName::DNSName(dns) => San::Dns(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(&[a, b, c, d]) => San::Ip(IpAddr::from([a, b, c, d])),
                GeneralName::IPAddress(bytes) => {
                    San::Ip(IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?))
                }
                _ => return None,
            });
        }
    }
    let (server_auth, client_auth) = match cert.extended_key_usage().ok()? {
        Some(eku) => (eku.value.server_auth, eku.value.client_auth),
        None => (false, false),
    };
    Some(Identity {
        common_name,
        organizations,
        sans,
        server_auth,
        client_auth,
    })
}

fn authority_key_id(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}

fn subject_key_id(pem: &str) -> Option<Vec<u8>> {
    let der = parse_pem(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

/// The DER of the first PEM block in `text`.
fn parse_pem(text: &str) -> Option<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes()).ok()?;
    Some(pem.contents)
}

/// The kubeconfig for `user`: the CA and client credentials embedded, so it
/// works from any directory; TLS is always verified.
fn render_kubeconfig(
    user: &str,
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key: &KeyPair,
) -> String {
    // JSON strings are valid YAML scalars: quotes whatever the URL holds.
    let server = serde_json::Value::from(server).to_string();
    let ca = BASE64.encode(ca_pem);
    let cert = BASE64.encode(cert_pem);
    let key = BASE64.encode(key.serialize_pem());
    let context = format!("{user}@{KUBECONFIG_CLUSTER}");
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {KUBECONFIG_CLUSTER}
  cluster:
    certificate-authority-data: {ca}
    server: {server}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {context}
  context:
    cluster: {KUBECONFIG_CLUSTER}
    user: {user}
current-context: {context}
preferences: {{}}
"
    )
}

/// The value of the first `NAME: value` line of a kubeconfig written by
/// [`render_kubeconfig`].
fn kubeconfig_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.trim_start().strip_prefix(name)?.strip_prefix(": "))
        .map(str::trim)
}

/// The base64 field `name` (`client-certificate-data`, `client-key-data`,
/// `certificate-authority-data`) of a kubeconfig written by
/// [`render_kubeconfig`], decoded (PEM).
pub fn kubeconfig_data(text: &str, name: &str) -> Option<String> {
    let data = BASE64.decode(kubeconfig_field(text, name)?).ok()?;
    String::from_utf8(data).ok()
}

/// Whether a kubeconfig written by [`render_kubeconfig`] still fits: same
/// server and CA, and a current client certificate for its embedded key.
fn kubeconfig_is_current(text: &str, spec: &CertSpec, ca: &Ca<'_>, server: &str) -> bool {
    let decode = |name: &str| kubeconfig_data(text, name);
    let server_ok = kubeconfig_field(text, "server")
        .and_then(|s| serde_json::from_str::<String>(s).ok())
        .is_some_and(|s| s == server);
    let ca_ok = decode("certificate-authority-data").as_deref() == Some(ca.pem.as_str());
    let key = decode("client-key-data").and_then(|pem| KeyPair::from_pem(&pem).ok());
    let cert = decode("client-certificate-data");
    match (server_ok && ca_ok, key, cert) {
        (true, Some(key), Some(cert)) => cert_is_current(&cert, &spec.identity, &ca.ski, &key),
        _ => false,
    }
}

fn load_or_generate_key(pki: &mut Pki, file: &str) -> Result<KeyPair, PkiError> {
    let path = pki.dir.join(file);
    if let Some(pem) = read_optional(&path)? {
        // Tighten a key that was left readable; its content stays.
        set_mode(&path, 0o600)?;
        return KeyPair::from_pem(&pem).map_err(|e| PkiError::BadKey {
            path,
            reason: e.to_string(),
        });
    }
    let key = KeyPair::generate().map_err(|source| PkiError::Issue {
        name: file.to_string(),
        source,
    })?;
    write_file(pki, file, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(key)
}

fn ensure_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        action: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    set_mode(dir, 0o700)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PkiError> {
    let current = fs::metadata(path).map_err(|source| PkiError::Io {
        action: "stat",
        path: path.to_path_buf(),
        source,
    })?;
    if current.permissions().mode() & 0o7777 == mode {
        return Ok(());
    }
    fs::set_permissions(path, Permissions::from_mode(mode)).map_err(|source| PkiError::Io {
        action: "set permissions of",
        path: path.to_path_buf(),
        source,
    })
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `file` (relative to the PKI dir) crash-safely: a temporary file in
/// the same directory gets its final mode before any content, is synced and
/// renamed over the target, so a key is never readable by others, not even
/// for a moment, and a crash leaves the old file or the new one.
fn write_file(pki: &mut Pki, file: &str, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let path = pki.dir.join(file);
    let io_err = |action, source| PkiError::Io {
        action,
        path: path.clone(),
        source,
    };
    // The temporary file is created 0600 and set to `mode` before the key
    // is written, so a key is never readable by others, not even for a moment.
    crate::durable::write_durably(&path, contents, mode).map_err(|e| io_err("write", e))?;
    pki.written.push(file.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    fn config() -> PkiConfig {
        PkiConfig {
            node_name: "node-1".to_string(),
            node_ips: vec!["10.0.0.5".parse().unwrap()],
            hostnames: vec!["machine.example.com".to_string()],
            service_cidr: "10.100.0.0/16".to_string(),
            cluster_domain: "cluster.local".to_string(),
            api_server: "https://10.0.0.5:6443".to_string(),
            leaf_validity: DEFAULT_LEAF_VALIDITY,
            ca_validity: DEFAULT_CA_VALIDITY,
        }
    }

    /// Runs a real tool; returns whether it succeeded and its combined output.
    fn run(program: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("failed to run {program}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn path_str(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    /// Asserts that openssl verifies `cert` against the CA certificate `ca`.
    fn verifies(ca: &Path, cert: &Path) {
        let (ok, out) = run(
            "openssl",
            &["verify", "-CAfile", path_str(ca), path_str(cert)],
        );
        assert!(ok, "{out}");
    }

    /// The contents of `files` in `dir`.
    fn contents(dir: &Path, files: &[&str]) -> Vec<Vec<u8>> {
        files
            .iter()
            .map(|f| fs::read(dir.join(f)).unwrap())
            .collect()
    }

    /// Every file under `dir` with its bytes.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .map(Result::unwrap)
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().to_path_buf(), fs::read(e.path()).unwrap()))
            .collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_service_certificate_verifies_names_its_service_and_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let pki = ensure(&dir, &config()).unwrap();
        let sans = vec![
            "influxdb.monitoring.svc".to_string(),
            "10.100.3.4".to_string(),
        ];
        let (cert, key, issued) =
            ensure_service_cert(&dir, "influxdb", &sans, DEFAULT_LEAF_VALIDITY, false).unwrap();
        assert!(issued);
        let (ok, out) = run(
            "openssl",
            &[
                "verify",
                "-CAfile",
                path_str(&pki.ca_cert()),
                path_str(&cert),
            ],
        );
        assert!(ok && out.contains(": OK"), "{out}");
        let (_, text) = run(
            "openssl",
            &["x509", "-noout", "-text", "-in", path_str(&cert)],
        );
        assert!(
            text.contains("DNS:influxdb.monitoring.svc") && text.contains("IP Address:10.100.3.4"),
            "{text}"
        );
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert_eq!(mode(&key), 0o600);
        let before = snapshot(&dir);
        let (_, _, issued) =
            ensure_service_cert(&dir, "influxdb", &sans, DEFAULT_LEAF_VALIDITY, false).unwrap();
        assert!(!issued);
        assert_eq!(
            before,
            snapshot(&dir),
            "an unchanged service certificate is kept"
        );
    }

    #[test]
    fn first_service_ip_is_network_plus_one() {
        let ip = |c: &str| first_service_ip(c).map(|ip| ip.to_string()).ok();
        assert_eq!(ip("10.100.0.0/16").as_deref(), Some("10.100.0.1"));
        assert_eq!(ip("10.100.7.9/16").as_deref(), Some("10.100.0.1"));
        assert_eq!(ip("172.16.0.0/12").as_deref(), Some("172.16.0.1"));
        assert_eq!(ip("0.0.0.0/0").as_deref(), Some("0.0.0.1"));
        assert_eq!(ip("fd00:10:96::/112").as_deref(), Some("fd00:10:96::1"));
        for bad in [
            "10.100.0.0",
            "10.100.0.0/33",
            "10.0.0.0/31",
            "x/16",
            "10.0.0.0/a",
        ] {
            assert!(first_service_ip(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn every_leaf_verifies_against_the_ca_with_the_right_names_and_usages() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure(&tmp.path().join("pki"), &config()).unwrap();
        let ca = pki.ca_cert();
        let (ok, out) = run(
            "openssl",
            &["x509", "-noout", "-text", "-in", path_str(&ca)],
        );
        assert!(ok, "{out}");
        assert!(out.contains("Subject: CN = tele-cluster-ca"), "{out}");
        assert!(out.contains("CA:TRUE"), "{out}");
        let etcd_ca = pki.etcd_ca_cert();
        let (ok, out) = run(
            "openssl",
            &["x509", "-noout", "-subject", "-in", path_str(&etcd_ca)],
        );
        assert!(ok && out.contains("CN = tele-etcd-ca"), "{out}");
        // Each leaf verifies against its own CA and not against the other.
        for name in LEAF_CERTS {
            let cert = pki.cert(name);
            let (own, other) = if ETCD_LEAF_CERTS.contains(name) {
                (&etcd_ca, &ca)
            } else {
                (&ca, &etcd_ca)
            };
            let (ok, out) = run(
                "openssl",
                &["verify", "-CAfile", path_str(own), path_str(&cert)],
            );
            assert!(ok && out.contains(": OK"), "{name}: {out}");
            let (ok, out) = run(
                "openssl",
                &["verify", "-CAfile", path_str(other), path_str(&cert)],
            );
            assert!(!ok, "{name} verifies against the other CA: {out}");
        }
        let text = |name: &str| {
            let (ok, out) = run(
                "openssl",
                &["x509", "-noout", "-text", "-in", path_str(&pki.cert(name))],
            );
            assert!(ok, "{out}");
            out
        };
        const SERVER: &str = "TLS Web Server Authentication";
        const CLIENT: &str = "TLS Web Client Authentication";

        let etcd = text("etcd-server");
        for san in [
            "IP Address:10.0.0.5",
            "IP Address:127.0.0.1",
            "DNS:localhost",
            "DNS:node-1",
            SERVER,
            CLIENT,
        ] {
            assert!(etcd.contains(san), "etcd-server lacks {san}: {etcd}");
        }

        let apiserver = text("apiserver");
        for san in [
            "IP Address:10.0.0.5",
            "IP Address:10.100.0.1",
            "IP Address:127.0.0.1",
            "DNS:localhost",
            "DNS:machine.example.com",
            "DNS:node-1",
            "DNS:kubernetes,",
            "DNS:kubernetes.default,",
            "DNS:kubernetes.default.svc,",
            "DNS:kubernetes.default.svc.cluster.local",
            SERVER,
        ] {
            assert!(
                apiserver.contains(san),
                "apiserver lacks {san}: {apiserver}"
            );
        }
        assert!(!apiserver.contains(CLIENT), "{apiserver}");

        let kubelet = text("kubelet-server");
        for san in [
            "IP Address:10.0.0.5",
            "DNS:node-1",
            "DNS:machine.example.com",
        ] {
            assert!(
                kubelet.contains(san),
                "kubelet-server lacks {san}: {kubelet}"
            );
        }
        let registry = text("registry");
        for san in [
            "IP Address:10.0.0.5",
            "IP Address:127.0.0.1",
            "DNS:localhost",
        ] {
            assert!(registry.contains(san), "registry lacks {san}: {registry}");
        }

        for (name, subject) in [
            ("apiserver-etcd-client", "CN = kube-apiserver-etcd-client"),
            (
                "apiserver-kubelet-client",
                "O = system:masters, CN = kube-apiserver-kubelet-client",
            ),
        ] {
            let out = text(name);
            assert!(out.contains(&format!("Subject: {subject}")), "{out}");
            assert!(out.contains(CLIENT) && !out.contains(SERVER), "{out}");
            assert!(!out.contains("Subject Alternative Name"), "{out}");
        }
        // Leaves are ECDSA P-256 and valid for a year.
        assert!(etcd.contains("prime256v1"), "{etcd}");
    }

    #[test]
    fn files_have_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let pki = ensure(&dir, &config()).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("kubeconfig")), 0o700);
        assert_eq!(mode(&pki.ca_cert()), 0o644);
        assert_eq!(mode(&pki.key("ca")), 0o600);
        for name in LEAF_CERTS {
            assert_eq!(mode(&pki.cert(name)), 0o644, "{name}");
            assert_eq!(mode(&pki.key(name)), 0o600, "{name}");
        }
        assert_eq!(mode(&pki.sa_key()), 0o600);
        assert_eq!(mode(&pki.sa_pub()), 0o644);
        for name in KUBECONFIGS {
            assert_eq!(mode(&pki.kubeconfig(name)), 0o600, "{name}");
        }
        // No temporary files are left behind.
        for file in snapshot(&dir).keys() {
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(!name.starts_with(".tmp-"), "{}", file.display());
        }
        // A key left readable by others is tightened on the next run.
        fs::set_permissions(pki.key("registry"), Permissions::from_mode(0o644)).unwrap();
        ensure(&dir, &config()).unwrap();
        assert_eq!(mode(&pki.key("registry")), 0o600);
    }

    #[test]
    fn leaves_are_reissued_at_two_thirds_of_their_life_and_the_ca_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let mut cfg = config();
        cfg.leaf_validity = Duration::seconds(6);
        ensure(&dir, &cfg).unwrap();
        let first = expiries(&dir);
        let apiserver = first.iter().find(|e| e.file == "apiserver.crt").unwrap();
        // Backdated by a twentieth of the validity (0.3 s), not by an hour;
        // the times are whole seconds, so the life shows as 6 or 7.
        assert!((6..=7).contains(&(apiserver.not_after - apiserver.not_before)));
        assert!(first.iter().any(|e| e.file == "kubeconfig/admin.conf"));
        assert!(first.iter().any(|e| e.file == "ca.crt"));

        // With more than a third of their life left, nothing is reissued.
        assert_eq!(ensure(&dir, &cfg).unwrap().written, Vec::<String>::new());
        // Past two thirds of it, every leaf and kubeconfig is, and the CAs,
        // the keys of the leaves and the service-account keys are kept.
        std::thread::sleep(std::time::Duration::from_millis(4200));
        let keys = contents(&dir, &["ca.key", "apiserver.key", "sa.key", "ca.crt"]);
        let renewed = ensure(&dir, &cfg).unwrap().written;
        let mut expected: Vec<String> = LEAF_CERTS.iter().map(|n| format!("{n}.crt")).collect();
        expected.extend(KUBECONFIGS.iter().map(|n| format!("kubeconfig/{n}.conf")));
        let mut got = renewed.clone();
        got.sort();
        expected.sort();
        assert_eq!(got, expected);
        let kept = contents(&dir, &["ca.key", "apiserver.key", "sa.key", "ca.crt"]);
        assert_eq!(keys, kept);
        let later = expiries(&dir);
        let renewed_api = later.iter().find(|e| e.file == "apiserver.crt").unwrap();
        assert!(renewed_api.not_after > apiserver.not_after);
        verifies(&dir.join("ca.crt"), &dir.join("apiserver.crt"));
    }

    #[test]
    fn cas_are_remade_from_their_keys_at_two_thirds_of_their_life_with_the_same_life() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let mut cfg = config();
        cfg.ca_validity = Duration::seconds(9);
        ensure(&dir, &cfg).unwrap();
        let ca = |file: &str| expiries(&dir).into_iter().find(|e| e.file == file).unwrap();
        let (first, first_etcd) = (ca("ca.crt"), ca("etcd-ca.crt"));
        assert!((9..=10).contains(&(first.not_after - first.not_before)));
        let old_ca = fs::read(dir.join("ca.crt")).unwrap();
        let keys = contents(&dir, &["ca.key", "etcd-ca.key", "apiserver.key"]);
        let apiserver = fs::read(dir.join("apiserver.crt")).unwrap();
        assert_eq!(ensure(&dir, &cfg).unwrap().written, Vec::<String>::new());
        assert!(!crate::renew::is_due(&dir), "nothing due at first");
        // Past two thirds: both CAs are due and remade, with the life the
        // first ones had (not the configuration's), from the same keys.
        std::thread::sleep(std::time::Duration::from_millis(6600));
        assert!(crate::renew::is_due(&dir), "a CA at two thirds is due");
        cfg.ca_validity = DEFAULT_CA_VALIDITY;
        let written = ensure(&dir, &cfg).unwrap().written;
        assert!(written.contains(&"ca.crt".to_string()), "{written:?}");
        assert!(written.contains(&"etcd-ca.crt".to_string()), "{written:?}");
        // Kubeconfigs embed the CA certificate, so they are written anew;
        // a leaf certificate with its life left is kept.
        assert!(written.contains(&"kubeconfig/admin.conf".to_string()));
        assert_eq!(fs::read(dir.join("apiserver.crt")).unwrap(), apiserver);
        let kept = contents(&dir, &["ca.key", "etcd-ca.key", "apiserver.key"]);
        assert_eq!(keys, kept);
        let (second, second_etcd) = (ca("ca.crt"), ca("etcd-ca.crt"));
        assert!(second.not_after > first.not_after);
        assert!(second_etcd.not_after > first_etcd.not_after);
        assert!((9..=10).contains(&(second.not_after - second.not_before)));
        // What the old CA certificate signed verifies against the new one,
        // and the old one (same key and name) is still good for what the
        // new one signs.
        verifies(&dir.join("ca.crt"), &dir.join("apiserver.crt"));
        fs::write(tmp.path().join("old-ca.crt"), &old_ca).unwrap();
        let admin = fs::read_to_string(dir.join("kubeconfig/admin.conf")).unwrap();
        fs::write(
            tmp.path().join("admin.crt"),
            kubeconfig_data(&admin, "client-certificate-data").unwrap(),
        )
        .unwrap();
        verifies(
            &tmp.path().join("old-ca.crt"),
            &tmp.path().join("admin.crt"),
        );
        assert!(!crate::renew::is_due(&dir), "nothing due once remade");
    }

    #[test]
    fn a_second_run_changes_nothing_and_a_new_node_ip_reissues_only_the_certs_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let first = ensure(&dir, &config()).unwrap();
        assert!(first.written.contains(&"ca.crt".to_string()));
        let before = snapshot(&dir);

        let again = ensure(&dir, &config()).unwrap();
        assert_eq!(again.written, Vec::<String>::new());
        assert_eq!(snapshot(&dir), before);

        let mut moved = config();
        moved.node_ips = vec!["10.0.0.6".parse().unwrap()];
        let pki = ensure(&dir, &moved).unwrap();
        let expected = [
            "etcd-server.crt",
            "apiserver.crt",
            "kubelet-server.crt",
            "registry.crt",
        ];
        assert_eq!(pki.written, expected);
        let after = snapshot(&dir);
        for (path, bytes) in &before {
            let file = path.strip_prefix(&dir).unwrap().to_str().unwrap();
            let same = after[path] == *bytes;
            assert_eq!(same, !expected.contains(&file), "{file}");
        }
        let (ok, out) = run(
            "openssl",
            &[
                "x509",
                "-noout",
                "-text",
                "-in",
                path_str(&pki.cert("apiserver")),
            ],
        );
        assert!(ok && out.contains("IP Address:10.0.0.6"), "{out}");
        assert!(!out.contains("IP Address:10.0.0.5"), "{out}");
        let (ok, out) = run(
            "openssl",
            &[
                "verify",
                "-CAfile",
                path_str(&pki.ca_cert()),
                path_str(&pki.cert("apiserver")),
            ],
        );
        assert!(ok, "{out}");

        // A new API server URL rewrites only the kubeconfigs.
        moved.api_server = "https://10.0.0.6:6443".to_string();
        let pki = ensure(&dir, &moved).unwrap();
        let kubeconfigs: Vec<String> = KUBECONFIGS
            .iter()
            .map(|k| format!("kubeconfig/{k}.conf"))
            .collect();
        assert_eq!(pki.written, kubeconfigs);
    }

    #[test]
    fn a_lost_ca_certificate_is_remade_from_its_key_and_leaves_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let pki = ensure(&dir, &config()).unwrap();
        fs::remove_file(pki.ca_cert()).unwrap();
        let again = ensure(&dir, &config()).unwrap();
        // Same key, same subject: what it signed still verifies and is kept;
        // only the kubeconfigs, which embed the CA certificate, are rewritten.
        let mut expected = vec!["ca.crt".to_string()];
        expected.extend(KUBECONFIGS.iter().map(|k| format!("kubeconfig/{k}.conf")));
        assert_eq!(again.written, expected);
        let (ok, out) = run(
            "openssl",
            &[
                "verify",
                "-CAfile",
                path_str(&pki.ca_cert()),
                path_str(&pki.cert("apiserver")),
            ],
        );
        assert!(ok, "{out}");
    }

    #[test]
    fn a_new_ca_key_reissues_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let pki = ensure(&dir, &config()).unwrap();
        fs::remove_file(pki.key("ca")).unwrap();
        let again = ensure(&dir, &config()).unwrap();
        for name in LEAF_CERTS {
            // etcd's CA and what it signed are not the cluster CA's.
            let reissued = again.written.contains(&format!("{name}.crt"));
            assert_eq!(reissued, !ETCD_LEAF_CERTS.contains(name), "{name}");
        }
        for name in KUBECONFIGS {
            assert!(again.written.contains(&format!("kubeconfig/{name}.conf")));
        }
        assert!(!again.written.contains(&"sa.key".to_string()));
    }

    #[test]
    fn a_corrupt_key_is_an_error_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let pki = ensure(&dir, &config()).unwrap();
        fs::write(pki.key("ca"), "garbage").unwrap();
        let err = ensure(&dir, &config()).unwrap_err();
        assert!(matches!(err, PkiError::BadKey { .. }), "{err}");
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert_eq!(fs::read_to_string(pki.key("ca")).unwrap(), "garbage");
    }

    #[test]
    fn kubeconfigs_parse_embed_credentials_and_never_skip_verification() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure(&tmp.path().join("pki"), &config()).unwrap();
        let ca_pem = fs::read_to_string(pki.ca_cert()).unwrap();
        for (name, subject) in [
            ("admin", "subject=O = system:masters, CN = kubernetes-admin"),
            (
                "controller-manager",
                "subject=CN = system:kube-controller-manager",
            ),
            ("scheduler", "subject=CN = system:kube-scheduler"),
            (
                "kubelet",
                "subject=O = system:nodes, CN = system:node:node-1",
            ),
            ("kube-proxy", "subject=CN = system:kube-proxy"),
        ] {
            let file = pki.kubeconfig(name);
            let text = fs::read_to_string(&file).unwrap();
            assert!(!text.contains("insecure"), "{text}");
            let (ok, out) = run(
                "kubectl",
                &[
                    "config",
                    "view",
                    "--raw",
                    "-o",
                    "json",
                    "--kubeconfig",
                    path_str(&file),
                ],
            );
            assert!(ok, "{name}: {out}");
            let view: serde_json::Value = serde_json::from_str(&out).unwrap();
            let cluster = &view["clusters"][0]["cluster"];
            assert_eq!(cluster["server"], "https://10.0.0.5:6443");
            assert!(cluster.get("insecure-skip-tls-verify").is_none(), "{out}");
            let ca_data = cluster["certificate-authority-data"].as_str().unwrap();
            assert_eq!(BASE64.decode(ca_data).unwrap(), ca_pem.as_bytes());
            assert_eq!(view["current-context"], format!("{name}@tele"));

            let user = &view["users"][0]["user"];
            let cert = BASE64
                .decode(user["client-certificate-data"].as_str().unwrap())
                .unwrap();
            let key = BASE64
                .decode(user["client-key-data"].as_str().unwrap())
                .unwrap();
            let cert_file = tmp.path().join(format!("{name}.crt"));
            fs::write(&cert_file, &cert).unwrap();
            let (ok, out) = run(
                "openssl",
                &[
                    "verify",
                    "-CAfile",
                    path_str(&pki.ca_cert()),
                    path_str(&cert_file),
                ],
            );
            assert!(ok, "{name}: {out}");
            let (ok, out) = run(
                "openssl",
                &["x509", "-noout", "-subject", "-in", path_str(&cert_file)],
            );
            assert!(ok && out.trim() == subject, "{name}: {out}");
            // The embedded key belongs to the embedded certificate.
            let key = KeyPair::from_pem(std::str::from_utf8(&key).unwrap()).unwrap();
            let der = parse_pem(std::str::from_utf8(&cert).unwrap()).unwrap();
            let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
            assert_eq!(
                parsed.public_key().subject_public_key.data.as_ref(),
                key.public_key_raw()
            );
        }
    }

    #[test]
    fn service_account_keys_are_a_matching_pem_pair() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure(&tmp.path().join("pki"), &config()).unwrap();
        let (ok, derived) = run(
            "openssl",
            &["pkey", "-in", path_str(&pki.sa_key()), "-pubout"],
        );
        assert!(ok, "{derived}");
        assert_eq!(derived, fs::read_to_string(pki.sa_pub()).unwrap());
        assert!(derived.starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Kills etcd when the test ends, passed or not.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn real_etcd_serves_with_these_certificates_and_demands_a_client_certificate() {
        assert!(
            Path::new("/usr/bin/etcd").exists(),
            "this test needs a real etcd: apt-get install -y etcd-server"
        );
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure(&tmp.path().join("pki"), &config()).unwrap();
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("https://127.0.0.1:{peer}");
        let cert = pki.cert("etcd-server");
        let key = pki.key("etcd-server");
        let ca = pki.etcd_ca_cert();
        let log = fs::File::create(tmp.path().join("etcd.log")).unwrap();
        let etcd = Command::new("/usr/bin/etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(tmp.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .args(["--cert-file", path_str(&cert), "--key-file", path_str(&key)])
            .args(["--trusted-ca-file", path_str(&ca), "--client-cert-auth"])
            .args(["--peer-cert-file", path_str(&cert)])
            .args(["--peer-key-file", path_str(&key)])
            .args(["--peer-trusted-ca-file", path_str(&ca)])
            .arg("--peer-client-cert-auth")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let _etcd = KillOnDrop(etcd);

        let etcdctl_args = |client_cert: Option<&str>, args: &[&str]| {
            let mut cmd = Command::new("etcdctl");
            cmd.env("ETCDCTL_API", "3")
                .args(["--endpoints", &client_url, "--cacert", path_str(&ca)])
                .args(["--dial-timeout", "2s", "--command-timeout", "3s"]);
            if let Some(name) = client_cert {
                let cert = pki.cert(name);
                let key = pki.key(name);
                cmd.args(["--cert", path_str(&cert), "--key", path_str(&key)]);
            }
            let out = cmd.args(args).output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        };
        let etcdctl =
            |client_cert: Option<&str>| etcdctl_args(client_cert, &["endpoint", "health"]);
        let start = Instant::now();
        let mut last = String::new();
        loop {
            let (ok, out) = etcdctl(Some("apiserver-etcd-client"));
            if ok {
                assert!(out.contains("is healthy"), "{out}");
                break;
            }
            last = out;
            if start.elapsed() > std::time::Duration::from_secs(30) {
                let log = fs::read_to_string(tmp.path().join("etcd.log")).unwrap();
                panic!("etcd never became healthy: {last}\netcd log:\n{log}");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let _ = last;
        let (ok, out) = etcdctl(Some("etcd-healthcheck-client"));
        assert!(ok, "the health checker's certificate: {out}");
        let (ok, out) = etcdctl(None);
        assert!(!ok, "etcd accepted a client without a certificate: {out}");
        // A client certificate of the cluster CA, however privileged in the
        // cluster, is not one of etcd's.
        let (ok, out) = etcdctl(Some("apiserver-kubelet-client"));
        assert!(!ok, "etcd accepted a cluster-CA certificate: {out}");

        // With access control on (twice: it is idempotent), the API
        // servers' certificate reads and writes; the health checker's
        // reaches the health endpoint and no key.
        let ctl = crate::etcd::Etcdctl::with_files(
            "etcdctl".into(),
            vec![client_url.clone()],
            ca.clone(),
            pki.cert("apiserver-etcd-client"),
            pki.key("apiserver-etcd-client"),
        );
        ctl.enable_auth().unwrap();
        ctl.enable_auth().unwrap();
        let api = Some("apiserver-etcd-client");
        let (ok, out) = etcdctl_args(api, &["put", "/registry/secrets/x", "v"]);
        assert!(ok, "{out}");
        let (ok, out) = etcdctl_args(api, &["get", "/registry/secrets/x", "--print-value-only"]);
        assert!(ok && out.trim() == "v", "{out}");
        // It has no user in etcd: whatever it asks is refused.
        let refused = |ok: bool, out: &str| {
            !ok && (out.contains("user name not found") || out.contains("permission denied"))
        };
        let checker = Some("etcd-healthcheck-client");
        let (ok, out) = etcdctl(checker);
        assert!(ok, "the health checker lost /health: {out}");
        let (ok, out) = etcdctl_args(checker, &["get", "/registry/secrets/x"]);
        assert!(refused(ok, &out), "{out}");
        let (ok, out) = etcdctl_args(checker, &["put", "/registry/secrets/x", "w"]);
        assert!(refused(ok, &out), "{out}");
        let (ok, out) = etcdctl_args(checker, &["user", "add", "x", "--no-password"]);
        assert!(refused(ok, &out), "{out}");
        let (ok, out) = etcdctl_args(api, &["get", "/registry/secrets/x", "--print-value-only"]);
        assert!(ok && out.trim() == "v", "{out}");
    }
}
