//! Hostile input, generated here (no committed binaries): crafted tarballs
//! and directories for `tele verify` and `tele inspect`, crafted manifests
//! for `tele images`, a crafted installer for `tele build`. Each case
//! asserts the exit code, the message, that the command's peak memory
//! stayed under 200 MB (GNU time's maximum resident set), and that it wrote
//! nothing: the work directory holds what it held before.

mod support;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

const MAX_RSS_MB: u64 = 200;

/// A tar entry: its name (written as is), kind and content.
type Entry<'a> = (&'a str, tar::EntryType, &'a [u8]);

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    rss_mb: u64,
}

/// Every path under `dir`.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

/// `tele ARGS` in `work`, measured by GNU time; nothing may appear in or
/// vanish from `work`.
fn tele_in(work: &Path, args: &[&str]) -> Outcome {
    tele_with(work, args, &[])
}

/// [`tele_in`] with more environment.
fn tele_with(work: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let rss = std::env::temp_dir().join(format!("tele-hostile-rss-{}-{n}", std::process::id()));
    let before = tree(work);
    let o = run(Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(env!("CARGO_BIN_EXE_tele"))
        .args(args)
        .current_dir(work)
        .env("HOME", work)
        .env("NO_COLOR", "1")
        .env("TELE_NO_RUNTIME", "true")
        .env("TELE_NO_MONITORING", "true")
        .envs(env.iter().copied()));
    let kb: u64 = fs::read_to_string(&rss)
        .unwrap_or_default()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("GNU time's report (apt-get install time)");
    let _ = fs::remove_file(&rss);
    assert_eq!(
        tree(work),
        before,
        "tele {args:?} changed its work directory"
    );
    Outcome {
        code: o.status.code(),
        stdout: stdout(&o),
        stderr: stderr(&o),
        rss_mb: kb / 1024,
    }
}

/// Asserts a refusal: exit 1, `want` in the message, bounded memory.
fn refused(o: &Outcome, what: &str, want: &str) {
    assert_eq!(o.code, Some(1), "{what}: {}\n{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains(want),
        "{what}: wanted {want:?} in\n{}",
        o.stderr
    );
    assert!(o.rss_mb < MAX_RSS_MB, "{what}: {} MB", o.rss_mb);
}

/// A tar header for `name` (written as is) of `kind` and `size`.
fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
        h.set_link_name("/etc/shadow").unwrap();
    }
    h.set_cksum();
    h
}

/// A plain tarball of `entries` (name, kind, content).
fn tarball(path: &Path, entries: &[Entry]) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    for (name, kind, data) in entries {
        b.append(&header(name, *kind, data.len() as u64), *data)
            .unwrap();
    }
    b.into_inner().unwrap();
}

const META: &[u8] = br#"{"apiVersion":"bundle.tele.dev/v1","name":"shop","version":"1.0.0","teleVersion":"0.1.0","installer":{"linkage":"static"},"images":[],"blobs":[],"files":[]}"#;

