//! The kubelet's client certificate. The kubelet rotates it itself
//! (`rotateCertificates`): between 70 and 90 % of its life it sends a
//! certificate signing request, which the controller manager approves (the
//! nodes may ask for their own client certificates: [`AUTO_APPROVE`]) and
//! signs with the cluster CA, and it keeps the result in its certificate
//! directory, `kubelet-client-current.pem` pointing at the newest.
//!
//! tele seeds that directory before the kubelet first starts with the
//! certificate of the kubelet's kubeconfig (so the kubelet does not ask for
//! one at once, before the approval rule exists), and seeds it again when
//! the kubelet's own rotation has failed: once its current certificate has
//! a twentieth of its life left and the kubeconfig's, which tele renews at
//! two thirds of its life, lasts longer. The kubelet is then restarted on
//! it by the renewal ([`crate::renew`]), as the seed is one of its
//! credentials.

use std::path::{Path, PathBuf};

use crate::pki::{Expiry, Pki};

/// The seed's file name in the kubelet's certificate directory (the
/// kubelet names its own `kubelet-client-<date>.pem`).
const SEED: &str = "kubelet-client-tele.pem";

/// The name of [`AUTO_APPROVE`].
pub const AUTO_APPROVE_NAME: &str = "tele:kubelet-client-rotation";

/// The ClusterRoleBinding that lets the controller manager approve a
/// node's request for its own client certificate (the role is one of
/// Kubernetes' defaults).
pub const AUTO_APPROVE: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: tele:kubelet-client-rotation
  labels: {app.kubernetes.io/managed-by: tele}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:certificates.k8s.io:certificatesigningrequests:selfnodeclient
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: system:nodes
";

/// The seed file, one of the kubelet's credentials: it changes only when
/// tele seeds the kubelet anew.
pub fn seed_file(pki: &Pki) -> PathBuf {
    pki.kubelet_cert_dir().join(SEED)
}

/// True when the kubelet's current client certificate has a twentieth of
/// its life or less left at `now` (its own rotation is due by 90 %).
pub fn is_due(e: &Expiry, now: i64) -> bool {
    e.seconds_left(now) <= (e.not_after - e.not_before) / 20
}

/// Seeds the kubelet's certificate directory from its kubeconfig when it
/// has no current certificate, when that one [`is_due`] and the
/// kubeconfig's lasts longer, or when `force`d (after the kubeconfig was
/// reissued, perhaps with a shorter validity). Returns true when it seeded. Atomic: the seed is written
/// durably (0600), then the `current` link is replaced in one rename.
pub fn seed(pki: &Pki, now: i64, force: bool) -> anyhow::Result<bool> {
    let kubeconfig = pki.kubeconfig("kubelet");
    let text = std::fs::read_to_string(&kubeconfig)?;
    let field = |name: &str| {
        crate::pki::kubeconfig_data(&text, name)
            .ok_or_else(|| anyhow::anyhow!("{} holds no {name}", kubeconfig.display()))
    };
    let cert = field("client-certificate-data")?;
    let key = field("client-key-data")?;
    let dir = pki.kubelet_cert_dir();
    let current_path = pki.kubelet_client_current();
    let current = std::fs::read_to_string(&current_path)
        .ok()
        .and_then(|pem| crate::pki::pem_expiry(String::new(), &pem));
    let offered = crate::pki::pem_expiry(String::new(), &cert).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: a client certificate that does not parse",
            kubeconfig.display()
        )
    })?;
    let wanted = match &current {
        None => true,
        Some(_) if force => true,
        Some(c) => is_due(c, now) && offered.not_after > c.not_after,
    };
    if !wanted {
        return Ok(false);
    }
    std::fs::create_dir_all(&dir)?;
    crate::durable::set_mode(&dir, 0o700)?;
    crate::durable::write_durably(&dir.join(SEED), format!("{cert}\n{key}").as_bytes(), 0o600)?;
    point_current_at_seed(&dir, &current_path)?;
    Ok(true)
}

