//! The example app's bundle with the Kubernetes runtime, built offline as
//! scripts/example-bundle does: its images made from busybox, InfluxDB from
//! Debian's package, the static (musl) tele as its installer.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{extract, ok, tele, ImageFactory};

/// The Kubernetes runtime that scripts/build-runtime made.
pub fn runtime_dir() -> PathBuf {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let dir = home.join(".cache/tele/runtime/1.20.2");
    assert!(
        dir.join("runtime.json").is_file(),
        "no runtime at {}: run scripts/build-runtime first",
        dir.display()
    );
    dir
}

/// The installer in a bundle: a static build of tele (scripts/test makes it).
pub fn static_installer() -> PathBuf {
    let installer = std::env::var_os("TELE_STATIC_INSTALLER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/x86_64-unknown-linux-musl/release/tele")
        });
    assert!(
        installer.is_file(),
        "no static tele at {}: build it with `cargo build --release --target x86_64-unknown-linux-musl -p tele-cli` (scripts/test does)",
        installer.display()
    );
    installer
}

/// The example app's images, made from busybox as scripts/example-bundle
/// does, in one OCI layout under `dir`.
fn example_images(dir: &Path) -> ImageFactory {
    let f = ImageFactory::new(dir);
    f.base("example.com/hello/busybox:1.36");
    let www = dir.join("web-src/www");
    fs::create_dir_all(&www).unwrap();
    fs::write(
        www.join("index.html"),
        "<h1>hello from a tele bundle</h1>\n",
    )
    .unwrap();
    let httpd = dir.join("base-httpd/bin");
    fs::create_dir_all(&httpd).unwrap();
    std::os::unix::fs::symlink("busybox", httpd.join("httpd")).unwrap();
    f.build(
        &dir.join("base-httpd"),
        "example.com/hello/busybox-httpd:1",
        Some("example.com/hello/busybox:1.36"),
        &[],
    );
    f.build(
        &dir.join("web-src"),
        "example.com/hello/web:1.0.0",
        Some("example.com/hello/busybox-httpd:1"),
        &[
            "--cmd",
            "/bin/httpd",
            "--cmd",
            "-f",
            "--cmd",
            "-p",
            "--cmd",
            "8080",
            "--cmd",
            "-h",
            "--cmd",
            "/www",
        ],
    );
    f
}

/// `tele build` of `manifest` with the images of `layout`, the runtime and
/// the static installer, extracted under `dir`.
fn build_extracted(dir: &Path, manifest: &Path, layout: &Path, monitoring: bool) -> PathBuf {
    let out = dir.join("bundle.tar");
    let mut build = tele();
    build
        .env_remove("TELE_NO_RUNTIME")
        .env_remove("TELE_NO_MONITORING")
        .arg("build")
        .arg(manifest)
        .arg(format!("--image-source=oci:{}", layout.display()))
        .arg("--runtime")
        .arg(runtime_dir())
        .arg("--installer")
        .arg(static_installer())
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("-o")
        .arg(&out);
    if !monitoring {
        build.arg("--no-monitoring");
    }
    ok(&mut build);
    extract(&out, &dir.join("x"))
}

/// The example app's bundle, its images made from busybox as scripts/example-bundle does.
pub fn example_bundle(dir: &Path) -> PathBuf {
    let f = example_images(dir);
    // InfluxDB for the monitoring stack, from Debian's influxdb package.
    ok(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-influxdb-image"))
            .env("TELE", env!("CARGO_BIN_EXE_tele"))
            .args(["--ref", "example.com/monitoring/influxdb:1.6", "-o"])
            .arg(&f.layout),
    );
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/app.yaml");
    build_extracted(dir, &manifest, &f.layout, true)
}

/// The three-tier app of tests/fixtures/shop (web -> api -> db on a claim),
/// on the example app's images, without the monitoring stack.
pub fn shop_bundle(dir: &Path) -> PathBuf {
    let f = example_images(dir);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/shop/app.yaml");
    build_extracted(dir, &manifest, &f.layout, false)
}

/// What scripts/build-conformance made: e2e.test, ginkgo and the test
/// images (`$TELE_CONFORMANCE_DIR`, else its cache).
pub fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("TELE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
            home.join(".cache/tele/conformance/1.20.2")
        });
    assert!(
        dir.join("done").is_file(),
        "no conformance tests at {}: run scripts/build-conformance first (scripts/test does)",
        dir.display()
    );
    dir
}

/// The bundle of tests/fixtures/conformance: Kubernetes' test images under
/// their upstream names, the runtime, no monitoring stack.
pub fn conformance_bundle(dir: &Path) -> PathBuf {
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/conformance/app.yaml");
    build_extracted(dir, &manifest, &conformance_dir().join("images"), false)
}

/// The example app with its manifest and resources edited, built into a new
/// bundle with the same runtime, images and static installer (and the
/// monitoring stack when `monitoring`).
pub fn variant_bundle(
    dir: &Path,
    good: &Path,
    name: &str,
    monitoring: bool,
    manifest: impl Fn(String) -> String,
    resources: impl Fn(String) -> String,
) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let app = dir.join(name);
    fs::create_dir_all(app.join("resources")).unwrap();
    let text = fs::read_to_string(examples.join("app.yaml")).unwrap();
    fs::write(app.join("app.yaml"), manifest(text)).unwrap();
    let text = fs::read_to_string(examples.join("resources/web.yaml")).unwrap();
    fs::write(app.join("resources/web.yaml"), resources(text)).unwrap();
    let out = dir.join(format!("{name}.tar"));
    let mut build = tele();
    if monitoring {
        build.env_remove("TELE_NO_MONITORING");
    }
    ok(build
        .env_remove("TELE_NO_RUNTIME")
        .arg("build")
        .arg(app.join("app.yaml"))
        .arg(format!(
            "--image-source=oci:{}",
            dir.join("layout").display()
        ))
        .arg("--runtime")
        .arg(runtime_dir())
        .arg("--installer")
        .arg(good.join("install"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("-o")
        .arg(&out));
    extract(&out, &dir.join(format!("{name}-x")))
}