#[test]
fn crafted_tarballs_are_refused_with_bounded_memory() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let top: Entry = ("shop-1.0.0/", Directory, b"");
    let meta: Entry = ("shop-1.0.0/bundle.json", Regular, META);
    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        (
            "zip-slip",
            vec![top, meta, ("shop-1.0.0/../../escaped", Regular, b"x")],
            "`..` component",
        ),
        (
            "absolute path",
            vec![top, meta, ("/etc/cron.d/evil", Regular, b"x")],
            "is an absolute path",
        ),
        (
            "symlink escape",
            vec![
                top,
                meta,
                ("shop-1.0.0/images/blobs/sha256/aa", Symlink, b""),
            ],
            "is a symbolic link",
        ),
        (
            "hard-link escape",
            vec![top, meta, ("shop-1.0.0/install", Link, b"")],
            "is a hard link",
        ),
        (
            "duplicate entry",
            vec![top, meta, ("shop-1.0.0/bundle.json", Regular, b"{}")],
            "appears twice",
        ),
        (
            "second top directory",
            vec![top, meta, ("other/install", Regular, b"x")],
            "outside the bundle's top directory",
        ),
    ];
    for (what, entries, want) in cases {
        let path = work.join("b.tar");
        tarball(&path, &entries);
        for cmd in ["verify", "inspect"] {
            refused(
                &tele_in(&work, &[cmd, "b.tar"]),
                &format!("{cmd} {what}"),
                want,
            );
        }
        fs::remove_file(&path).unwrap();
    }
    assert!(!t.path().join("escaped").exists());

    // A truncated tarball.
    let path = work.join("b.tar");
    tarball(
        &path,
        &[top, meta, ("shop-1.0.0/app.yaml", Regular, &[b'a'; 4096])],
    );
    let len = fs::metadata(&path).unwrap().len();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let o = tele_in(&work, &["verify", "b.tar"]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.rss_mb < MAX_RSS_MB);
    fs::remove_file(&path).unwrap();

    // Decompression bombs: a few MB at most that would grow to 1 GiB.
    let bomb = |path: &Path, gzip: bool| {
        let out: Box<dyn Write> = if gzip {
            Box::new(flate2::write::GzEncoder::new(
                File::create(path).unwrap(),
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(
                zstd::Encoder::new(File::create(path).unwrap(), 3)
                    .unwrap()
                    .auto_finish(),
            )
        };
        let mut b = tar::Builder::new(out);
        b.append(&header("shop-1.0.0/", Directory, 0), io::empty())
            .unwrap();
        b.append(
            &header("shop-1.0.0/runtime/bin/kubelet", Regular, 1 << 30),
            io::repeat(b' ').take(1 << 30),
        )
        .unwrap();
        b.into_inner().unwrap().flush().unwrap();
    };
    for (name, gzip) in [("bomb.tar.zst", false), ("bomb.tar.gz", true)] {
        let path = work.join(name);
        bomb(&path, gzip);
        assert!(fs::metadata(&path).unwrap().len() < 8 << 20);
        for cmd in ["verify", "inspect"] {
            refused(
                &tele_in(&work, &[cmd, name]),
                &format!("{cmd} {name}"),
                "a decompression bomb",
            );
        }
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn crafted_directories_and_metadata_are_refused_or_shown_safely() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    let dir = work.join("shop-1.0.0");
    fs::create_dir_all(&dir).unwrap();
    // A sparse bundle.json of 1 GiB.
    let f = File::create(dir.join("bundle.json")).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    refused(
        &tele_in(&work, &["verify", "shop-1.0.0"]),
        "sparse bundle.json",
        "larger than 16 MiB",
    );

    // bundle.json with terminal escapes, a line break and sizes that would
    // wrap around when added up.
    let meta = serde_json::json!({
        "apiVersion": "bundle.tele.dev/v1", "name": "shop", "version": "1.0.0",
        "description": "\u{1b}]0;owned\u{7}\u{1b}[2J\nname:        bank-app",
        "teleVersion": "0.1.0", "installer": {"linkage": "static"},
        "images": [
            {"reference": "example.com/a:1", "digest": format!("sha256:{}", "a".repeat(64)), "mediaType": "application/vnd.oci.image.manifest.v1+json", "platform": {"os": "linux", "architecture": "amd64"}, "size": u64::MAX, "blobs": []},
            {"reference": "example.com/b:1", "digest": format!("sha256:{}", "b".repeat(64)), "mediaType": "application/vnd.oci.image.manifest.v1+json", "platform": {"os": "linux", "architecture": "amd64"}, "size": u64::MAX, "blobs": []},
        ],
        "blobs": [], "files": [],
    });
    let path = work.join("b.tar");
    tarball(
        &path,
        &[
            ("shop-1.0.0/", tar::EntryType::Directory, b""),
            (
                "shop-1.0.0/bundle.json",
                tar::EntryType::Regular,
                &serde_json::to_vec(&meta).unwrap(),
            ),
        ],
    );
    let o = tele_in(&work, &["inspect", "b.tar"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.stdout.contains('\u{1b}'), "{}", o.stdout);
    assert!(
        o.stdout
            .contains("description: \\u{1b}]0;owned\\u{7}\\u{1b}[2J\\nname:        bank-app"),
        "{}",
        o.stdout
    );
    assert_eq!(
        o.stdout.matches("\nname:").count() + usize::from(o.stdout.starts_with("name:")),
        1
    );
    assert!(
        o.stdout.contains("saved by sharing: unknown"),
        "{}",
        o.stdout
    );
    assert!(o.rss_mb < MAX_RSS_MB);
}

#[test]
fn crafted_manifests_are_errors_not_crashes() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let head = "apiVersion: bundle.gravitational.io/v2\nkind: Bundle\nmetadata:\n  name: shop\n  resourceVersion: 1.0.0\n";
    // Billion laughs in app.yaml.
    let mut laughs = format!("{head}x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let p = i - 1;
        laughs.push_str(&format!(
            "x{i}: &x{i} [*x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}]\n"
        ));
    }
    fs::write(work.join("app.yaml"), &laughs).unwrap();
    refused(
        &tele_in(&work, &["images", "app.yaml"]),
        "billion laughs",
        "app.yaml:",
    );
    let o = tele_in(&work, &["images", "app.yaml"]);
    assert!(
        o.stderr.contains("aliases expand to more than"),
        "{}",
        o.stderr
    );
    // Aliases of a large string in a resource beside it.
    fs::write(work.join("app.yaml"), head).unwrap();
    let mut big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata:\n  a: &s {}\n  b: [",
        "x".repeat(160_000)
    );
    for _ in 0..1000 {
        big.push_str("*s, ");
    }
    big.push_str("*s]\n");
    fs::write(work.join("big.yaml"), &big).unwrap();
    refused(
        &tele_in(&work, &["images", "app.yaml"]),
        "alias of a large string",
        "MiB of text",
    );
    fs::remove_file(work.join("big.yaml")).unwrap();
    // 20,000 nested sequences.
    fs::write(work.join("deep.yaml"), "- ".repeat(20_000) + "x\n").unwrap();
    refused(
        &tele_in(&work, &["images", "app.yaml"]),
        "deep nesting",
        "nests deeper than 100 levels",
    );
    fs::remove_file(work.join("deep.yaml")).unwrap();
    // Invalid UTF-8, and a number too large for any field.
    fs::write(
        work.join("bad.yaml"),
        b"apiVersion: v1\nkind: ConfigMap\ndata: {a: \xff\xfe}\n",
    )
    .unwrap();
    refused(
        &tele_in(&work, &["images", "app.yaml"]),
        "invalid UTF-8",
        "not valid UTF-8",
    );
    fs::remove_file(work.join("bad.yaml")).unwrap();
    fs::write(
        work.join("app.yaml"),
        format!("{head}nodeProfiles:\n  - name: n\n    requirements:\n      cpu: {{min: 99999999999999999999999999999}}\n"),
    )
    .unwrap();
    let o = tele_in(&work, &["images", "app.yaml"]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("app.yaml:9:"), "{}", o.stderr);
}

#[test]
fn a_crafted_installer_is_named_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let f = ImageFactory::new(&t.path().join("images"));
    f.base("example.com/test/base:1");
    let manifest = write_app(
        &t.path().join("app"),
        "shop",
        &["example.com/test/base:1"],
        &[],
    );
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[32..40].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
    elf[54..58].copy_from_slice(&[0xff; 4]);
    fs::write(t.path().join("installer"), &elf).unwrap();
    let o = run(tele()
        .arg("build")
        .arg(&manifest)
        .arg(format!("--image-source=oci:{}", f.layout.display()))
        .arg("--installer")
        .arg(t.path().join("installer"))
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .arg("-o")
        .arg(t.path().join("b.tar")));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not statically linked"),
        "{}",
        stderr(&o)
    );
}

