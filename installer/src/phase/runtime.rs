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

/// Copies `from` to `to` (a tree), file by file; `last` (relative) is copied
/// at the end so that its presence means the copy is whole. Each file is
/// written whole or not at all, so after a kill a file of the right size is
/// the file: those are skipped when `resumable` (a resumed copy of the same
/// runtime, or content-addressed blobs). With `link`, files are hard-linked
/// rather than copied (a bundle fetched into the state directory, already
/// root's: the runtime is not stored twice).
fn copy_tree(
    from: &Path,
    to: &Path,
    last: &str,
    resumable: bool,
    link: bool,
) -> anyhow::Result<()> {
    for entry in walkdir::WalkDir::new(from).sort_by_file_name() {
        let entry = entry?;
        let rel = entry.path().strip_prefix(from)?;
        if rel.as_os_str().is_empty() || rel == Path::new(last) {
            continue;
        }
        let dest = to.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            fs::create_dir_all(&dest)?;
        } else if ft.is_file() {
            let meta = entry.metadata()?;
            let same = resumable && fs::metadata(&dest).is_ok_and(|m| m.len() == meta.len());
            if !same {
                let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o755;
                if !(link && link_file(entry.path(), &dest)) {
                    copy_durably(entry.path(), &dest, mode)?;
                }
            }
        }
        // Symlinks are not followed: a bundle's runtime and images have none.
    }
    copy_durably(&from.join(last), &to.join(last), 0o644)?;
    Ok(())
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
        // A runtime copied (in part) from the same runtime.json is resumed;
        // another runtime is copied afresh. Blobs are named by their digest.
        let runtime = ctx.bundle.join("runtime");
        let link = ctx.bundle.starts_with(st.root());
        let partial = st.runtime_dir().join(".copying");
        let same_runtime = same_file(&runtime.join("runtime.json"), &partial);
        if !same_runtime {
            copy_durably(&runtime.join("runtime.json"), &partial, 0o644)?;
        }
        copy_tree(
            &runtime,
            &st.runtime_dir(),
            "runtime.json",
            same_runtime,
            link,
        )?;
        let _ = fs::remove_file(&partial);
        copy_tree(
            &ctx.bundle.join("images"),
            &st.images_dir(),
            "index.json",
            true,
            link,
        )?;
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

    #[test]
    fn a_copy_is_resumed_only_for_the_same_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        fs::create_dir_all(from.join("bin")).unwrap();
        fs::write(from.join("bin/etcd"), "new!").unwrap();
        fs::write(from.join("runtime.json"), "{}").unwrap();
        fs::create_dir_all(to.join("bin")).unwrap();
        fs::write(to.join("bin/etcd"), "old.").unwrap();
        // Resuming trusts a file of the right size (it was written whole) ...
        copy_tree(&from, &to, "runtime.json", true, false).unwrap();
        assert_eq!(fs::read_to_string(to.join("bin/etcd")).unwrap(), "old.");
        // ... a fresh copy does not.
        copy_tree(&from, &to, "runtime.json", false, false).unwrap();
        assert_eq!(fs::read_to_string(to.join("bin/etcd")).unwrap(), "new!");
        assert!(same_file(
            &from.join("runtime.json"),
            &to.join("runtime.json")
        ));
    }
}
