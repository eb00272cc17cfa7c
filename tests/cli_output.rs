//! How tele behaves at the edges of a terminal session: output into a pipe
//! that closes early, colour only on a terminal (and never with NO_COLOR),
//! and `tele uninstall` asking before it removes anything.
//!
//! The uninstall tests never point tele at a state directory that holds an
//! install: if the confirmation broke, tele would still refuse to touch them.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::*;

/// An app whose `tele images` listing is far bigger than a pipe's buffer
/// (64 KiB), so that tele is still writing when the reader goes away.
fn big_app(dir: &Path) -> std::path::PathBuf {
    let images: Vec<String> = (0..3000)
        .map(|i| format!("registry.example.com/team/service-{i}:1.0.{i}"))
        .collect();
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    write_app(&dir.join("app"), "big", &images, &[])
}

/// Runs `cmd` with stdout into a pipe that is closed after the first line.
fn read_one_line_then_close(cmd: &mut Command) -> (String, Output) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tele");
    let mut first = String::new();
    {
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        reader.read_line(&mut first).unwrap();
        // Dropping the reader closes the pipe, as `| head -1` does.
    }
    (first, child.wait_with_output().unwrap())
}

fn assert_ended_quietly(what: &str, o: &Output) {
    let err = stderr(o);
    assert_ne!(o.status.code(), Some(101), "{what} panicked:\n{err}");
    assert!(!err.contains("panicked"), "{what}:\n{err}");
    assert_eq!(o.status.code(), Some(0), "{what}:\n{err}");
    assert_eq!(err, "", "{what} says nothing about the closed pipe");
}

#[test]
fn output_into_a_pipe_closed_early_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = big_app(dir.path());

    let (first, o) = read_one_line_then_close(tele().arg("images").arg(&manifest));
    assert_eq!(first, "registry.example.com/team/service-0:1.0.0\n");
    assert_ended_quietly("tele images | head -1", &o);

    let (first, o) = read_one_line_then_close(
        tele()
            .args(["images", "--output-format", "json"])
            .arg(&manifest),
    );
    assert_eq!(first, "{\n");
    assert_ended_quietly("tele images --output-format json | head -1", &o);
}

/// Runs `tele ARGS` on a pseudo-terminal (util-linux's `script`), with
/// NO_COLOR as given; returns what the terminal showed.
fn on_a_terminal(args: &str, no_color: Option<&str>) -> String {
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c"])
        .arg(format!("{} {args}", env!("CARGO_BIN_EXE_tele")))
        .arg("/dev/null")
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let o = run(&mut cmd);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn errors_are_coloured_on_a_terminal_only_without_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let args = format!("images {}", missing.display());

    // Through a pipe: plain text, even though NO_COLOR is not set.
    let o = run(tele()
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .arg("images")
        .arg(&missing));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        !o.stderr.contains(&0x1b),
        "escape codes in a pipe: {:?}",
        stderr(&o)
    );
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));

    // On a terminal: the label is coloured, the message is the same.
    let shown = on_a_terminal(&args, None);
    assert!(
        shown.contains("\x1b["),
        "no colour on a terminal: {shown:?}"
    );
    assert!(shown.contains("missing.yaml"), "{shown:?}");

    // NO_COLOR set to anything but "" turns colour off; "" does not.
    let shown = on_a_terminal(&args, Some("1"));
    assert!(
        !shown.contains('\x1b'),
        "colour despite NO_COLOR=1: {shown:?}"
    );
    assert!(shown.starts_with("error: "), "{shown:?}");
    let shown = on_a_terminal(&args, Some(""));
    assert!(shown.contains("\x1b["), "NO_COLOR=\"\" is unset: {shown:?}");
}

#[test]
fn uninstall_of_a_missing_state_dir_says_there_is_nothing_to_uninstall() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nonexistent");
    let o = ok(tele()
        .args(["uninstall", "--yes", "--state-dir"])
        .arg(&state));
    assert_eq!(
        stdout(&o),
        format!("nothing to uninstall: {} does not exist\n", state.display())
    );
    assert!(!stdout(&o).contains("deleted"), "{}", stdout(&o));

    // Nothing to remove needs no confirmation either.
    let o = ok(tele()
        .args(["--output-format", "json", "uninstall", "--state-dir"])
        .arg(&state));
    let j = json(&o);
    assert_eq!(j["ok"], true);
    assert_eq!(j["uninstalled"], false);
    assert!(!state.exists());
}

#[test]
fn uninstall_without_yes_and_without_a_terminal_refuses_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    fs::write(state.join("keep"), "still here").unwrap();

    // `tele uninstall` and the bundle's `./install --uninstall`.
    let install = dir.path().join("install");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tele"), &install).unwrap();
    let mut as_install = Command::new(&install);
    as_install.env("NO_COLOR", "1");
    for cmd in [
        tele().args(["uninstall", "--state-dir"]).arg(&state),
        as_install.args(["--uninstall", "--state-dir"]).arg(&state),
    ] {
        let o = run(cmd);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.starts_with("error: not uninstalling"), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
        assert!(
            err.lines()
                .any(|l| l.starts_with("hint:") && l.contains("--yes")),
            "the hint names --yes:\n{err}"
        );
        assert_eq!(stdout(&o), "");
        assert_eq!(
            fs::read_to_string(state.join("keep")).unwrap(),
            "still here"
        );
    }
}
