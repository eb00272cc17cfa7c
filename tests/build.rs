//! `tele build`, `inspect` and `verify` end to end, against Debian's
//! docker-registry on loopback, images pushed with skopeo, and bundles read back
//! by skopeo and containerd.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use support::*;

/// Three images sharing one busybox layer, pushed to a fresh registry.
struct Fixture {
    dir: tempfile::TempDir,
    _registry: Registry,
    refs: Vec<String>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFactory::new(dir.path());
    f.base("example.com/test/base:1")
        .app(
            "example.com/test/web:1",
            Some("example.com/test/base:1"),
            &[("www/index.html", b"<h1>web</h1>")],
        )
        .app(
            "example.com/test/job:1",
            Some("example.com/test/base:1"),
            &[("job.sh", b"echo job")],
        );
    let registry = Registry::start();
    let refs = vec![
        registry.push(&f.layout, "example.com/test/base:1", "test/base:1", None),
        registry.push(&f.layout, "example.com/test/web:1", "test/web:1", None),
        registry.push(&f.layout, "example.com/test/job:1", "test/job:1", None),
    ];
    Fixture {
        dir,
        _registry: registry,
        refs,
    }
}

fn app(f: &Fixture) -> std::path::PathBuf {
    let cron = format!(
        "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  name: nightly\nspec:\n  schedule: \"@daily\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n            - name: job\n              image: {}\n",
        f.refs[2]
    );
    write_app(
        &f.dir.path().join("app"),
        "shop",
        &[&f.refs[0]],
        &[
            ("resources/web.yaml", &deployment("web", &f.refs[1])),
            ("resources/cron.yaml", &cron),
        ],
    )
}

fn build(manifest: &Path, out: &Path, cache: &Path, extra: &[&str]) -> std::process::Output {
    run(tele()
        .args(["--output-format", "json", "build"])
        .arg(manifest)
        .arg("-o")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache)
        .args(extra))
}

