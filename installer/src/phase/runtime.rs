//! `/nodes/<node>/runtime`: copies what the node's services run into the
//! state directory (the Kubernetes runtime, the bundle's images, tele
//! itself), so that nothing depends on where the bundle was extracted or on
//! who owns it, and links `tele` and `kubectl` into the admin's PATH.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Phase, PhaseContext};
use crate::durable::{copy_durably, write_durably};
use crate::state_dir::StateDir;

/// Copies the runtime, images and tele for one node.
pub struct NodeRuntime {
    /// The node.
    pub node: String,
    /// The phase it follows: the PKI on a new cluster, the admission on a joining node.
    pub after: String,
}

/// Copies the image layout `from` (a bundle's `images/`) to `to` (the state
/// directory's), file by file, each blob only if its content has the digest
/// it is named by, checked on the bytes written (an image changed in the
/// bundle after it was verified is refused, not served). A blob already there
/// with its digest is kept (a resumed copy checks, rather than trusts, it).
/// `index.json` comes last, so its presence means the copy is whole. With
/// `link`, blobs are hard-linked rather than copied (a bundle fetched into the
/// state directory, already root's: images are not stored twice), and checked.
fn copy_images(from: &Path, to: &Path, link: bool) -> anyhow::Result<()> {
    const LAST: &str = "index.json";
    for entry in walkdir::WalkDir::new(from).sort_by_file_name() {
        let entry = entry?;
        let rel = entry.path().strip_prefix(from)?;
        if rel.as_os_str().is_empty() || rel == Path::new(LAST) {
            continue;
        }
        let dest = to.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            fs::create_dir_all(&dest)?;
        } else if ft.is_file() {
            let blob = rel.parent() == Some(Path::new("blobs/sha256"));
            let Some(want) = blob
                .then(|| rel.file_name().and_then(|n| n.to_str()))
                .flatten()
            else {
                copy_durably(entry.path(), &dest, 0o644)?;
                continue;
            };
            if sha256_of(&dest).as_deref() == Some(want) {
                continue;
            }
            if link && link_file(entry.path(), &dest) {
                if sha256_of(&dest).as_deref() == Some(want) {
                    continue;
                }
                let _ = fs::remove_file(&dest);
            }
            crate::durable::copy_checked(entry.path(), &dest, 0o644, want).map_err(|e| {
                anyhow::anyhow!(
                    "the bundle's image blob {} is not what its name says ({e}): the bundle was altered after it was verified; run `tele verify` on it",
                    rel.display()
                )
            })?;
        }
        // Symlinks are not followed: a bundle's images have none.
    }
    copy_durably(&from.join(LAST), &to.join(LAST), 0o644)?;
    Ok(())
}

/// Puts the runtime of `from` (a bundle's `runtime/`) into `to` (the state
/// directory's), where the node's services run it from: each file of
/// runtime.json unpacked from its `.zst` (or copied, from a bundle that holds
/// it plain) and checked against the sha256 runtime.json gives, so root runs
/// only what the runtime was built with. A file already there with that
/// sha256 is kept (a resumed install checks, rather than trusts, what it will
/// run). The `.zst` files are kept beside (hard-linked when the bundle is in
/// the state directory): a master serves them to joining nodes. runtime.json comes last,
/// so its presence means the runtime is whole.
fn install_runtime(from: &Path, to: &Path, link: bool) -> anyhow::Result<()> {
    let meta = tele_bundle::runtime_json::RuntimeMeta::read(from)?;
    let here = |p: &Path| fs::canonicalize(p).ok();
    let same_dir = here(from).is_some() && here(from) == here(to);
    let files: Vec<(&str, &str, &str)> = meta
        .components
        .iter()
        .filter_map(|c| Some((c.name.as_str(), c.path.as_deref()?, c.sha256.as_deref()?)))
        .collect();
    // The files are unpacked (and hashed) on every core.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((name, rel, want)) = files.get(i) else {
                        return Ok(());
                    };
                    install_file(from, to, link, same_dir, (name, rel, want))?;
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an unpacking thread panicked"))
            .collect::<anyhow::Result<Vec<()>>>()
    })?;
    copy_durably(&from.join("runtime.json"), &to.join("runtime.json"), 0o644)?;
    Ok(())
}