/// The lying registry of tests/support/hostile_registry.py, stopped on drop.
struct HostileRegistry(std::process::Child, String);

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hostile_registry() -> HostileRegistry {
    hostile_registry_on(free_port(), &[])
}

fn hostile_registry_on(port: u16, options: &[&str]) -> HostileRegistry {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/hostile_registry.py");
    let child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .args(options)
        .spawn()
        .expect("python3 runs the hostile registry");
    let host = format!("127.0.0.1:{port}");
    wait_for_port(&host);
    HostileRegistry(child, host)
}

#[test]
fn a_registry_that_lies_or_stalls_is_given_up_on_with_bounded_memory() {
    let registry = hostile_registry();
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let cache = t.path().join("cache");
    let cache = cache.to_str().unwrap();
    for (mode, want) in [
        (
            "oversize",
            "more than the 100 bytes its descriptor declares",
        ),
        ("stall", "the registry stalled"),
        ("huge", "more than the 4 MiB any image manifest takes"),
        ("garbage", "evil/garbage"),
        ("trickle", "did not arrive within 3 s"),
        (
            "vast",
            "more than the 4 MiB any image manifest takes; stopped reading there",
        ),
        ("noisy", "the registry answered HTTP 500: aaaa"),
        ("noisyblob", "the registry answered HTTP 500: aaaa"),
    ] {
        let dir = t.path().join(format!("app-{mode}"));
        let manifest = write_app(
            &dir,
            "shop",
            &[&format!("{}/evil/{mode}:1", registry.1)],
            &[],
        );
        let out = t.path().join(format!("{mode}.tar"));
        let o = tele_with(
            &work,
            &[
                "build",
                manifest.to_str().unwrap(),
                "--cache-dir",
                cache,
                "-o",
                out.to_str().unwrap(),
            ],
            &[
                ("TELE_REGISTRY_STALL_SECONDS", "2"),
                ("TELE_REGISTRY_DEADLINE_SECONDS", "3"),
            ],
        );
        assert_eq!(o.code, Some(2), "{mode}: {}", o.stderr);
        assert!(
            o.stderr.contains(want),
            "{mode}: wanted {want:?} in\n{}",
            o.stderr
        );
        assert!(o.rss_mb < MAX_RSS_MB, "{mode}: {} MB", o.rss_mb);
        assert!(!out.exists(), "{mode}: a bundle was written");
    }
}

