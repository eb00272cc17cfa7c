//! The node's image registry against real clients: skopeo, curl and a
//! containerd that pulls through it as a registry mirror over TLS, with the
//! image references left as written.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{ok, run, stdout, Containerd, ImageFactory};
use tele_installer::registry_server::{
    start, RegistryConfig, RegistryHandle, TlsFiles, DEFAULT_MAX_CONNECTIONS,
};

const BASE: &str = "example.com/t/base:1";
const APP: &str = "example.com/t/app:2";
/// A Docker Hub image, asked for by containerd as `library/busy` with `ns=docker.io`.
const HUB: &str = "docker.io/library/busy:1";

struct Fixture {
    dir: tempfile::TempDir,
    layout: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFactory::new(dir.path());
    f.base(BASE)
        .app(APP, Some(BASE), &[("etc/app.conf", b"answer = 42\n")])
        .app(HUB, None, &[("hello.txt", b"hello\n")]);
    Fixture {
        layout: f.layout.clone(),
        dir,
    }
}

fn serve(layout: &Path, tls: Option<TlsFiles>) -> RegistryHandle {
    serve_for(layout, tls, None)
}

/// [`serve`], letting in only clients with a certificate `client_ca` signed.
fn serve_for(layout: &Path, tls: Option<TlsFiles>, client_ca: Option<&Path>) -> RegistryHandle {
    start(RegistryConfig {
        layout: layout.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls,
        client_ca: client_ca.map(Path::to_path_buf),
        max_connections: DEFAULT_MAX_CONNECTIONS,
    })
    .expect("the registry starts")
}

fn index_entry(layout: &Path, reference: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["io.containerd.image.name"] == reference)
        .unwrap_or_else(|| panic!("{reference} is not in the layout"))
        .clone()
}

fn manifest_digest(layout: &Path, reference: &str) -> String {
    index_entry(layout, reference)["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn manifest(layout: &Path, reference: &str) -> serde_json::Value {
    let digest = manifest_digest(layout, reference);
    serde_json::from_slice(&fs::read(blob_path(layout, &digest)).unwrap()).unwrap()
}

/// A curl response: status, headers (lowercase names) and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn error_code(&self) -> String {
        let doc: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)));
        doc["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
}

