//! Where images come from: docker archives and OCI layouts offline, registries
//! with basic auth from the docker config or a credential helper, and
//! multi-platform indexes.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::*;

fn bundle_meta(tarball: &Path, dir: &Path) -> serde_json::Value {
    let bundle = extract(tarball, dir);
    serde_json::from_slice(&fs::read(bundle.join("bundle.json")).unwrap()).unwrap()
}

fn sha256_hex(p: &Path) -> String {
    stdout(&ok(Command::new("sha256sum").arg(p)))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A `docker save` archive in the classic layout (manifest.json, config, layer.tar).
fn docker_archive(dir: &Path, repo_tag: &str) -> std::path::PathBuf {
    let root = dir.join("archive-src");
    let layer_src = dir.join("layer-src");
    fs::create_dir_all(layer_src.join("etc")).unwrap();
    fs::write(layer_src.join("etc/motd"), "saved by docker\n").unwrap();
    fs::create_dir_all(root.join("abc123")).unwrap();
    let layer = root.join("abc123/layer.tar");
    ok(Command::new("tar")
        .arg("cf")
        .arg(&layer)
        .arg("-C")
        .arg(&layer_src)
        .arg("etc"));
    let diff_id = sha256_hex(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#
    );
    fs::write(root.join("cfg.json"), &config).unwrap();
    fs::write(
        root.join("manifest.json"),
        format!(
            r#"[{{"Config":"cfg.json","RepoTags":["{repo_tag}"],"Layers":["abc123/layer.tar"]}}]"#
        ),
    )
    .unwrap();
    let archive = dir.join("saved.tar");
    ok(Command::new("tar")
        .arg("cf")
        .arg(&archive)
        .arg("-C")
        .arg(&root)
        .args(["manifest.json", "cfg.json", "abc123"]));
    archive
}

#[test]
fn offline_build_from_a_docker_archive_and_an_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let archive = docker_archive(dir.path(), "legacy/tool:2");
    let f = ImageFactory::new(dir.path());
    f.base("example.com/t/base:1");
    let manifest = write_app(
        &dir.path().join("app"),
        "offline",
        &["legacy/tool:2"],
        &[("web.yaml", &deployment("web", "example.com/t/base:1"))],
    );
    let out = dir.path().join("offline.tar");
    // No registry exists: every image must come from the local sources.
    let o = ok(tele()
        .args(["--output-format", "json", "build"])
        .arg(&manifest)
        .arg("-o")
        .arg(&out)
        .arg("--cache-dir")
        .arg(dir.path().join("c"))
        .arg(format!(
            "--image-source=docker-archive:{}",
            archive.display()
        ))
        .arg(format!("--image-source=oci:{}", f.layout.display())));
    let summary = json(&o);
    let sources: Vec<String> = summary["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap().to_string())
        .collect();
    assert!(
        sources.iter().any(|s| s.starts_with("docker-archive:"))
            && sources.iter().any(|s| s.starts_with("oci:")),
        "{sources:?}"
    );
    let bundle = extract(&out, &dir.path().join("x"));
    let o = ok(Command::new("skopeo").arg("inspect").arg(format!(
        "oci:{}:docker.io/legacy/tool:2",
        bundle.join("images").display()
    )));
    let inspected: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);
    ok(tele().arg("verify").arg(&out));
}

