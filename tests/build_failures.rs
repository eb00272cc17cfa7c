//! What users see when something is wrong: exit codes, FILE:LINE:COLUMN
//! errors with hints, and no bundle left behind.

mod support;

use std::fs;
use std::process::Command;

use support::*;

fn no_partial_files(dir: &std::path::Path) {
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter()
            .all(|n| !n.ends_with(".tar") && !n.contains(".partial-")),
        "left behind: {left:?}"
    );
}

#[test]
fn bad_manifest_is_reported_at_file_line_column_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    fs::create_dir_all(&app).unwrap();
    fs::write(
        app.join("app.yaml"),
        "apiVersion: bundle.gravitational.io/v2\nkind: Bundle\nmetadata:\n  name: shop\n  resourceVersion: \"1.0\"\n  descripton: typo\nnodeProfiles:\n  - name: node\n    requirements:\n      ram:\n        min: lots\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let o = run(tele()
        .current_dir(dir.path())
        .args(["build", "app/app.yaml", "-o", "out/shop.tar", "--cache-dir"])
        .arg(dir.path().join("c")));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("app/app.yaml:5:20:"),
        "resourceVersion position:\n{err}"
    );
    assert!(
        err.contains("app/app.yaml:6:3:")
            && err.contains("descripton")
            && err.contains("description"),
        "unknown field with suggestion:\n{err}"
    );
    assert!(
        err.contains("app/app.yaml:11:14:") && err.contains("lots"),
        "bad quantity:\n{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    no_partial_files(&out);

    // A YAML syntax error.
    fs::write(
        app.join("app.yaml"),
        "apiVersion: bundle.gravitational.io/v2\nkind: [Bundle\n",
    )
    .unwrap();
    let o = run(tele()
        .current_dir(dir.path())
        .args(["images", "app/app.yaml"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: app/app.yaml:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unreachable_registry_exits_2_with_a_hint_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let manifest = write_app(
        &dir.path().join("app"),
        "shop",
        &[&format!("127.0.0.1:{port}/shop/web:1")],
        &[],
    );
    let o = run(tele()
        .args(["--output-format", "json", "build"])
        .arg(&manifest)
        .arg("-o")
        .arg(dir.path().join("shop.tar"))
        .arg("--cache-dir")
        .arg(dir.path().join("c")));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("127.0.0.1:{port}/shop/web:1")) && err.contains("hint:"),
        "{err}"
    );
    let j = json(&o);
    assert_eq!(j["ok"], false);
    assert_eq!(j["exitCode"], 2);
    no_partial_files(dir.path());
}

#[test]
fn missing_image_fails_the_build_and_leaves_no_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFactory::new(dir.path());
    f.base("example.com/t/base:1");
    let registry = Registry::start();
    let present = registry.push(&f.layout, "example.com/t/base:1", "t/base:1", None);
    let missing = format!("{}/t/nope:1", registry.host);
    let manifest = write_app(&dir.path().join("app"), "shop", &[&present, &missing], &[]);
    let o = run(tele()
        .arg("build")
        .arg(&manifest)
        .arg("-o")
        .arg(dir.path().join("shop.tar"))
        .arg("--cache-dir")
        .arg(dir.path().join("c")));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&missing), "{}", stderr(&o));
    no_partial_files(dir.path());
}

#[test]
fn verify_names_each_tampered_file_and_blob() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = offline_bundle(
        dir.path(),
        &[("web.yaml", &deployment("web", "example.com/t/base:1"))],
    );
    ok(tele().arg("verify").arg(&bundle));

    // Change a resource and a layer, remove nothing else.
    fs::write(bundle.join("resources/web.yaml"), "kind: Tampered\n").unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("bundle.json")).unwrap()).unwrap();
    let biggest = meta["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|b| b["size"].as_u64())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = bundle
        .join("images/blobs/sha256")
        .join(biggest.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).unwrap();
    bytes[1000] ^= 0xff;
    fs::write(&blob, bytes).unwrap();

    let o = run(tele().arg("verify").arg(&bundle));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("resources/web.yaml"), "{err}");
    assert!(err.contains(&biggest), "{err}");

    // The same damage inside a tarball is found without extracting it.
    let retarred = dir.path().join("retarred.tar");
    ok(Command::new("tar")
        .arg("cf")
        .arg(&retarred)
        .arg("-C")
        .arg(dir.path().join("x"))
        .arg("shop-1.0.0"));
    let o = run(tele().arg("verify").arg(&retarred));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("resources/web.yaml") && stderr(&o).contains(&biggest),
        "{}",
        stderr(&o)
    );

    // The bundle's own installer refuses a damaged bundle before doing anything.
    let o = run(&mut Command::new(bundle.join("install")));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&biggest), "{}", stderr(&o));
}

