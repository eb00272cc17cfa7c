//! The real runtime made by `scripts/build-runtime`, from the cache: every binary
//! runs and reports the version `runtime.json` claims, and the runtime's own
//! containerd (with its runc and shim) runs the pause image from the runtime's
//! OCI layout; runtime.json names the fixes in scripts/kubernetes-patches it
//! was compiled with, and a bundle says so.
//!
//! The runtime is `${TELE_RUNTIME_CACHE:-$HOME/.cache/tele/runtime}/<version>`
//! (`TELE_RUNTIME_VERSION`, default 1.20.2). These tests fail, not skip, when it is
//! missing: `.ci/run` runs `scripts/build-runtime` first. They need root (containerd).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tele_bundler::runtime::{Component, RunsOn, Runtime, RuntimeMeta};

/// The runtime directory in the cache; panics with what to do when it is missing.
fn runtime_dir() -> PathBuf {
    let cache = std::env::var_os("TELE_RUNTIME_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/tele/runtime")
        });
    let version = std::env::var("TELE_RUNTIME_VERSION").unwrap_or_else(|_| "1.20.2".into());
    let dir = cache.join(&version);
    assert!(
        dir.join("runtime.json").is_file(),
        "no runtime at {}: run `scripts/build-runtime --version {version}` first (as root; it compiles \
         Kubernetes from Debian's source package, 6-10 minutes on 2 cores, once per machine)",
        dir.display()
    );
    dir
}

fn load() -> Runtime {
    let cache = tempfile::tempdir().unwrap();
    Runtime::load(&runtime_dir(), cache.path())
        .unwrap_or_else(|e| panic!("the cached runtime does not load: {e}"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How each component reports its version.
fn version_command(bin: &Path, c: &Component) -> Command {
    let mut cmd = Command::new(bin);
    match c.name.as_str() {
        "kubectl" => cmd.args(["version", "--client", "--short"]),
        "etcdctl" => cmd.arg("version").env("ETCDCTL_API", "3"),
        "containerd-shim-runc-v2" => cmd.arg("-v"),
        n if n.starts_with("cni-") => cmd.env_remove("CNI_COMMAND"),
        _ => cmd.arg("--version"),
    };
    cmd
}

/// Runs every file component under `root` and checks it reports the version
/// `meta` claims; returns how many were checked.
fn check_binaries(root: &Path, meta: &RuntimeMeta) -> usize {
    let mut checked = 0;
    for c in meta.components.iter().filter(|c| !c.is_image()) {
        let bin = root.join(c.path.as_deref().unwrap());
        let out = run(&mut version_command(&bin, c));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if c.name.starts_with("cni-") {
            // Debian's CNI plugins are built without a version stamp ("CNI bridge plugin
            // version unknown"): the version comes from the package, and says so.
            let plugin = &c.name["cni-".len()..];
            assert!(
                text.contains(&format!("CNI {plugin} plugin")),
                "{} is not a CNI plugin: {text}",
                bin.display()
            );
            if !text.contains(&c.version) {
                let src = c.version_source.as_deref().unwrap_or("");
                assert!(
                    text.contains("version unknown")
                        && src.starts_with("package:")
                        && src.contains(&c.version),
                    "{} reports `{}` but runtime.json claims {} (versionSource {src:?})",
                    c.name,
                    text.trim(),
                    c.version
                );
            }
        } else {
            assert!(
                out.status.success(),
                "{} --version failed: {text}",
                bin.display()
            );
            assert!(
                c.version_source.is_none(),
                "{}: version must come from the binary",
                c.name
            );
            assert!(
                text.contains(&c.version),
                "{} reports `{}`, runtime.json claims {}",
                c.name,
                text.trim(),
                c.version
            );
        }
        checked += 1;
    }
    checked
}

/// The patches in scripts/kubernetes-patches/, in the order build-runtime
/// applies them: (name, first line, sha256).
fn carried_patches() -> Vec<(String, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kubernetes-patches");
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            let text = fs::read(p).unwrap();
            let first = String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let sha = tele_bundle::digest::Digest::of_bytes(&text)
                .hex()
                .to_string();
            (name, first, sha)
        })
        .collect()
}

#[test]
fn runtime_json_names_the_fixes_it_was_compiled_with() {
    let rt = load();
    let listed: Vec<(String, String, String)> = rt
        .meta
        .patches
        .iter()
        .map(|p| (p.name.clone(), p.summary.clone(), p.sha256.clone()))
        .collect();
    let carried = carried_patches();
    assert!(!carried.is_empty());
    assert_eq!(
        listed, carried,
        "runtime.json's patches are not scripts/kubernetes-patches/: the runtime in the cache \
         was built from other patches (scripts/build-runtime rebuilds it)"
    );
}

#[test]
fn every_binary_reports_the_version_runtime_json_claims() {
    let rt = load();
    let names: Vec<&str> = rt.meta.components.iter().map(|c| c.name.as_str()).collect();
    for required in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "runc",
        "cni-bridge",
        "cni-host-local",
        "cni-loopback",
        "cni-portmap",
        "pause",
    ] {
        assert!(
            names.contains(&required),
            "runtime.json has no `{required}` component: {names:?}"
        );
    }

    for c in &rt.meta.components {
        let v = c.version.trim_start_matches('v');
        let mut parts = v.splitn(3, '.');
        let numeric = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        assert!(
            numeric(parts.next())
                && parts
                    .next()
                    .is_some_and(|p| p.starts_with(|ch: char| ch.is_ascii_digit())),
            "component `{}` claims version `{}`, which is not a version",
            c.name,
            c.version
        );
    }
    let checked = check_binaries(&rt.root, &rt.meta);
    assert!(checked >= 14, "only {checked} binaries checked");

    let kube = format!("v{}", rt.meta.kubernetes_version);
    for name in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
    ] {
        let c = rt.meta.components.iter().find(|c| c.name == name).unwrap();
        assert_eq!(c.version, kube, "{name}");
    }
    let placement = |n: &str| {
        rt.meta
            .components
            .iter()
            .find(|c| c.name == n)
            .unwrap()
            .runs_on
    };
    assert_eq!(placement("etcd"), RunsOn::ControlPlane);
    assert_eq!(placement("kube-apiserver"), RunsOn::ControlPlane);
    assert_eq!(placement("kubelet"), RunsOn::All);

    // every file rt.files() lists is in the runtime and executable where it should be
    let files = rt.files();
    assert_eq!(files[files.len() - 1].bundle_path, "runtime/runtime.json");
    for f in &files {
        assert!(f.source.is_file(), "{}", f.source.display());
        if f.bundle_path.starts_with("runtime/bin/")
            || f.bundle_path.starts_with("runtime/cni/bin/")
        {
            assert_eq!(f.mode, 0o755, "{}", f.bundle_path);
        }
    }
    let (layout, refs) = rt.images();
    assert!(layout.join("index.json").is_file());
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert!(
        refs[0].to_string().starts_with("registry.k8s.io/pause:"),
        "{}",
        refs[0]
    );
}