/// Replaces the `current` link with one to the seed (a new link under a
/// temporary name, renamed over it, the directory synced).
fn point_current_at_seed(dir: &Path, current: &Path) -> anyhow::Result<()> {
    if std::fs::read_link(current).is_ok_and(|t| t == Path::new(SEED)) {
        return Ok(());
    }
    let tmp = dir.join(".kubelet-client-current.tele-tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(SEED, &tmp)?;
    std::fs::rename(&tmp, current)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secs: i64) -> crate::pki::PkiConfig {
        crate::pki::PkiConfig {
            node_name: "n1".into(),
            node_ips: vec!["10.0.0.9".parse().unwrap()],
            hostnames: vec![],
            service_cidr: "10.100.0.0/16".into(),
            cluster_domain: "cluster.local".into(),
            api_server: "https://127.0.0.1:6445".into(),
            leaf_validity: time::Duration::seconds(secs),
            ca_validity: crate::pki::DEFAULT_CA_VALIDITY,
        }
    }

    fn current(pki: &Pki) -> Expiry {
        let pem = std::fs::read_to_string(pki.kubelet_client_current()).unwrap();
        crate::pki::pem_expiry(String::new(), &pem).unwrap()
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn the_approval_rule_has_its_name() {
        assert!(AUTO_APPROVE.contains(&format!("name: {AUTO_APPROVE_NAME}\n")));
    }

    #[test]
    fn seeded_once_then_left_to_the_kubelet_until_its_rotation_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = crate::pki::ensure(tmp.path(), &config(3600)).unwrap();
        assert!(seed(&pki, now(), false).unwrap(), "no store: seeded");
        let seeded = current(&pki);
        let link = std::fs::read_link(pki.kubelet_client_current()).unwrap();
        assert_eq!(link, Path::new(SEED));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(seed_file(&pki)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // Both the certificate and its key, as the kubelet's store wants.
        let pem = std::fs::read_to_string(seed_file(&pki)).unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"));

        // Not due: left alone, even once the kubeconfig is renewed.
        assert!(!seed(&pki, now(), false).unwrap());
        crate::pki::reissue(tmp.path(), &config(7200)).unwrap();
        assert!(!seed(&pki, now(), false).unwrap());
        assert_eq!(current(&pki), seeded);

        // The kubelet never rotated: at 19/20 of its life it is seeded
        // with the renewed kubeconfig's certificate.
        let late = seeded.not_before + (seeded.not_after - seeded.not_before) * 19 / 20 + 1;
        assert!(seed(&pki, late, false).unwrap());
        assert!(current(&pki).not_after > seeded.not_after);
        // Forced (`tele certificates renew`): the kubeconfig's, even one
        // that expires sooner.
        let before = current(&pki);
        crate::pki::reissue(tmp.path(), &config(1800)).unwrap();
        assert!(seed(&pki, now(), true).unwrap());
        assert!(current(&pki).not_after < before.not_after);
        assert_eq!(
            std::fs::read_link(pki.kubelet_client_current()).unwrap(),
            Path::new(SEED)
        );
    }

    #[test]
    fn a_store_the_kubelet_rotated_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = crate::pki::ensure(tmp.path(), &config(3600)).unwrap();
        // The kubelet's own rotation: a dated file and the link moved to it.
        let dir = pki.kubelet_cert_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let text = std::fs::read_to_string(pki.kubeconfig("kubelet")).unwrap();
        let pem = format!(
            "{}\n{}",
            crate::pki::kubeconfig_data(&text, "client-certificate-data").unwrap(),
            crate::pki::kubeconfig_data(&text, "client-key-data").unwrap()
        );
        let dated = "kubelet-client-2026-12-03-10-00-00.pem";
        std::fs::write(dir.join(dated), pem).unwrap();
        std::os::unix::fs::symlink(dated, pki.kubelet_client_current()).unwrap();
        assert!(!seed(&pki, now(), false).unwrap());
        assert!(!seed_file(&pki).exists());
        // Listed with the other expiries.
        assert!(crate::pki::expiries(tmp.path())
            .iter()
            .any(|e| e.file == crate::pki::KUBELET_CLIENT_CURRENT));
    }
}
