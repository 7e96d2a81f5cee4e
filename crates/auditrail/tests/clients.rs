//! The official clients' own suites (`clients/typescript`: node's test runner;
//! `clients/python`: pytest, after `mypy --strict`), run against this build's
//! `auditrail serve`: each suite starts, kills and restarts real servers itself. Needs
//! Node.js >= 18 and npm, Python >= 3.9 with pytest and mypy;
//! `AUDITRAIL_REQUIRE_CLIENTS` makes a missing one a failure instead of a skip.
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

use std::path::Path;
use std::process::Command;

fn have(cmd: &str) -> bool {
    have_with(cmd, &["--version"])
}

fn have_with(cmd: &str, args: &[&str]) -> bool {
    let ok = Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("AUDITRAIL_REQUIRE_CLIENTS").is_none(),
            "{cmd} {args:?} is required for the clients' suites"
        );
        eprintln!("skipped: {cmd} {args:?} is not available");
    }
    ok
}

fn run(dir: &Path, cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .env("AUDITRAIL_BIN", env!("CARGO_BIN_EXE_auditrail"))
        .env("AUDITRAIL_REQUIRE_CLIENTS", "1")
        .env("PYTHONPATH", dir.join("src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd} {args:?} failed:\n{text}");
    eprintln!("{text}");
}

#[test]
fn the_typescript_client_passes_its_suite_against_a_real_server() {
    if !have("node") || !have("npm") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript");
    run(&dir, "npm", &["ci", "--no-audit", "--no-fund"]);
    run(&dir, "npm", &["test"]);
}

#[test]
fn the_python_client_typechecks_and_passes_its_suite_against_a_real_server() {
    if !have_with("python3", &["-m", "pytest", "--version"])
        || !have_with("python3", &["-m", "mypy", "--version"])
    {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python");
    run(
        &dir,
        "python3",
        &[
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            "/dev/null",
            "src/auditrail",
        ],
    );
    run(
        &dir,
        "python3",
        &["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
    );
}