/// Runs curl with `args` (path taken as is, never normalised).
fn curl(args: &[&str]) -> Reply {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let body = dir.path().join("body");
    ok(Command::new("curl")
        .args(["-sS", "--path-as-is", "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(args));
    let text = fs::read_to_string(&headers).unwrap();
    // With a 100-continue or similar there can be several header blocks; the last counts.
    let block = text.trim_end().rsplit("\r\n\r\n").next().unwrap();
    let mut lines = block.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: fs::read(&body).unwrap_or_default(),
    }
}

/// One request on a fresh connection, the whole response as text.
fn raw_request(addr: std::net::SocketAddr, method: &str, url: &str) -> String {
    use std::io::{Read, Write};
    let path = &url[url.find("/v2/").unwrap()..];
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn skopeo_inspects_and_copies_through_the_registry() {
    let f = fixture();
    let registry = serve(&f.layout, None);
    let host = registry.addr().to_string();

    for (path, reference) in [
        (format!("{host}/example.com/t/base:1"), BASE),
        (format!("{host}/example.com/t/app:2"), APP),
        // No host in the path: read as a Docker Hub name.
        (format!("{host}/library/busy:1"), HUB),
        (format!("{host}/busy:1"), HUB),
    ] {
        let out = ok(Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{path}")));
        let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            inspected["Digest"],
            manifest_digest(&f.layout, reference),
            "{path}"
        );
    }

    let copy = f.dir.path().join("copy");
    ok(Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/example.com/t/app:2"))
        .arg(format!("oci:{}:x", copy.display())));
    let copied: serde_json::Value =
        serde_json::from_slice(&fs::read(copy.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        copied["manifests"][0]["digest"],
        manifest_digest(&f.layout, APP)
    );
    for layer in manifest(&f.layout, APP)["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        assert_eq!(
            fs::read(blob_path(&copy, digest)).unwrap(),
            fs::read(blob_path(&f.layout, digest)).unwrap()
        );
    }

    // By digest, as containerd asks for an image pinned by digest.
    let digest = manifest_digest(&f.layout, BASE);
    let out = ok(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/example.com/t/base@{digest}")));
    assert_eq!(out.stdout, fs::read(blob_path(&f.layout, &digest)).unwrap());
}

#[test]
fn blobs_are_served_whole_and_by_range() {
    let f = fixture();
    let registry = serve(&f.layout, None);
    let base = format!("http://{}/v2/example.com/t/base", registry.addr());
    let layer = manifest(&f.layout, BASE)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = fs::read(blob_path(&f.layout, &layer)).unwrap();
    let size = bytes.len();
    assert!(size > 1000, "the busybox layer is big enough to slice");
    let url = format!("{base}/blobs/{layer}");

    let head = curl(&["-I", &url]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(size.to_string().as_str())
    );
    assert_eq!(head.header("docker-content-digest"), Some(layer.as_str()));
    assert_eq!(head.header("accept-ranges"), Some("bytes"));
    let raw = raw_request(registry.addr(), "HEAD", &url);
    assert!(
        raw.ends_with("\r\n\r\n") && raw.contains(&format!("content-length: {size}\r\n")),
        "HEAD sends headers only:\n{raw}"
    );

    let whole = curl(&[&url]);
    assert_eq!(whole.status, 200);
    assert!(whole.body == bytes, "the whole blob comes back as stored");

    let part = curl(&["-r", "100-199", &url]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &bytes[100..200]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-199/{size}").as_str())
    );
    assert_eq!(part.header("content-length"), Some("100"));

    let tail = curl(&["-r", &format!("{}-", size - 10), &url]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, &bytes[size - 10..]);

    let suffix = curl(&["-r", "-5", &url]);
    assert_eq!(suffix.status, 206);
    assert_eq!(suffix.body, &bytes[size - 5..]);

    let beyond = curl(&["-r", &format!("{size}-"), &url]);
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );

    // Manifests by tag and digest, GET and HEAD.
    let digest = manifest_digest(&f.layout, BASE);
    let stored = fs::read(blob_path(&f.layout, &digest)).unwrap();
    for reference in ["1", digest.as_str()] {
        let got = curl(&[&format!("{base}/manifests/{reference}")]);
        assert_eq!(got.status, 200, "{reference}");
        assert_eq!(got.body, stored);
        assert_eq!(
            got.header("content-type"),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(got.header("docker-content-digest"), Some(digest.as_str()));
        let head = curl(&["-I", &format!("{base}/manifests/{reference}")]);
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(stored.len().to_string().as_str())
        );
        assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    }
    // containerd's form: the upstream host in `ns`, its port's `:` escaped.
    let host = registry.addr();
    let got = curl(&[&format!(
        "http://{host}/v2/library/busy/manifests/1?ns=docker.io"
    )]);
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("docker-content-digest"),
        Some(manifest_digest(&f.layout, HUB).as_str())
    );
    let got = curl(&[&format!(
        "http://{host}/v2/t/base/manifests/1?ns=example.com"
    )]);
    assert_eq!(got.status, 200);
    let got = curl(&[&format!(
        "http://{host}/v2/t/base/manifests/1?ns=example.com%3A443"
    )]);
    assert_eq!(got.status, 404, "example.com:443 is another registry");
}

#[test]
fn errors_have_the_right_status_and_code() {
    let f = fixture();
    let registry = serve(&f.layout, None);
    let host = registry.addr();
    let v2 = |path: &str| format!("http://{host}/v2/{path}");

    let root = curl(&[&v2("")]);
    assert_eq!(root.status, 200);
    assert_eq!(root.body, b"{}");
    assert_eq!(
        root.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    let missing = format!("sha256:{}", "0".repeat(64));
    let config = manifest(&f.layout, BASE)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    for (path, status, code) in [
        ("example.com/t/base/manifests/2", 404, "MANIFEST_UNKNOWN"),
        ("example.com/t/nope/manifests/1", 404, "MANIFEST_UNKNOWN"),
        ("t/base/manifests/1", 404, "MANIFEST_UNKNOWN"),
        (
            &format!("example.com/t/base/manifests/{missing}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        // A config blob is no manifest.
        (
            &format!("example.com/t/base/manifests/{config}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            &format!("example.com/t/base/blobs/{missing}"),
            404,
            "BLOB_UNKNOWN",
        ),
        (
            "example.com/t/base/blobs/sha256:..%2F..%2Findex.json",
            400,
            "DIGEST_INVALID",
        ),
        // Dot segments never reach a file: the path no longer ends in blobs/<digest>.
        (
            "example.com/t/base/blobs/sha256:../../index.json",
            404,
            "NOT_FOUND",
        ),
        ("example.com/t/base/blobs/sha256:ABC", 400, "DIGEST_INVALID"),
        (
            "example.com/t/base/manifests/sha256:..%2F..%2Foci-layout",
            400,
            "DIGEST_INVALID",
        ),
        (
            "example.com/t/base/manifests/sha256:../../oci-layout",
            404,
            "NOT_FOUND",
        ),
        (
            &format!("../../../etc/blobs/{missing}"),
            400,
            "NAME_INVALID",
        ),
        (&format!("Example/blobs/{missing}"), 400, "NAME_INVALID"),
        ("example.com/t/nope/tags/list", 404, "NAME_UNKNOWN"),
        ("example.com/t/base/tags/all", 404, "NOT_FOUND"),
        ("_catalog", 404, "NOT_FOUND"),
    ] {
        let reply = curl(&[&v2(path)]);
        assert_eq!(reply.status, status, "{path}");
        assert_eq!(reply.error_code(), code, "{path}");
    }
    let tags = curl(&[&v2("example.com/t/base/tags/list")]);
    assert_eq!(tags.status, 200);
    let tags: serde_json::Value = serde_json::from_slice(&tags.body).unwrap();
    assert_eq!(
        tags,
        serde_json::json!({"name": "example.com/t/base", "tags": ["1"]})
    );

    let outside = curl(&[&format!("http://{host}/etc/passwd")]);
    assert_eq!(outside.status, 404);

    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let reply = curl(&["-X", method, &v2("example.com/t/base/manifests/1")]);
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        assert_eq!(reply.error_code(), "UNSUPPORTED");
    }
}

#[test]
fn only_the_layouts_blobs_are_served_and_links_are_never_followed() {
    let f = fixture();
    // A file outside the layout, linked in under its own digest, and a
    // file dropped in that no image of index.json uses.
    let secret = b"root:$6$secret:19000:0:99999:7:::\n";
    let outside = f.dir.path().join("shadow");
    std::fs::write(&outside, secret).unwrap();
    let linked = tele_bundle::digest::Digest::of_bytes(secret).to_string();
    std::os::unix::fs::symlink(&outside, blob_path(&f.layout, &linked)).unwrap();
    let stray = b"not in any image";
    let unlisted = tele_bundle::digest::Digest::of_bytes(stray).to_string();
    std::fs::write(blob_path(&f.layout, &unlisted), stray).unwrap();
    // A manifest of the layout replaced by a link: not followed either.
    let top = manifest_digest(&f.layout, HUB);
    let top_path = blob_path(&f.layout, &top);
    let real = f.dir.path().join("manifest.json");
    std::fs::rename(&top_path, &real).unwrap();
    std::os::unix::fs::symlink(&real, &top_path).unwrap();
    let registry = serve(&f.layout, None);
    let host = registry.addr();
    let v2 = |path: &str| format!("http://{host}/v2/{path}");
    for digest in [&linked, &unlisted] {
        let reply = curl(&[&v2(&format!("example.com/t/base/blobs/{digest}"))]);
        assert_eq!(reply.status, 404, "{digest}");
        assert_eq!(reply.error_code(), "BLOB_UNKNOWN");
        assert!(!reply.body.windows(6).any(|w| w == b"secret"));
    }
    let reply = curl(&[&v2(&format!("library/busy/manifests/{top}?ns=docker.io"))]);
    assert_eq!(reply.status, 404);
    // The image's own blobs are served.
    let config = manifest(&f.layout, BASE)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = curl(&[&v2(&format!("example.com/t/base/blobs/{config}"))]);
    assert_eq!(reply.status, 200);
}

#[test]
fn a_rewritten_index_is_picked_up_and_shutdown_frees_the_port() {
    let f = fixture();
    let registry = serve(&f.layout, None);
    let host = registry.addr();
    let url = format!("http://{host}/v2/example.com/t/late/manifests/1");
    assert_eq!(curl(&[&url]).status, 404);

    ImageFactory::new(f.dir.path()).app(
        "example.com/t/late:1",
        Some(BASE),
        &[("late.txt", b"late\n")],
    );
    let late = curl(&[&url]);
    assert_eq!(late.status, 200);
    assert_eq!(
        late.header("docker-content-digest"),
        Some(manifest_digest(&f.layout, "example.com/t/late:1").as_str())
    );

    registry.shutdown();
    assert!(
        std::net::TcpStream::connect(host).is_err(),
        "nothing listens on {host} after shutdown"
    );
}

#[test]
fn bad_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let error = start(RegistryConfig {
        layout: dir.path().to_path_buf(),
        listen,
        tls: None,
        client_ca: None,
        max_connections: DEFAULT_MAX_CONNECTIONS,
    })
    .unwrap_err();
    assert!(error.to_string().contains("index.json"), "{error}");

    fs::write(dir.path().join("index.json"), "{\"schemaVersion\":2}").unwrap();
    let error = start(RegistryConfig {
        layout: dir.path().to_path_buf(),
        listen,
        tls: None,
        client_ca: None,
        max_connections: DEFAULT_MAX_CONNECTIONS,
    })
    .unwrap_err();
    assert!(
        error.to_string().contains("not an OCI image index"),
        "{error}"
    );

    fs::write(dir.path().join("index.json"), "{\"manifests\":[]}").unwrap();
    fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    let error = start(RegistryConfig {
        layout: dir.path().to_path_buf(),
        listen,
        tls: Some(TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        }),
        client_ca: None,
        max_connections: DEFAULT_MAX_CONNECTIONS,
    })
    .unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = start(RegistryConfig {
        layout: dir.path().to_path_buf(),
        listen: taken.local_addr().unwrap(),
        tls: None,
        client_ca: None,
        max_connections: DEFAULT_MAX_CONNECTIONS,
    })
    .unwrap_err();
    assert!(error.to_string().contains("failed to listen"), "{error}");
}

#[test]
fn containerd_pulls_through_the_tls_mirror_without_rewriting() {
    let f = fixture();
    let pki = Pki::create(&f.dir.path().join("pki"));
    let registry = serve_for(
        &f.layout,
        Some(TlsFiles {
            cert: pki.cert.clone(),
            key: pki.key.clone(),
        }),
        Some(&pki.ca),
    );
    let mirror = format!("https://127.0.0.1:{}", registry.addr().port());

    // curl trusts it through the CA alone, no insecure flag; it is let in
    // with a client certificate of that CA, and only with one.
    let v2 = curl(&[
        "--cacert",
        pki.ca.to_str().unwrap(),
        "--cert",
        pki.client_cert.to_str().unwrap(),
        "--key",
        pki.client_key.to_str().unwrap(),
        &format!("{mirror}/v2/"),
    ]);
    assert_eq!(v2.status, 200);
    let anonymous = run(Command::new("curl")
        .args(["-s", "-m", "5", "--cacert"])
        .arg(&pki.ca)
        .arg(format!("{mirror}/v2/")));
    assert!(
        !anonymous.status.success(),
        "served a client without a certificate"
    );
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));

    // The node's own hosts.toml, as the installer writes it.
    let hosts = f.dir.path().join("hosts");
    for upstream in ["example.com", "docker.io"] {
        let dir = hosts.join(upstream);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("hosts.toml"),
            tele_installer::component::hosts_toml(upstream, &mirror, &pki.ca, client),
        )
        .unwrap();
    }

    let containerd = Containerd::start(f.dir.path());
    for reference in [APP, HUB] {
        ok(containerd
            .ctr()
            .args(["images", "pull", "--hosts-dir"])
            .arg(&hosts)
            .arg(reference));
    }
    let listed = stdout(&ok(containerd.ctr().args(["images", "ls"])));
    for reference in [APP, HUB] {
        let line = listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(reference))
            .unwrap_or_else(|| panic!("{reference} missing from containerd's images:\n{listed}"));
        assert_eq!(
            line.split_whitespace().nth(2),
            Some(manifest_digest(&f.layout, reference).as_str()),
            "{line}"
        );
    }
    // The content really arrived: the app's layer is in containerd's store.
    let app_layer = manifest(&f.layout, APP)["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let content = stdout(&ok(containerd.ctr().args(["content", "ls", "-q"])));
    assert!(
        content.lines().any(|l| l == app_layer),
        "{app_layer} not in containerd's content store:\n{content}"
    );

    // Without the CA containerd refuses the mirror: TLS is really checked.
    let untrusted = f.dir.path().join("untrusted");
    fs::create_dir_all(untrusted.join("example.com")).unwrap();
    fs::write(
        untrusted.join("example.com/hosts.toml"),
        format!(
            "server = \"https://127.0.0.1:1\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
    .unwrap();
    let refused = run(containerd
        .ctr()
        .args(["images", "pull", "--hosts-dir"])
        .arg(&untrusted)
        .arg(BASE));
    assert!(!refused.status.success(), "pulled from an untrusted mirror");
    assert!(
        support::stderr(&refused).contains("certificate"),
        "{}",
        support::stderr(&refused)
    );

    // An image the bundle lacks is never fetched from its own registry: a
    // listener in the upstream's place sees no connection. (The same pull
    // with the upstream as `server`, containerd's default, reaches it.)
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", upstream.local_addr().unwrap().port());
    upstream.set_nonblocking(true).unwrap();
    let reached = |hosts_toml: String| {
        let dir = f.dir.path().join(format!("fallback-{}", hosts_toml.len()));
        fs::create_dir_all(dir.join(&host)).unwrap();
        fs::write(dir.join(&host).join("hosts.toml"), hosts_toml).unwrap();
        let o = run(containerd
            .ctr()
            .args(["images", "pull", "--hosts-dir"])
            .arg(&dir)
            .arg(format!("{host}/t/app:2")));
        assert!(!o.status.success(), "pulled an image the bundle lacks");
        let mut connections = 0;
        while upstream.accept().is_ok() {
            connections += 1;
        }
        connections
    };
    assert_eq!(
        reached(tele_installer::component::hosts_toml(
            &host, &mirror, &pki.ca, client
        )),
        0,
        "containerd fell back to the upstream registry"
    );
    assert!(
        reached(format!(
            "server = \"https://{host}\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n  client = [[\"{}\", \"{}\"]]\n",
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        )) > 0,
        "the control case: with the upstream as server, containerd does try it"
    );
}

/// A throwaway CA and a serving certificate for 127.0.0.1 signed by it.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn create(dir: &Path) -> Pki {
        fs::create_dir_all(dir).unwrap();
        let p = |name: &str| dir.join(name);
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        ok(Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "2"])
            .args(ec)
            .args(["-subj", "/CN=tele-test-ca"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem")));
        ok(Command::new("openssl")
            .args(["req", "-nodes"])
            .args(ec)
            .args(["-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")));
        fs::write(
            p("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
        )
        .unwrap();
        fs::write(
            p("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        ok(Command::new("openssl")
            .args(["req", "-nodes"])
            .args(ec)
            .args(["-subj", "/CN=tele-test-client"])
            .arg("-keyout")
            .arg(p("client.key"))
            .arg("-out")
            .arg(p("client.csr")));
        for (name, serial) in [("server", "2"), ("client", "3")] {
            ok(Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-set_serial", serial])
                .arg("-in")
                .arg(p(&format!("{name}.csr")))
                .arg("-CA")
                .arg(p("ca.pem"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-extfile")
                .arg(p(&format!("{name}.ext")))
                .arg("-out")
                .arg(p(&format!("{name}.pem"))));
        }
        Pki {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
        }
    }
}

/// `tele registry serve` as the node runs it (TLS, client certificates of
/// the cluster CA required) under a flood of 2,000 clients that connect and
/// send nothing: its memory stays under 100 MB, the node's containerd (its
/// client certificate) is still served, and a client without one is not.
#[test]
fn a_flood_of_idle_clients_is_bounded_and_only_the_nodes_client_is_served() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let f = fixture();
    let pki = support::loopback_pki(&f.dir.path().join("pki"), "https://127.0.0.1:6443");
    let port = support::free_port();
    let server = support::tele()
        .args(["registry", "serve", "--layout"])
        .arg(&f.layout)
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg("--tls-cert")
        .arg(pki.cert("registry"))
        .arg("--tls-key")
        .arg(pki.key("registry"))
        .arg("--client-ca")
        .arg(pki.ca_cert())
        .spawn()
        .unwrap();
    let pid = server.id();
    let _server = support::KillOnDrop(server);
    support::wait_for_port(&format!("127.0.0.1:{port}"));
    let url = format!("https://127.0.0.1:{port}/v2/");
    let get = |with_cert: bool| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5"])
            .args(["--retry", "30", "--retry-delay", "1", "--retry-all-errors"])
            .arg("--cacert")
            .arg(pki.ca_cert());
        if with_cert {
            c.arg("--cert")
                .arg(pki.cert("registry-client"))
                .arg("--key")
                .arg(pki.key("registry-client"));
        } else {
            c.args(["--retry", "0"]);
        }
        run(c.arg(&url))
    };
    assert_eq!(stdout(&get(true)), "200");

    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(8192), hard).unwrap();
    let idle: Vec<std::net::TcpStream> = (0..2000)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(idle.len() >= 1900, "only {} connections made", idle.len());
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let peak = kb("VmHWM:");
    assert!(
        peak < 100 * 1024,
        "the registry took {peak} kB under the flood"
    );
    // The node's client gets in (retrying while the idle ones time out).
    assert_eq!(stdout(&get(true)), "200");
    let anonymous = get(false);
    assert_ne!(
        stdout(&anonymous),
        "200",
        "served a client without a certificate"
    );
    drop(idle);

    // 2,000 of its own clients, each asking for the biggest blob and never
    // reading the answer.
    let biggest = fs::read_dir(f.layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let mut stallers = Command::new("python3")
        .arg("-c")
        .arg(STALLED_DOWNLOADS)
        .arg(port.to_string())
        .arg(pki.ca_cert())
        .arg(pki.cert("registry-client"))
        .arg(pki.key("registry-client"))
        .arg(format!("/v2/t/base/blobs/sha256:{biggest}?ns=example.com"))
        .arg("2000")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut held = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(stallers.stdout.as_mut().unwrap()),
        &mut held,
    )
    .unwrap();
    let held: usize = held.trim().parse().unwrap();
    assert!(held > 50, "only {held} downloads were started");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    let _ = stallers.kill();
    let _ = stallers.wait();
    assert!(
        peak < 100 * 1024,
        "{held} stalled downloads took the registry to {peak} kB"
    );
}

/// Opens N TLS connections with a client certificate, sends a GET for PATH
/// on each and never reads; prints how many got that far, then waits.
/// Arguments: PORT CA CERT KEY PATH N.
const STALLED_DOWNLOADS: &str = r#"
import socket, ssl, sys
port, ca, cert, key, path, n = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
held = []
for _ in range(int(n)):
    try:
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        t.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
        held.append(t)
    except (OSError, ssl.SSLError):
        pass
print(len(held), flush=True)
sys.stdin.read()
"#;