#[test]
fn killed_build_leaves_no_bundle_and_no_partial_blob() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFactory::new(dir.path());
    // A 40 MB incompressible layer keeps the build busy long enough to be killed.
    let mut data = vec![0u8; 40 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    f.app("example.com/t/big:1", None, &[("data.bin", &data)]);
    let registry = Registry::start();
    let r = registry.push(&f.layout, "example.com/t/big:1", "t/big:1", None);
    let manifest = write_app(&dir.path().join("app"), "big", &[&r], &[]);
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();

    for delay_ms in [150u64, 400, 900] {
        let mut child = tele()
            .arg("-q")
            .arg("build")
            .arg(&manifest)
            .arg("-o")
            .arg(out.join("big.tar"))
            .arg("--cache-dir")
            .arg(&cache)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let finished = child.wait().unwrap().success();
        let bundle = out.join("big.tar");
        if bundle.exists() {
            // The build won the race: then the bundle must be whole.
            assert!(finished || run(tele().arg("verify").arg(&bundle)).status.success());
            ok(tele().arg("verify").arg(&bundle));
            fs::remove_file(&bundle).unwrap();
        }
        // Only complete blobs carry digest names in the cache.
        for e in fs::read_dir(cache.join("blobs/sha256"))
            .into_iter()
            .flatten()
        {
            let p = e.unwrap().path();
            let (d, _) = sha256_of(&p);
            assert_eq!(
                d,
                p.file_name().unwrap().to_string_lossy(),
                "partial blob under a digest name"
            );
        }
    }
    // And the next build completes from what is left.
    ok(tele()
        .arg("build")
        .arg(&manifest)
        .arg("-o")
        .arg(out.join("big.tar"))
        .arg("--cache-dir")
        .arg(&cache));
    ok(tele().arg("verify").arg(out.join("big.tar")));
}

fn sha256_of(p: &std::path::Path) -> (String, u64) {
    let o = ok(Command::new("sha256sum").arg(p));
    (
        stdout(&o).split_whitespace().next().unwrap().to_string(),
        fs::metadata(p).unwrap().len(),
    )
}

#[test]
fn images_lists_each_reference_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_app(
        &dir.path().join("app"),
        "shop",
        &["nginx"],
        &[
            ("k8s/web.yaml", &deployment("web", "quay.io/org/web:2")),
            (
                "k8s/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  image: redis:7\n",
            ),
        ],
    );
    let o = ok(tele()
        .current_dir(manifest.parent().unwrap())
        .args(["images", "app.yaml"]));
    let text = stdout(&o);
    assert!(
        text.contains("docker.io/library/nginx:latest\n    app.yaml:7:5"),
        "{text}"
    );
    assert!(
        text.contains("quay.io/org/web:2\n    k8s/web.yaml:14:18"),
        "{text}"
    );
    assert!(
        !text.contains("redis"),
        "a ConfigMap value is not an image:\n{text}"
    );
    let j = json(&ok(tele().current_dir(manifest.parent().unwrap()).args([
        "--output-format",
        "json",
        "images",
        "app.yaml",
    ])));
    assert_eq!(j["images"].as_array().unwrap().len(), 2);

    // What build packs beyond the app: the monitoring stack's images, each
    // saying why (the runtime's are listed in tests/runtime.rs).
    let o = ok(tele()
        .current_dir(manifest.parent().unwrap())
        .env_remove("TELE_NO_MONITORING")
        .args(["images", "app.yaml"]));
    let text = stdout(&o);
    assert!(
        text.contains("/influxdb:")
            && text.contains("    the monitoring stack (extensions.monitoring)"),
        "{text}"
    );
    assert!(
        text.starts_with("docker.io/library/nginx:latest\n"),
        "{text}"
    );
}

#[test]
fn corrupt_blob_from_the_registry_is_refused_naming_image_and_blob() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFactory::new(dir.path());
    f.base("example.com/t/base:1");
    let registry = Registry::start();
    let r = registry.push(&f.layout, "example.com/t/base:1", "t/base:1", None);
    // Damage the layer in the registry's own storage: it serves what it has.
    let layout_index: serde_json::Value =
        serde_json::from_slice(&fs::read(f.layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = layout_index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            f.layout
                .join("blobs/sha256")
                .join(manifest_digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let stored = registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer[..2])
        .join(&layer)
        .join("data");
    let mut bytes = fs::read(&stored).unwrap();
    bytes[500] ^= 0x55;
    fs::write(&stored, bytes).unwrap();

    let app = write_app(&dir.path().join("app"), "shop", &[&r], &[]);
    let cache = dir.path().join("cache");
    let o = run(tele()
        .arg("build")
        .arg(&app)
        .arg("-o")
        .arg(dir.path().join("shop.tar"))
        .arg("--cache-dir")
        .arg(&cache));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&r) && err.contains(&layer),
        "error must name image and blob:\n{err}"
    );
    assert!(
        !cache.join("blobs/sha256").join(&layer).exists(),
        "a corrupt blob entered the cache"
    );
    no_partial_files(dir.path());
}