#[test]
fn an_image_of_another_platform_is_refused_at_build_time() {
    let registry = hostile_registry();
    let t = tempfile::tempdir().unwrap();
    let manifest = write_app(
        &t.path().join("app"),
        "shop",
        &[&format!("{}/fine/app:1", registry.1)],
        &[],
    );
    let build = |platform: &str| {
        run(tele()
            .arg("build")
            .arg(&manifest)
            .args(["--platform", platform, "--cache-dir"])
            .arg(t.path().join("cache"))
            .arg("-o")
            .arg(t.path().join(format!("{}.tar", platform.replace('/', "-")))))
    };
    let o = build("linux/arm64");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fine/app:1 is an image for linux/amd64, not for linux/arm64"),
        "{}",
        stderr(&o)
    );
    assert!(!t.path().join("linux-arm64.tar").exists());
    let o = build("linux/amd64");
    assert!(o.status.success(), "{}", stderr(&o));
}

/// An address of this machine that is not loopback: to tele, another host
/// (the test servers listen on every address).
fn other_address() -> String {
    let o = ok(Command::new("hostname").arg("-I"));
    stdout(&o)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .unwrap_or_else(|| {
            panic!(
                "no non-loopback IPv4 address on this machine: {}",
                stdout(&o)
            )
        })
        .to_string()
}