/// One file of the runtime: component `name`, at `rel`, with sha256 `want`.
fn install_file(
    from: &Path,
    to: &Path,
    link: bool,
    same_dir: bool,
    (name, rel, want): (&str, &str, &str),
) -> anyhow::Result<()> {
    use anyhow::Context;
    use tele_bundle::packed::{self, SUFFIX};
    let dest = to.join(rel);
    let packed_src = from.join(format!("{rel}{SUFFIX}"));
    let plain_src = from.join(rel);
    let source = if packed_src.is_file() {
        &packed_src
    } else {
        &plain_src
    };
    let mode = fs::metadata(source)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o755)
        .with_context(|| {
            format!(
                "the bundle's runtime has no {rel} (component `{name}`): the bundle is incomplete; run `tele verify` on it"
            )
        })?;
    if packed_src.is_file() && !same_dir {
        let packed_dest = to.join(format!("{rel}{SUFFIX}"));
        let there = fs::metadata(&packed_dest)
            .is_ok_and(|m| Some(m.len()) == fs::metadata(&packed_src).ok().map(|s| s.len()));
        // Linked only from a bundle in the state directory (fetched by a
        // joining node, root's); the admin's extracted bundle must keep its
        // files unlinked (`tele verify` refuses hard links, as tar makes none).
        if !(there || link && link_file(&packed_src, &packed_dest)) {
            copy_durably(&packed_src, &packed_dest, mode)?;
        }
    }
    if sha256_of(&dest).as_deref() == Some(want) {
        return Ok(());
    }
    if source == &packed_src {
        packed::unpack(&packed_src, &dest, want, mode)
            .with_context(|| format!("unpacking the runtime's {rel}"))?;
    } else {
        copy_durably(&plain_src, &dest, mode)?;
        let got = sha256_of(&dest).unwrap_or_default();
        if got != want {
            let _ = fs::remove_file(&dest);
            anyhow::bail!(
                "the runtime's {rel} has sha256 {got}, runtime.json says {want}: the bundle was altered; run `tele verify` on it"
            );
        }
    }
    Ok(())
}

/// The sha256 (hex) of a file's content, if it can be read.
fn sha256_of(path: &Path) -> Option<String> {
    let f = fs::File::open(path).ok()?;
    let (d, _) =
        tele_bundle::digest::Digest::of_reader(std::io::BufReader::with_capacity(1 << 20, f))
            .ok()?;
    Some(d.hex().to_string())
}