#[test]
fn install_refuses_to_run_without_root_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = offline_bundle(dir.path(), &[]);
    let state = dir.path().join("state");
    // `nobody` may read the bundle but is not root.
    ok(Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path()));
    let o = run(Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(bundle.join("install"))
        .arg("--state-dir")
        .arg(&state));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs root") && stderr(&o).contains("sudo"),
        "{}",
        stderr(&o)
    );
    assert!(!state.exists(), "nothing may change");
}

/// The extracted bundle (`dir/x/shop-1.0.0`) of an app using a busybox image
/// from a local layout, with `resources`; built offline.
fn offline_bundle(dir: &std::path::Path, resources: &[(&str, &str)]) -> std::path::PathBuf {
    let f = ImageFactory::new(dir);
    f.base("example.com/t/base:1");
    let manifest = write_app(
        &dir.join("app"),
        "shop",
        &["example.com/t/base:1"],
        resources,
    );
    let out = dir.join("shop.tar");
    ok(tele()
        .arg("build")
        .arg(&manifest)
        .arg("-o")
        .arg(&out)
        .arg(format!("--image-source=oci:{}", f.layout.display()))
        .arg("--cache-dir")
        .arg(dir.join("c")));
    extract(&out, &dir.join("x"))
}

#[test]
fn a_directory_is_read_as_its_app_yaml_and_a_missing_output_directory_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFactory::new(&dir.path().join("images"));
    f.base("example.com/test/base:1");
    write_app(
        &dir.path().join("hello"),
        "shop",
        &["example.com/test/base:1"],
        &[],
    );
    fs::create_dir_all(dir.path().join("empty")).unwrap();
    let build = |manifest: &str, out: &str| {
        run(tele()
            .current_dir(dir.path())
            .args(["build", manifest, "-o", out, "--cache-dir", "c"])
            .arg(format!("--image-source=oci:{}", f.layout.display())))
    };
    let o = build("hello", "shop.tar");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("shop.tar").is_file());
    let o = build("empty", "other.tar");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("empty is a directory with no app.yaml in it"),
        "{}",
        stderr(&o)
    );
    let o = build("hello", "/nonexistent-tele-dir/sub/t.tar");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the directory /nonexistent-tele-dir/sub does not exist"),
        "{}",
        stderr(&o)
    );
    assert!(!std::path::Path::new("/nonexistent-tele-dir").exists());
}

/// A new user's typos, caught by `tele build` against the Kubernetes 1.20
/// schema: a misspelt kind and a misspelt field stop the build at their
/// place with the name meant, before anything is fetched or written.
#[test]
fn a_misspelt_kind_or_field_stops_the_build_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let web = deployment("web", "127.0.0.1:1/web:1");
    assert!(
        web.contains("kind: Deployment\n") && web.contains("containers:"),
        "{web}"
    );
    let broken = web
        .replace("kind: Deployment\n", "kind: Deploymnt\n")
        .replace("containers:", "contianers:");
    let manifest = write_app(
        &dir.path().join("app"),
        "shop",
        &[],
        &[
            ("k8s/web.yaml", &web.replace("containers:", "contianers:")),
            (
                "k8s/other.yaml",
                &broken.replace("contianers:", "containers:"),
            ),
        ],
    );
    let o = run(tele()
        .current_dir(manifest.parent().unwrap())
        .arg("build")
        .arg("app.yaml")
        .arg("-o")
        .arg(out.join("shop.tar")));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("k8s/other.yaml:2:7: unknown kind `Deploymnt` in `apps/v1` (Kubernetes 1.20)\n  hint: did you mean `Deployment`?"),
        "{err}"
    );
    assert!(
        err.contains("unknown field `contianers` in `spec.template.spec`\n  hint: did you mean `containers`?")
            && err.contains("k8s/web.yaml:"),
        "{err}"
    );
    assert!(!err.contains("127.0.0.1:1"), "nothing fetched: {err}");
    no_partial_files(&out);
}