#[test]
fn registry_credentials_come_from_docker_config_or_a_credential_helper() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFactory::new(dir.path());
    f.base("example.com/t/base:1");
    let registry = Registry::start_with_user("alice", "s3cret");
    let r = registry.push(
        &f.layout,
        "example.com/t/base:1",
        "private/base:1",
        Some("alice:s3cret"),
    );
    let manifest = write_app(&dir.path().join("app"), "private", &[&r], &[]);
    let build = |docker_config: &Path, path: &str| {
        run(tele()
            .env("DOCKER_CONFIG", docker_config)
            .env("PATH", path)
            .arg("build")
            .arg(&manifest)
            .arg("-o")
            .arg(dir.path().join("p.tar"))
            .arg("--cache-dir")
            .arg(dir.path().join("c")))
    };
    let path = std::env::var("PATH").unwrap();

    // No credentials: refused, with a hint to log in.
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let o = build(&empty, &path);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("log in"), "{}", stderr(&o));

    // Basic auth from config.json.
    let with_auth = dir.path().join("auth");
    fs::create_dir_all(&with_auth).unwrap();
    // base64("alice:s3cret")
    fs::write(
        with_auth.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            registry.host
        ),
    )
    .unwrap();
    let o = build(&with_auth, &path);
    assert!(o.status.success(), "{}", stderr(&o));
    fs::remove_file(dir.path().join("p.tar")).unwrap();

    // A credential helper named in credHelpers.
    let helper_dir = dir.path().join("bin");
    fs::create_dir_all(&helper_dir).unwrap();
    let helper = helper_dir.join("docker-credential-teletest");
    fs::write(&helper, "#!/bin/sh\nread server\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret\"}' \"$server\"\n").unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let with_helper = dir.path().join("helper");
    fs::create_dir_all(&with_helper).unwrap();
    fs::write(
        with_helper.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"teletest"}}}}"#, registry.host),
    )
    .unwrap();
    let o = build(&with_helper, &format!("{}:{path}", helper_dir.display()));
    assert!(o.status.success(), "{}", stderr(&o));
    // The password never reaches the bundle.
    let bytes = fs::read(dir.path().join("p.tar")).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"s3cret"),
        "credentials written into the bundle"
    );
}

#[test]
fn bearer_tokens_are_fetched_with_the_docker_config_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFactory::new(dir.path());
    f.base("example.com/t/base:1");
    let registry = Registry::start_with_token_auth("alice", "s3cret");
    let r = registry.push(
        &f.layout,
        "example.com/t/base:1",
        "tok/base:1",
        Some("alice:s3cret"),
    );
    let manifest = write_app(&dir.path().join("app"), "token", &[&r], &[]);
    let config = dir.path().join("docker");
    fs::create_dir_all(&config).unwrap();
    let build = |docker_config: &Path, out: &str| {
        run(tele()
            .env("DOCKER_CONFIG", docker_config)
            .arg("build")
            .arg(&manifest)
            .arg("-o")
            .arg(dir.path().join(out))
            .arg("--cache-dir")
            .arg(dir.path().join("c")))
    };
    // An anonymous token grants nothing on this private repository.
    let o = build(&config, "anon.tar");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("log in"), "{}", stderr(&o));
    fs::write(
        config.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            registry.host
        ),
    )
    .unwrap();
    let o = build(&config, "tok.tar");
    assert!(o.status.success(), "{}", stderr(&o));
    ok(tele().arg("verify").arg(dir.path().join("tok.tar")));
}