/// Hard-links `from` as `to` (replacing it); false when that cannot be done.
fn link_file(from: &Path, to: &Path) -> bool {
    let _ = fs::remove_file(to);
    fs::hard_link(from, to).is_ok()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::read(a), fs::read(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The links made for the admin, kept so that uninstall removes exactly them.
pub fn links_file(state: &StateDir) -> PathBuf {
    state.root().join("links.json")
}

fn link_tools(ctx: &PhaseContext, bin_dir: &Path) -> anyhow::Result<()> {
    let target = ctx.state.tele();
    let mut made: Vec<PathBuf> = Vec::new();
    fs::create_dir_all(bin_dir)?;
    for name in ["tele", "kubectl"] {
        let link = bin_dir.join(name);
        match fs::read_link(&link) {
            Ok(t) if t == target => made.push(link),
            Ok(_) | Err(_) if link.symlink_metadata().is_ok() => ctx.reporter.note(&format!(
                "note: {} exists and is not tele's; left alone (use {} instead)",
                link.display(),
                target.display()
            )),
            _ => {
                std::os::unix::fs::symlink(&target, &link)?;
                made.push(link);
            }
        }
    }
    write_durably(
        &links_file(ctx.state),
        &serde_json::to_vec_pretty(&made)?,
        0o644,
    )?;
    Ok(())
}

/// Puts what the node's services run into the state directory from the
/// verified bundle, checked: every runtime file against runtime.json's
/// sha256, every image blob against its digest; what is already there and
/// checks out is kept. The phase's first step, and run again on `--resume`.
pub fn recheck(ctx: &PhaseContext) -> anyhow::Result<()> {
    let st = ctx.state;
    let link = ctx.bundle.starts_with(st.root());
    install_runtime(&ctx.bundle.join("runtime"), &st.runtime_dir(), link)?;
    copy_images(&ctx.bundle.join("images"), &st.images_dir(), link)?;
    Ok(())
}

impl Phase for NodeRuntime {
    fn id(&self) -> String {
        format!("/nodes/{}/runtime", self.node)
    }
    fn description(&self) -> String {
        "copy the runtime, the images and tele into the state directory".into()
    }
    fn requires(&self) -> Vec<String> {
        vec![self.after.clone()]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        let st = ctx.state;
        recheck(ctx)?;
        copy_durably(&ctx.bundle.join("app.yaml"), &st.manifest_file(), 0o644)?;
        // What a master serves to nodes that join without the bundle.
        copy_durably(
            &ctx.bundle.join(tele_bundle::bundle_json::BUNDLE_JSON),
            &st.bundle_meta_file(),
            0o644,
        )?;
        let me = std::env::current_exe()?;
        if !same_file(&me, &st.tele()) {
            copy_durably(&me, &st.tele(), 0o755)?;
        }
        if let Some(dir) = ctx.bin_dir {
            link_tools(ctx, dir)?;
        }
        Ok(())
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        let st = ctx.state;
        Ok(same_file(
            &ctx.bundle.join("runtime/runtime.json"),
            &st.runtime_dir().join("runtime.json"),
        ) && same_file(
            &ctx.bundle.join("images/index.json"),
            &st.images_dir().join("index.json"),
        ) && same_file(&std::env::current_exe()?, &st.tele())
            && same_file(&ctx.bundle.join("app.yaml"), &st.manifest_file())
            && same_file(
                &ctx.bundle.join(tele_bundle::bundle_json::BUNDLE_JSON),
                &st.bundle_meta_file(),
            )
            && (ctx.bin_dir.is_none() || links_file(st).is_file()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle's runtime with `kubelet` packed and `etcd` plain.
    fn bundle_runtime(dir: &Path) -> (PathBuf, String) {
        use tele_bundle::digest::Digest;
        let from = dir.join("bundle/runtime");
        fs::create_dir_all(from.join("bin")).unwrap();
        let kubelet = b"kubelet ".repeat(1000);
        fs::write(dir.join("kubelet"), &kubelet).unwrap();
        tele_bundle::packed::pack(&dir.join("kubelet"), &from.join("bin/kubelet.zst")).unwrap();
        crate::durable::set_mode(&from.join("bin/kubelet.zst"), 0o755).unwrap();
        fs::write(from.join("bin/etcd"), b"etcd").unwrap();
        let k = Digest::of_bytes(&kubelet);
        let meta = serde_json::json!({
            "apiVersion": "runtime.tele.dev/v1", "name": "t", "kubernetesVersion": "1.20.2",
            "platform": "linux/amd64",
            "components": [
                {"name": "kubelet", "version": "v1.20.2", "path": "bin/kubelet", "sha256": k.hex(), "runsOn": "all"},
                {"name": "etcd", "version": "3.4", "path": "bin/etcd", "sha256": Digest::of_bytes(b"etcd").hex(), "runsOn": "controlPlane"},
            ]
        });
        fs::write(
            from.join("runtime.json"),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        (from, k.hex().to_string())
    }

    #[test]
    fn the_runtime_is_unpacked_checked_and_kept_packed_for_joining_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let (from, _) = bundle_runtime(dir.path());
        let to = dir.path().join("state/runtime");
        install_runtime(&from, &to, false).unwrap();
        assert_eq!(
            fs::read(to.join("bin/kubelet")).unwrap(),
            b"kubelet ".repeat(1000)
        );
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).unwrap().permissions()) & 0o777
        };
        assert_eq!(mode(&to.join("bin/kubelet")), 0o755);
        assert!(to.join("bin/kubelet.zst").is_file());
        assert_eq!(fs::read(to.join("bin/etcd")).unwrap(), b"etcd");
        assert!(same_file(
            &from.join("runtime.json"),
            &to.join("runtime.json")
        ));

        // A file changed in the state directory is unpacked again on resume.
        fs::write(to.join("bin/kubelet"), b"not kubelet").unwrap();
        install_runtime(&from, &to, false).unwrap();
        assert_eq!(
            fs::read(to.join("bin/kubelet")).unwrap(),
            b"kubelet ".repeat(1000)
        );

        // A plain file altered in the bundle is refused, and not left to run.
        fs::write(from.join("bin/etcd"), b"evil").unwrap();
        fs::remove_file(to.join("bin/etcd")).unwrap();
        let e = install_runtime(&from, &to, false).unwrap_err();
        assert!(e.to_string().contains("the bundle was altered"), "{e}");
        assert!(!to.join("bin/etcd").exists());

        // A packed file that unpacks to something else is refused too.
        let other = dir.path().join("other");
        fs::write(&other, b"other").unwrap();
        tele_bundle::packed::pack(&other, &from.join("bin/kubelet.zst")).unwrap();
        fs::write(from.join("bin/etcd"), b"etcd").unwrap();
        fs::remove_file(to.join("bin/kubelet")).unwrap();
        let e = install_runtime(&from, &to, false).unwrap_err();
        assert!(format!("{e:#}").contains("runtime.json says"), "{e:#}");
        assert!(!to.join("bin/kubelet").exists());
    }

    #[test]
    fn image_blobs_are_copied_only_with_the_digest_they_are_named_by() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        let blobs = from.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let layer = b"a layer".to_vec();
        let hex = tele_bundle::digest::Digest::of_bytes(&layer)
            .hex()
            .to_string();
        fs::write(blobs.join(&hex), &layer).unwrap();
        fs::write(from.join("oci-layout"), "{}").unwrap();
        fs::write(from.join("index.json"), "{}").unwrap();
        copy_images(&from, &to, false).unwrap();
        assert_eq!(fs::read(to.join("blobs/sha256").join(&hex)).unwrap(), layer);
        assert!(to.join("index.json").is_file());

        // A blob there with the wrong content (same size) is replaced on resume.
        fs::write(to.join("blobs/sha256").join(&hex), b"A LAYER").unwrap();
        copy_images(&from, &to, false).unwrap();
        assert_eq!(fs::read(to.join("blobs/sha256").join(&hex)).unwrap(), layer);

        // A blob changed in the bundle after its check is refused, not copied.
        fs::remove_dir_all(&to).unwrap();
        fs::write(blobs.join(&hex), b"b layer").unwrap();
        let e = copy_images(&from, &to, false).unwrap_err();
        assert!(e.to_string().contains("not what its name says"), "{e}");
        assert!(!to.join("blobs/sha256").join(&hex).exists());
        assert!(!to.join("index.json").exists());
    }
}