#[test]
fn bundle_holds_every_image_once_and_skopeo_reads_each() {
    let f = fixture();
    let manifest = app(&f);
    let out = f.dir.path().join("shop.tar");
    let o = build(&manifest, &out, &f.dir.path().join("cache"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = json(&o);
    assert_eq!(summary["images"].as_array().unwrap().len(), 3);
    // The bundle and the cached blobs are readable by all.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o644);
    for blob in fs::read_dir(f.dir.path().join("cache/blobs/sha256")).unwrap() {
        assert_eq!(mode(&blob.unwrap().path()), 0o644);
    }

    // Each blob is stored once although the busybox layer is in all three images.
    let files = tar_files(&out);
    let blobs: Vec<&String> = files
        .iter()
        .filter(|p| p.contains("/images/blobs/sha256/"))
        .collect();
    let unique: BTreeSet<&&String> = blobs.iter().collect();
    assert_eq!(
        blobs.len(),
        unique.len(),
        "a blob appears twice in the tarball"
    );
    let bundle = extract(&out, &f.dir.path().join("x"));
    assert_eq!(bundle.file_name().unwrap(), "shop-1.0.0");
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(meta["blobs"].as_array().unwrap().len(), blobs.len());
    let per_image: usize = meta["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["blobs"].as_array().unwrap().len())
        .sum();
    assert!(
        per_image > blobs.len(),
        "images share blobs, so the per-image count must exceed the unique count"
    );
    assert!(
        summary["bytesSavedBySharing"].as_u64().unwrap() > 1_000_000,
        "the busybox layer is shared"
    );

    // skopeo, which no one here wrote, reads every image from the bundle's layout.
    for r in &f.refs {
        let o = ok(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:{r}", bundle.join("images").display())));
        let inspected: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let listed = meta["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["reference"] == r.as_str())
            .unwrap();
        assert_eq!(inspected["Digest"], listed["digest"], "{r}");
    }
    // The layout entries carry both names.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("images/index.json")).unwrap()).unwrap();
    for entry in index["manifests"].as_array().unwrap() {
        let a = &entry["annotations"];
        assert_eq!(
            a["org.opencontainers.image.ref.name"],
            a["io.containerd.image.name"]
        );
    }
    // app.yaml and the resources pin their images by digest, the digests the
    // bundle holds; the rest of each resource file is as given.
    let pinned = fs::read_to_string(bundle.join("app.yaml")).unwrap();
    assert!(
        pinned.contains(&format!("{}@sha256:", f.refs[0])),
        "{pinned}"
    );
    let given = fs::read_to_string(manifest.parent().unwrap().join("resources/web.yaml")).unwrap();
    let packed = fs::read_to_string(bundle.join("resources/resources/web.yaml")).unwrap();
    let mut unpinned = packed.clone();
    for entry in index["manifests"].as_array().unwrap() {
        let digest = entry["digest"].as_str().unwrap();
        unpinned = unpinned.replace(&format!("@{digest}"), "");
    }
    assert_eq!(unpinned, given, "only the image fields change");
    assert!(packed.contains("@sha256:") && packed != given, "{packed}");
    let listed: Vec<String> = given
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .map(|i| i.trim_matches('"').to_string())
        .collect();
    for image in listed {
        assert!(
            packed.contains(&format!("{image}@sha256:")),
            "{image} is not pinned:\n{packed}"
        );
    }
    let install = bundle.join("install");
    assert!(
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&install).unwrap().permissions())
            & 0o111
            != 0
    );
    ok(Command::new(&install).arg("--version").env("PATH", ""));

    // inspect reads the tarball; verify checks tarball and directory.
    let o = ok(tele()
        .args(["--output-format", "json", "inspect"])
        .arg(&out));
    let i = json(&o);
    assert_eq!(i["name"], "shop");
    assert_eq!(i["uniqueBlobs"].as_u64().unwrap() as usize, blobs.len());
    assert!(i["bytesSavedBySharing"].as_u64().unwrap() > 1_000_000);
    ok(tele().arg("verify").arg(&out));
    ok(tele().arg("verify").arg(&bundle));
}

#[test]
fn rebuild_fetches_nothing_and_is_byte_identical_even_with_another_cache() {
    let f = fixture();
    let manifest = app(&f);
    let cache = f.dir.path().join("cache");
    let first = f.dir.path().join("1.tar");
    let o = build(&manifest, &first, &cache, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(json(&o)["blobsFetched"].as_u64().unwrap() > 0);

    let second = f.dir.path().join("2.tar");
    let o = build(&manifest, &second, &cache, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["blobsFetched"], 0);
    assert!(stderr(&o).contains("nothing to fetch"), "{}", stderr(&o));

    let third = f.dir.path().join("3.tar");
    let o = build(
        &manifest,
        &third,
        &f.dir.path().join("other-cache"),
        &["--jobs", "1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let a = fs::read(&first).unwrap();
    assert!(
        a == fs::read(&second).unwrap(),
        "rebuild from cache differs"
    );
    assert!(
        a == fs::read(&third).unwrap(),
        "build with another cache directory differs"
    );

    // SOURCE_DATE_EPOCH sets every mtime.
    let stamped = f.dir.path().join("4.tar");
    let o = run(tele()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("build")
        .arg(&manifest)
        .arg("-o")
        .arg(&stamped)
        .arg("--cache-dir")
        .arg(&cache));
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = stdout(&ok(Command::new("tar")
        .args(["tvf"])
        .arg(&stamped)
        .env("TZ", "UTC")));
    assert!(
        listing.lines().all(|l| l.contains("2023-11-14 22:13")),
        "{listing}"
    );
}

#[test]
fn compressed_bundles_inspect_and_verify() {
    let f = fixture();
    let manifest = app(&f);
    for (c, magic) in [
        ("zstd", &[0x28u8, 0xb5, 0x2f, 0xfd][..]),
        ("gzip", &[0x1f, 0x8b][..]),
    ] {
        let out = f.dir.path().join(format!("b.{c}"));
        let o = build(
            &manifest,
            &out,
            &f.dir.path().join("cache"),
            &["--compression", c],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(fs::read(&out).unwrap().starts_with(magic), "{c}");
        let i = json(&ok(tele()
            .args(["--output-format", "json", "inspect"])
            .arg(&out)));
        assert_eq!(i["compression"], c);
        ok(tele().arg("verify").arg(&out));
    }
}

#[test]
fn containerd_imports_the_bundle_images() {
    let f = fixture();
    let manifest = app(&f);
    let out = f.dir.path().join("shop.tar");
    let o = build(&manifest, &out, &f.dir.path().join("cache"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bundle = extract(&out, &f.dir.path().join("x"));
    let images_tar = f.dir.path().join("images.tar");
    ok(Command::new("tar")
        .arg("cf")
        .arg(&images_tar)
        .arg("-C")
        .arg(bundle.join("images"))
        .arg("."));

    let containerd = Containerd::start(f.dir.path());
    ok(containerd.ctr().args(["images", "import"]).arg(&images_tar));
    let listed = stdout(&ok(containerd.ctr().args(["images", "ls", "-q"])));
    for r in &f.refs {
        assert!(
            listed.lines().any(|l| l == r),
            "{r} missing from containerd's images:\n{listed}"
        );
    }
}
