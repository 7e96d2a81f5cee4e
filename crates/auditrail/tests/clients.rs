//! The official clients' own suites (`clients/typescript`: node's test runner), run
//! against this build's `auditrail serve`: each suite starts, kills and restarts real
//! servers itself. Needs Node.js >= 18 and npm; `AUDITRAIL_REQUIRE_CLIENTS` makes a
//! missing one a failure instead of a skip.
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

use std::path::Path;
use std::process::Command;

fn have(cmd: &str) -> bool {
    let ok = Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("AUDITRAIL_REQUIRE_CLIENTS").is_none(),
            "{cmd} is required for the clients' suites"
        );
        eprintln!("skipped: {cmd} is not installed");
    }
    ok
}

fn run(dir: &Path, args: &[&str]) {
    let out = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .env("AUDITRAIL_BIN", env!("CARGO_BIN_EXE_auditrail"))
        .env("AUDITRAIL_REQUIRE_CLIENTS", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "npm {args:?} failed:\n{text}");
    eprintln!("{text}");
}

#[test]
fn the_typescript_client_passes_its_suite_against_a_real_server() {
    if !have("node") || !have("npm") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript");
    run(&dir, &["ci", "--no-audit", "--no-fund"]);
    run(&dir, &["test"]);
}
