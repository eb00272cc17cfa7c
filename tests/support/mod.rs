//! Real components for the end-to-end tests: Debian's docker-registry on a
//! loopback port, images built with `tele image build` from busybox, pushed
//! with skopeo, and the `tele` binary run as a user would run it.
#![allow(dead_code)]

pub mod aws;
pub mod browser;
pub mod example;
pub mod systemd_host;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The tele binary under test.
pub fn tele() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tele"));
    // App-only bundles unless a test asks for the Kubernetes runtime.
    c.env_remove("SOURCE_DATE_EPOCH")
        .env("NO_COLOR", "1")
        .env("TELE_NO_RUNTIME", "true")
        .env("TELE_NO_MONITORING", "true");
    c
}

/// Runs a command, returning its output; panics when it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (does .ci/run install it?)"))
}

/// Runs a command that must succeed.
pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Token(&'a str, &'a str),
}

/// Waits until something listens on `host` (`127.0.0.1:PORT`).
pub fn wait_for_port(host: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(host).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing started listening on {host}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A docker-registry process on a loopback port, killed on drop.
pub struct Registry {
    child: Child,
    token_server: Option<Child>,
    /// `127.0.0.1:PORT`
    pub host: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that requires basic auth for `user:password`.
    pub fn start_with_user(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    /// A registry that requires bearer tokens from a token server on another
    /// loopback port, which hands them out for `user:password`.
    pub fn start_with_token_auth(user: &str, password: &str) -> Registry {
        Registry::start_with_auth(Auth::Token(user, password))
    }

    fn start_with(user: Option<(&str, &str)>) -> Registry {
        Registry::start_with_auth(match user {
            Some((u, p)) => Auth::Basic(u, p),
            None => Auth::None,
        })
    }

    fn start_with_auth(auth: Auth) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        let mut token_server = None;
        if let Auth::Token(u, p) = auth {
            let key = dir.path().join("key.pem");
            let cert = dir.path().join("cert.pem");
            ok(Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=tele-test-token",
                    "-keyout",
                ])
                .arg(&key)
                .arg("-out")
                .arg(&cert));
            let token_port = free_port();
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/token_server.py");
            token_server = Some(
                Command::new("python3")
                    .arg(script)
                    .arg(token_port.to_string())
                    .arg(&key)
                    .arg(&cert)
                    .args(["tele-test-issuer", u, p])
                    .spawn()
                    .expect("python3 runs the test token server"),
            );
            wait_for_port(&format!("127.0.0.1:{token_port}"));
            config.push_str(&format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: tele-test\n    issuer: tele-test-issuer\n    rootcertbundle: {}\n",
                cert.display()
            ));
        }
        if let Auth::Basic(u, p) = auth {
            let htpasswd = dir.path().join("htpasswd");
            ok(Command::new("htpasswd")
                .args(["-Bbc"])
                .arg(&htpasswd)
                .args([u, p]));
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: tele-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry must be installed (apt-get install docker-registry)");
        wait_for_port(&host);
        Registry {
            child,
            token_server,
            host,
            dir,
        }
    }

    /// The registry's storage directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Pushes an image from an OCI layout (named `local` there) as `repo:tag`.
    pub fn push(&self, layout: &Path, local: &str, repo_tag: &str, creds: Option<&str>) -> String {
        let dest = format!("{}/{repo_tag}", self.host);
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(c2) = creds {
            c.arg(format!("--dest-creds={c2}"));
        }
        c.arg(format!("oci:{}:{local}", layout.display()))
            .arg(format!("docker://{dest}"));
        ok(&mut c);
        dest
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = &mut self.token_server {
            let _ = t.kill();
            let _ = t.wait();
        }
    }
}

/// Builds test images into one OCI layout: a busybox base and apps on top.
pub struct ImageFactory {
    /// The layout.
    pub layout: PathBuf,
    work: PathBuf,
}

impl ImageFactory {
    /// A factory writing into `dir/layout`.
    pub fn new(dir: &Path) -> ImageFactory {
        let layout = dir.join("layout");
        let work = dir.join("image-src");
        std::fs::create_dir_all(&work).unwrap();
        ImageFactory { layout, work }
    }

    /// The base image: /bin/busybox and a few applets.
    pub fn base(&self, reference: &str) -> &Self {
        let root = self.work.join("busybox");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.is_file(),
            "busybox-static must be installed (apt-get install busybox-static)"
        );
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for applet in ["sh", "true", "echo", "cat"] {
            let link = root.join("bin").join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", link).unwrap();
            }
        }
        self.build(&root, reference, None, &[]);
        self
    }

    /// An app image: `files` (name, content) on top of `base`.
    pub fn app(&self, reference: &str, base: Option<&str>, files: &[(&str, &[u8])]) -> &Self {
        let root = self.work.join(reference.replace(['/', ':'], "_"));
        std::fs::create_dir_all(&root).unwrap();
        for (name, content) in files {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        self.build(&root, reference, base, &[]);
        self
    }

    /// Runs `tele image build`.
    pub fn build(&self, dir: &Path, reference: &str, base: Option<&str>, extra: &[&str]) {
        let mut c = tele();
        c.args(["image", "build"])
            .arg(dir)
            .args(["--ref", reference, "-o"])
            .arg(&self.layout);
        if let Some(b) = base {
            c.args(["--base", b]);
        }
        c.args(extra);
        ok(&mut c);
    }
}