#[test]
fn multi_platform_index_resolves_to_the_requested_platform() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFactory::new(dir.path());
    let src = dir.path().join("src");
    let mut digests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let root = src.join(arch);
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("arch"), arch).unwrap();
        f.build(
            &root,
            &format!("example.com/t/multi:{arch}"),
            None,
            &["--platform", &format!("linux/{arch}")],
        );
    }
    // An index over both platform manifests, added to the layout by hand.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(f.layout.join("index.json")).unwrap()).unwrap();
    let mut children = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        digests.push(m["digest"].as_str().unwrap().to_string());
        children.push(serde_json::json!({"mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"], "platform": m["platform"]}));
    }
    let multi = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children})).unwrap();
    let blob = f.layout.join("blobs/sha256/tmp");
    fs::write(&blob, &multi).unwrap();
    let hex = sha256_hex(&blob);
    fs::rename(&blob, f.layout.join("blobs/sha256").join(&hex)).unwrap();
    let mut index = index;
    index["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{hex}"), "size": multi.len(),
        "annotations": {"org.opencontainers.image.ref.name": "example.com/t/multi:1"}
    }));
    fs::write(
        f.layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let registry = Registry::start();
    let dest = format!("{}/t/multi:1", registry.host);
    ok(Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:example.com/t/multi:1", f.layout.display()))
        .arg(format!("docker://{dest}")));

    let manifest = write_app(&dir.path().join("app"), "multi", &[&dest], &[]);
    let build = |platform: &str, out: &str| {
        run(tele()
            .arg("build")
            .arg(&manifest)
            .arg("-o")
            .arg(dir.path().join(out))
            .arg("--cache-dir")
            .arg(dir.path().join("c"))
            .args(["--platform", platform]))
    };
    let o = build("linux/arm64", "arm.tar");
    assert!(o.status.success(), "{}", stderr(&o));
    let meta = bundle_meta(&dir.path().join("arm.tar"), &dir.path().join("xa"));
    assert_eq!(meta["images"][0]["platform"]["architecture"], "arm64");
    assert_eq!(meta["images"][0]["digest"], digests[1].as_str());

    let o = build("linux/amd64", "amd.tar");
    assert!(o.status.success(), "{}", stderr(&o));
    let meta = bundle_meta(&dir.path().join("amd.tar"), &dir.path().join("xb"));
    assert_eq!(meta["images"][0]["digest"], digests[0].as_str());

    let o = build("linux/s390x", "none.tar");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("linux/amd64, linux/arm64"),
        "{}",
        stderr(&o)
    );

    // Pinned to the index digest: the index itself is what the layout names.
    let pinned = format!("{}/t/multi@sha256:{hex}", registry.host);
    let manifest = write_app(&dir.path().join("app2"), "pinned", &[&pinned], &[]);
    let out = dir.path().join("pinned.tar");
    ok(tele()
        .arg("build")
        .arg(&manifest)
        .arg("-o")
        .arg(&out)
        .arg("--cache-dir")
        .arg(dir.path().join("c")));
    let bundle = extract(&out, &dir.path().join("xp"));
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(meta["images"][0]["digest"], format!("sha256:{hex}"));
    ok(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{pinned}", bundle.join("images").display())));
    ok(tele().arg("verify").arg(&bundle));
}

/// A test host in a network namespace of its own, with a veth pair to this
/// machine; removed on drop.
struct NetnsHost {
    name: String,
    host_if: String,
    /// The namespace's address.
    ip: String,
}

impl NetnsHost {
    fn create() -> NetnsHost {
        let id = std::process::id() % 10000;
        let name = format!("tele-t{id}");
        let host_if = format!("tt{id}h");
        let ns_if = format!("tt{id}n");
        let (net, host_ip, ns_ip) = (format!("10.213.{}.", id % 250), "1", "2");
        let h = NetnsHost {
            name: name.clone(),
            host_if: host_if.clone(),
            ip: format!("{net}{ns_ip}"),
        };
        let ip = |args: &[&str]| ok(Command::new("ip").args(args));
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&[
            "addr",
            "add",
            &format!("{net}{host_ip}/24"),
            "dev",
            &host_if,
        ]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{net}{ns_ip}/24"),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        h
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

#[test]
fn plain_http_only_for_loopback_and_insecure_registries() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFactory::new(dir.path());
    f.base("example.com/t/base:1");
    let host = NetnsHost::create();
    // A registry on the test host's own address, plain HTTP.
    let addr = format!("{}:5000", host.ip);
    let config = dir.path().join("registry.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let registry = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", host.name))
        .arg("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _kill = support::KillOnDrop(registry);
    wait_for_port(&addr);
    let r = format!("{addr}/t/base:1");
    ok(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:example.com/t/base:1", f.layout.display()))
        .arg(format!("docker://{r}")));
    let manifest = write_app(&dir.path().join("app"), "insecure", &[&r], &[]);
    let build = |extra: &[&str]| {
        run(tele()
            .arg("build")
            .arg(&manifest)
            .arg("-o")
            .arg(dir.path().join("i.tar"))
            .arg("--cache-dir")
            .arg(dir.path().join("c"))
            .args(extra))
    };
    // Not loopback: HTTPS is required unless the registry is named insecure.
    let o = build(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("--insecure-registry {addr}")),
        "{}",
        stderr(&o)
    );
    let o = build(&["--insecure-registry", &addr]);
    assert!(o.status.success(), "{}", stderr(&o));
    ok(tele().arg("verify").arg(dir.path().join("i.tar")));
}