/// A containerd of the runtime's own, in a temporary directory. Dropping it kills
/// what was started in it (tasks, shims, containerd), unmounts what is left under
/// its root and removes the directory, also when the test failed.
struct Containerd {
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
    containers: Vec<String>,
}

const NS: &str = "tele-test";

impl Containerd {
    fn start(rt: &Runtime) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("tele-ctd-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.runtime.v2.task"]
  platforms = ["linux/amd64"]
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        fs::write(d.join("config.toml"), config).unwrap();
        let bin = rt.root.join("bin");
        // the shim and runc are found on PATH: the runtime's own come first
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new(bin.join("containerd"))
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start the runtime's containerd");
        let mut c = Containerd {
            dir,
            bin,
            child: Some(child),
            containers: vec![],
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if c.sock().exists() && run(&mut c.ctr(&["version"])).status.success() {
                break;
            }
            if let Some(status) = c.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("containerd exited ({status}):\n{}", c.log());
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not come up in 30s:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        c
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join("ctr"));
        c.arg("-a").arg(self.sock()).args(["-n", NS]).args(args);
        c
    }

    fn task_status(&self, id: &str) -> Option<String> {
        let out = ok(&mut self.ctr(&["tasks", "ls"]));
        out.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.last().unwrap_or(&"").to_string())
        })
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let quiet = |mut c: Command| {
            let _ = c
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        for id in std::mem::take(&mut self.containers) {
            quiet(self.ctr(&["tasks", "kill", "-s", "SIGKILL", &id]));
            std::thread::sleep(Duration::from_millis(300));
            quiet(self.ctr(&["tasks", "delete", "-f", &id]));
            quiet(self.ctr(&["containers", "rm", &id]));
        }
        if let Some(mut child) = self.child.take() {
            quiet({
                let mut k = Command::new("kill");
                k.args(["-TERM", &child.id().to_string()]);
                k
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // shims outlive containerd: kill the ones serving this directory's socket, by pid
        let marker = self.dir.path().to_string_lossy().into_owned();
        if let Ok(procs) = fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let cmdline = fs::read(p.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&marker) && pid != std::process::id()
                {
                    quiet({
                        let mut k = Command::new("kill");
                        k.args(["-KILL", &pid.to_string()]);
                        k
                    });
                }
            }
        }
        // mounts left under the directory (rootfs, shm), deepest first, lazily
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&marker))
            .collect();
        points.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in points {
            quiet({
                let mut u = Command::new("umount");
                u.args(["-R", "-l", m]);
                u
            });
        }
    }
}