/// Writes an app directory: app.yaml with `images:` and the given resources.
pub fn write_app(dir: &Path, name: &str, images: &[&str], resources: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut yaml = format!(
        "apiVersion: bundle.gravitational.io/v2\nkind: Bundle\nmetadata:\n  name: {name}\n  resourceVersion: 1.0.0\n"
    );
    if !images.is_empty() {
        yaml.push_str("images:\n");
        for i in images {
            yaml.push_str(&format!("  - {i}\n"));
        }
    }
    let manifest = dir.join("app.yaml");
    std::fs::write(&manifest, yaml).unwrap();
    for (file, text) in resources {
        let p = dir.join(file);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    manifest
}

/// A Deployment resource using `image`.
pub fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: main\n          image: {image}\n"
    )
}

/// Paths of every regular file in a tarball, in order.
pub fn tar_files(tarball: &Path) -> Vec<String> {
    let out = ok(Command::new("tar").arg("tf").arg(tarball));
    stdout(&out)
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(String::from)
        .collect()
}

/// Extracts a tarball into `dest` with GNU tar, returning the bundle directory.
pub fn extract(tarball: &Path, dest: &Path) -> PathBuf {
    std::fs::create_dir_all(dest).unwrap();
    ok(Command::new("tar")
        .arg("xf")
        .arg(tarball)
        .arg("-C")
        .arg(dest));
    std::fs::read_dir(dest)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// The JSON document a `--output-format json` command printed.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(o)))
}

/// A containerd with its own root, state and socket; stopped and unmounted on drop.
pub struct Containerd {
    child: Child,
    dir: PathBuf,
}

impl Containerd {
    /// Starts one under `parent/containerd`.
    pub fn start(parent: &Path) -> Containerd {
        let dir = parent.join("containerd");
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[grpc]\n  address = \"{0}/c.sock\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable = true\n",
            dir.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd must be installed (apt-get install containerd)");
        let c = Containerd { child, dir };
        for _ in 0..200 {
            if c.ctr()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "containerd did not start: {}",
            std::fs::read_to_string(c.dir.join("log")).unwrap_or_default()
        );
    }

    /// `ctr` talking to it, in the `tele-test` namespace.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a")
            .arg(self.dir.join("c.sock"))
            .args(["-n", "tele-test"]);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for sub in ["root", "state"] {
            let _ = Command::new("umount")
                .arg("-R")
                .arg("-l")
                .arg(self.dir.join(sub))
                .output();
        }
    }
}

/// Uninstalls the install in `state` on drop, so a failing test leaves the
/// machine clean too.
pub struct Installed {
    pub state: PathBuf,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.state.exists() {
            let _ = tele()
                .args(["uninstall", "--yes", "--state-dir"])
                .arg(&self.state)
                .output();
        }
    }
}

/// A child process killed and reaped when this is dropped, however the test ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The PKI the installer makes, in `dir`, for a node named `node1` at
/// 127.0.0.1 whose API server is `api_server`.
pub fn loopback_pki(dir: &Path, api_server: &str) -> tele_installer::pki::Pki {
    tele_installer::pki::ensure(
        dir,
        &tele_installer::pki::PkiConfig {
            node_name: "node1".into(),
            node_ips: vec!["127.0.0.1".parse().unwrap()],
            hostnames: vec![],
            service_cidr: "10.100.0.0/16".into(),
            cluster_domain: "cluster.local".into(),
            api_server: api_server.into(),
            leaf_validity: tele_installer::pki::DEFAULT_LEAF_VALIDITY,
            ca_validity: tele_installer::pki::DEFAULT_CA_VALIDITY,
        },
    )
    .unwrap()
}

/// The instance metadata stand-in of tests/support/imds.py, started with
/// `args` (`--cloud aws|azure`, `--stall`, `--listen HOST:PORT`, values),
/// and the port it serves on; stopped when the handle is dropped. `cmd`
/// runs it (`python3` directly, or inside a network namespace).
pub fn imds_in(cmd: Command, args: &[&str]) -> (KillOnDrop, u16) {
    standin_in(cmd, "imds.py", args)
}

/// The Azure sign-in and Resource Manager stand-in of
/// tests/support/azure_arm.py, on this machine's loopback, and its URL.
pub fn azure_arm(args: &[&str]) -> (KillOnDrop, String) {
    let (child, port) = standin_in(Command::new("python3"), "azure_arm.py", args);
    (child, format!("http://127.0.0.1:{port}"))
}

/// Runs the stand-in `script` of tests/support with `args` until it says
/// which port it listens on.
pub fn standin_in(mut cmd: Command, script: &str, args: &[&str]) -> (KillOnDrop, u16) {
    use std::io::BufRead as _;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/support")
        .join(script);
    let mut child = cmd
        .arg(&script)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the stand-in");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{} did not start: {line:?}", script.display()));
    (KillOnDrop(child), port)
}

/// [`imds_in`] on this machine's loopback.
pub fn imds(args: &[&str]) -> (KillOnDrop, String) {
    let (child, port) = imds_in(Command::new("python3"), args);
    (child, format!("http://127.0.0.1:{port}"))
}