/// Credentials go to the registry itself and to a token service over HTTPS
/// or on this machine, never to one over plain HTTP elsewhere; a blob
/// redirected to another host is fetched without them.
#[test]
fn credentials_go_only_to_the_registry_and_a_token_service_it_may_name() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let other = other_address();
    let build = |port: u16, image: &str, name: &str| {
        let docker = t.path().join(format!("docker-{name}"));
        fs::create_dir_all(&docker).unwrap();
        // "user:secret", base64 as docker login writes it.
        let config = format!(r#"{{"auths":{{"127.0.0.1:{port}":{{"auth":"dXNlcjpzZWNyZXQ="}}}}}}"#);
        fs::write(docker.join("config.json"), config).unwrap();
        let manifest = write_app(
            &t.path().join(format!("app-{name}")),
            "shop",
            &[&format!("127.0.0.1:{port}/{image}:1")],
            &[],
        );
        let out = t.path().join(format!("{name}.tar"));
        let o = tele_with(
            &work,
            &[
                "build",
                manifest.to_str().unwrap(),
                "--cache-dir",
                t.path().join(format!("cache-{name}")).to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            &[("DOCKER_CONFIG", docker.to_str().unwrap())],
        );
        (o, out)
    };
    let requests = |log: &Path| fs::read_to_string(log).unwrap_or_default();

    // A token service over plain HTTP on another host: refused before anything is sent.
    let port = free_port();
    let log = t.path().join("plain.log");
    let _registry = hostile_registry_on(
        port,
        &[
            "--realm",
            &format!("http://{other}:{port}/token"),
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let (o, out) = build(port, "fine/app", "plain");
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("127.0.0.1:{port} asks for your credentials, but its token service http://{other} is not reached over HTTPS")),
        "{}",
        o.stderr
    );
    assert!(
        !o.stderr.contains("secret") && !o.stderr.contains("dXNlcjpzZWNyZXQ"),
        "{}",
        o.stderr
    );
    assert!(
        !requests(&log).contains("/token"),
        "credentials sent:\n{}",
        requests(&log)
    );
    assert!(!out.exists());

    // On this machine, the token service gets them; a blob redirected to
    // another host is fetched there without any credentials.
    let port = free_port();
    let log = t.path().join("local.log");
    let _registry = hostile_registry_on(
        port,
        &[
            "--realm",
            &format!("http://127.0.0.1:{port}/token"),
            "--other-host",
            &other,
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let (o, out) = build(port, "evil/redirect", "local");
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(out.is_file());
    let seen = requests(&log);
    assert!(seen.contains("/token Basic\n"), "{seen}");
    assert!(
        seen.contains("/blobs/sha256:") && seen.contains(" Bearer\n"),
        "{seen}"
    );
    let elsewhere: Vec<&str> = seen
        .lines()
        .filter(|l| l.starts_with("/elsewhere/"))
        .collect();
    assert!(!elsewhere.is_empty(), "{seen}");
    assert!(
        elsewhere.iter().all(|l| l.ends_with(" -")),
        "credentials followed the redirect:\n{seen}"
    );

    // A token service that answers without end: read with a bound.
    let port = free_port();
    let _registry = hostile_registry_on(
        port,
        &["--realm", &format!("http://127.0.0.1:{port}/token-vast")],
    );
    let (o, out) = build(port, "fine/app", "vast-token");
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("its token service sent more than the 64 KiB a token takes"),
        "{}",
        o.stderr
    );
    assert!(o.rss_mb < MAX_RSS_MB, "{} MB", o.rss_mb);
    assert!(!out.exists());

    // A registry whose first challenge names a token service on this
    // machine, and whose next one, once it has a token, names one over
    // plain HTTP elsewhere: the credentials do not follow.
    let port = free_port();
    let log = t.path().join("switch.log");
    let _registry = hostile_registry_on(
        port,
        &[
            "--realm",
            &format!("http://127.0.0.1:{port}/token"),
            "--switch-realm",
            &format!("http://{other}:{port}/token-switched"),
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let (o, out) = build(port, "fine/app", "switch");
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("127.0.0.1:{port} asks for your credentials, but its token service http://{other} is not reached over HTTPS")),
        "{}",
        o.stderr
    );
    let seen = requests(&log);
    assert!(seen.contains("/token Basic\n"), "{seen}");
    assert!(
        !seen.contains("/token-switched"),
        "credentials sent:\n{seen}"
    );
    assert!(!out.exists());
}
