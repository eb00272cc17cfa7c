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
}

/// Copies `from` to `to` (a tree), file by file, skipping files of the same
/// size already there; `last` (relative) is copied at the end so that its
/// presence means the copy is whole.
fn copy_tree(from: &Path, to: &Path, last: &str) -> anyhow::Result<()> {
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
            let same = fs::metadata(&dest).is_ok_and(|m| m.len() == meta.len());
            if !same {
                let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o755;
                copy_durably(entry.path(), &dest, mode)?;
            }
        }
        // Symlinks are not followed: a bundle's runtime and images have none.
    }
    copy_durably(&from.join(last), &to.join(last), 0o644)?;
    Ok(())
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
        vec!["/configure".into()]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        let st = ctx.state;
        copy_tree(
            &ctx.bundle.join("runtime"),
            &st.runtime_dir(),
            "runtime.json",
        )?;
        copy_tree(&ctx.bundle.join("images"), &st.images_dir(), "index.json")?;
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
            && (ctx.bin_dir.is_none() || links_file(st).is_file()))
    }
}
