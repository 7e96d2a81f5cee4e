//! The official clients' own suites (`clients/typescript`: node's test runner;
//! `clients/python`: pytest, after `mypy --strict`), run against this build's
//! `auditrail serve`: each suite starts, kills and restarts real servers itself. Needs
//! Node.js >= 18 and npm, Python >= 3.9 with pytest and mypy;
//! `AUDITRAIL_REQUIRE_CLIENTS` makes a missing one a failure instead of a skip, orjson
//! included. The Python suite runs twice: with orjson where installed, and with the
//! standard library's JSON.
//!
//! Clients generated from `auditrail openapi` by standard generators must typecheck:
//! openapi-typescript's types (the TypeScript client's `src/schema.ts` is that output,
//! and must be current) under `tsc --strict`, and openapi-python-client's whole client
//! under `mypy --strict`.
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

/// Runs `command`: whether it succeeded, and all it printed.
fn output(command: &mut Command) -> (bool, String) {
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn run(dir: &Path, cmd: &str, args: &[&str]) {
    run_with(dir, cmd, args, &[]);
}

fn run_with(dir: &Path, cmd: &str, args: &[&str], env: &[(&str, &str)]) {
    // orjson (the Python client's `fast` extra) is required where the clients are.
    let orjson = if std::env::var_os("AUDITRAIL_REQUIRE_CLIENTS").is_some() {
        "1"
    } else {
        ""
    };
    let (ok, text) = output(
        Command::new(cmd)
            .args(args)
            .current_dir(dir)
            .env("AUDITRAIL_BIN", env!("CARGO_BIN_EXE_auditrail"))
            .env("AUDITRAIL_REQUIRE_CLIENTS", "1")
            .env("AUDITRAIL_REQUIRE_ORJSON", orjson)
            .envs(env.iter().copied())
            .env("PYTHONPATH", dir.join("src"))
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    );
    assert!(ok, "{cmd} {args:?} failed:\n{text}");
    eprintln!("{text}");
}

#[test]
fn the_typescript_client_passes_its_suite_against_a_real_server() {
    if !have("node") || !have("npm") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript");
    run(&dir, "npm", &["ci", "--no-audit", "--no-fund"]);
    // The client's types are openapi-typescript's output for this build's document.
    let tmp = tempfile::tempdir().unwrap();
    let doc = openapi_document(tmp.path());
    let fresh = tmp.path().join("schema.ts");
    let generator = dir.join("node_modules/.bin/openapi-typescript");
    run(
        &dir,
        generator.to_str().unwrap(),
        &[doc.to_str().unwrap(), "-o", fresh.to_str().unwrap()],
    );
    let committed = std::fs::read_to_string(dir.join("src/schema.ts")).unwrap();
    assert!(
        std::fs::read_to_string(&fresh).unwrap() == committed,
        "clients/typescript/src/schema.ts is not what openapi-typescript makes of this build's \
         document; regenerate it: auditrail openapi > openapi.json && \
         npx openapi-typescript openapi.json -o src/schema.ts"
    );
    // `npm test` builds with `tsc --strict` first, the generated types included.
    run(&dir, "npm", &["test"]);
}

/// Writes `auditrail openapi` into `dir`; its path.
fn openapi_document(dir: &Path) -> std::path::PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_auditrail"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let path = dir.join("openapi.json");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

#[test]
fn a_python_client_generated_from_the_document_typechecks() {
    if !have("openapi-python-client") || !have_with("python3", &["-m", "mypy", "--version"]) {
        return;
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python");
    let tmp = tempfile::tempdir().unwrap();
    let doc = openapi_document(tmp.path());
    let (ok, text) = output(
        Command::new("openapi-python-client")
            .args(["generate", "--meta", "setup", "--overwrite", "--path"])
            .arg(&doc)
            .arg("--config")
            .arg(python.join("openapi-python-client.yml"))
            .arg("--output-path")
            .arg(tmp.path().join("generated"))
            .current_dir(tmp.path()),
    );
    assert!(ok, "generation failed:\n{text}");
    // A schema it cannot read makes it leave operations out, with a warning.
    assert!(
        !text.contains("Warning") && !text.contains("WARNING"),
        "the generator skipped parts of the document:\n{text}"
    );
    run(
        &tmp.path().join("generated"),
        "python3",
        &[
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            "/dev/null",
            // The package's name, from the document's title.
            "auditrail_client",
        ],
    );
}

#[test]
fn the_python_client_typechecks_and_passes_its_suite_against_a_real_server() {
    if !have_with("python3", &["-m", "pytest", "--version"])
        || !have_with("python3", &["-m", "mypy", "--version"])
    {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python");
    // The client's types are what tools/generate_types.py makes of this build's document.
    let tmp = tempfile::tempdir().unwrap();
    let doc = openapi_document(tmp.path());
    let out = Command::new("python3")
        .arg(dir.join("tools/generate_types.py"))
        .arg(&doc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(dir.join("src/auditrail/types.py")).unwrap();
    assert!(
        out.stdout == committed,
        "clients/python/src/auditrail/types.py is not what tools/generate_types.py makes of \
         this build's document; regenerate it: auditrail openapi > openapi.json && \
         python3 tools/generate_types.py openapi.json > src/auditrail/types.py"
    );
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
    // With orjson where it is installed, then with the standard library's JSON.
    let pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"];
    run(&dir, "python3", &pytest);
    run_with(&dir, "python3", &pytest, &[("AUDITRAIL_JSON", "stdlib")]);
}
