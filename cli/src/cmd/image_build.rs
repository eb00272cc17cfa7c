//! `tele image build`

use std::process::ExitCode;

use tele_bundler::image::Platform;
use tele_bundler::image_build::{build_image, ImageBuildOptions};
use tele_bundler::BuildError;

use crate::args::ImageBuildArgs;
use crate::cmd::build::source_date_epoch;
use crate::output::{human_bytes, Printer};

pub fn run(a: ImageBuildArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let parse = |s: &str| s.parse().map_err(|e| BuildError::input(format!("{e}"), ""));
    let opts = ImageBuildOptions {
        dir: a.dir,
        reference: parse(&a.reference)?,
        layout: a.output,
        base: a.base.as_deref().map(parse).transpose()?,
        entrypoint: a.entrypoint,
        cmd: a.cmd,
        env: a.env,
        platform: Platform::parse(&a.platform).map_err(|e| BuildError::input(e, ""))?,
        mtime: source_date_epoch()?,
    };
    let built = build_image(&opts)?;
    p.out(format!(
        "{} -> {} ({} layers, new layer {})",
        built.reference,
        built.digest,
        built.layers,
        human_bytes(built.layer.size)
    ));
    p.json(&built);
    Ok(ExitCode::SUCCESS)
}