#[test]
fn the_runtimes_containerd_runs_the_pause_image_from_the_runtimes_layout() {
    let rt = load();
    assert!(
        run(Command::new("id").arg("-u")).stdout.starts_with(b"0"),
        "this test starts containerd and runs a container: run it as root"
    );
    let (layout, refs) = rt.images();
    let pause = refs
        .iter()
        .find(|r| r.to_string().contains("/pause:"))
        .expect("a pause image")
        .to_string();

    let ctd = Containerd::start(&rt);
    let tar = ctd.dir.path().join("images.tar");
    ok(Command::new("tar")
        .arg("cf")
        .arg(&tar)
        .arg("-C")
        .arg(&layout)
        .arg("."));
    ok(&mut ctd.ctr(&["images", "import", tar.to_str().unwrap()]));
    let listed = ok(&mut ctd.ctr(&["images", "ls", "-q"]));
    assert!(
        listed.lines().any(|l| l == pause),
        "{pause} not imported; images: {listed}"
    );

    let mut ctd = ctd;
    // the image's /pause reports the version runtime.json claims
    let claimed = rt
        .meta
        .components
        .iter()
        .find(|c| c.image.as_deref() == Some(pause.as_str()))
        .unwrap();
    ctd.containers.push("tele-pause-version".into());
    let said = ok(&mut ctd.ctr(&["run", "--rm", &pause, "tele-pause-version", "/pause", "-v"]));
    assert!(
        said.contains(&format!("v{}", claimed.version)),
        "/pause -v says `{said}`, runtime.json claims {}",
        claimed.version
    );
    ctd.containers.clear();

    let id = "tele-pause";
    ctd.containers.push(id.into());
    let out = run(&mut ctd.ctr(&["run", "-d", &pause, id]));
    assert!(
        out.status.success(),
        "ctr run failed: {}{}\ncontainerd log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        ctd.log()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while ctd.task_status(id).as_deref() != Some("RUNNING") {
        assert!(
            Instant::now() < deadline,
            "task {id} is {:?}, not RUNNING\ncontainerd log:\n{}",
            ctd.task_status(id),
            ctd.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // it stays up: pause only waits for signals
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ctd.task_status(id).as_deref(), Some("RUNNING"));

    // and it stops on SIGTERM, as the kubelet stops sandboxes
    ok(&mut ctd.ctr(&["tasks", "kill", id]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctd.task_status(id).as_deref() != Some("STOPPED") {
        assert!(
            Instant::now() < deadline,
            "task {id} did not stop on SIGTERM: {:?}",
            ctd.task_status(id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(&mut ctd.ctr(&["tasks", "delete", id]));
    ok(&mut ctd.ctr(&["containers", "rm", id]));
    ctd.containers.clear();
}

/// The runtime packed by `tele build`: the bundle verifies, inspect shows the
/// versions, every binary taken out of the bundle runs and reports its version,
/// the pause image sits in the bundle's one image layout, modes survive, and
/// the bundle stays byte-identical across builds.
#[test]
fn a_bundle_with_the_runtime_verifies_and_its_binaries_run() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    fs::create_dir_all(&app).unwrap();
    fs::write(
        app.join("app.yaml"),
        "apiVersion: bundle.gravitational.io/v2\nkind: Bundle\nmetadata:\n  name: withk8s\n  resourceVersion: 0.1.0\n",
    )
    .unwrap();
    let tele = env!("CARGO_BIN_EXE_tele");
    let build = |out: &Path, cache: &Path| {
        ok(Command::new(tele)
            .env_remove("TELE_NO_RUNTIME")
            .env("TELE_NO_MONITORING", "true")
            .env_remove("SOURCE_DATE_EPOCH")
            .arg("build")
            .arg(app.join("app.yaml"))
            .arg("--runtime")
            .arg(runtime_dir())
            .arg("-o")
            .arg(out)
            .arg("--cache-dir")
            .arg(cache));
    };
    let first = dir.path().join("a.tar");
    build(&first, &dir.path().join("c1"));
    ok(Command::new(tele).arg("verify").arg(&first));
    let inspect = ok(Command::new(tele)
        .args(["--output-format", "json", "inspect"])
        .arg(&first));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let rt = load();
    assert_eq!(
        inspect["runtime"]["kubernetesVersion"],
        rt.meta.kubernetes_version.as_str()
    );
    assert_eq!(
        inspect["runtime"]["components"].as_array().unwrap().len(),
        rt.meta.components.len()
    );
    // The fixes the runtime carries are named in the bundle, for whoever
    // looks at a cluster's Kubernetes later.
    let fixes: Vec<&str> = inspect["runtime"]["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let carried = carried_patches();
    assert_eq!(
        fixes,
        carried.iter().map(|c| c.0.as_str()).collect::<Vec<_>>()
    );
    let shown = ok(Command::new(tele).arg("inspect").arg(&first));
    for (name, summary, _) in &carried {
        assert!(
            shown.contains(&format!("with fix {name}: {summary}")),
            "{shown}"
        );
    }
    let refs: Vec<&str> = inspect["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    assert!(
        refs.iter().any(|r| r.starts_with("registry.k8s.io/pause:")),
        "{refs:?}"
    );
    // `tele images` lists every image the build packed, runtime's included.
    let listed = ok(Command::new(tele)
        .env("TELE_NO_MONITORING", "true")
        .args(["--output-format", "json", "images"])
        .arg(app.join("app.yaml"))
        .arg("--runtime")
        .arg(runtime_dir()));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let mut listed: Vec<&str> = listed["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    listed.sort();
    let mut packed = refs.clone();
    packed.sort();
    assert_eq!(listed, packed, "tele images against what the bundle holds");

    let x = dir.path().join("x");
    fs::create_dir_all(&x).unwrap();
    ok(Command::new("tar").arg("xf").arg(&first).arg("-C").arg(&x));
    let bundle = x.join("withk8s-0.1.0");
    let meta: RuntimeMeta =
        serde_json::from_slice(&fs::read(bundle.join("runtime/runtime.json")).unwrap()).unwrap();
    // Stored compressed: each file of runtime.json as FILE.zst, a fraction of its size.
    let (mut plain, mut packed) = (0u64, 0u64);
    for c in &meta.components {
        let Some(rel) = c.path.as_deref() else {
            continue;
        };
        let zst = bundle.join("runtime").join(format!("{rel}.zst"));
        assert!(
            !bundle.join("runtime").join(rel).exists(),
            "{rel} stored plain"
        );
        let out = bundle.join("runtime").join(rel);
        let mut d = zstd::stream::read::Decoder::new(fs::File::open(&zst).unwrap()).unwrap();
        let mut f = fs::File::create(&out).unwrap();
        plain += std::io::copy(&mut d, &mut f).unwrap();
        packed += fs::metadata(&zst).unwrap().len();
        let mode = fs::metadata(&zst).unwrap().permissions();
        fs::set_permissions(&out, mode).unwrap();
    }
    assert!(
        packed * 100 < plain * 35,
        "{packed} bytes packed of {plain}"
    );
    assert!(check_binaries(&bundle.join("runtime"), &meta) >= 14);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(bundle.join("runtime/bin/kubelet.zst"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);

    let second = dir.path().join("b.tar");
    build(&second, &dir.path().join("c2"));
    assert!(
        fs::read(&first).unwrap() == fs::read(&second).unwrap(),
        "two builds with the runtime differ"
    );
}
