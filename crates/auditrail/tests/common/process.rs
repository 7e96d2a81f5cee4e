//! Starting `auditrail serve` as a process and learning where it listens (tests and
//! benchmarks share this file).
#![allow(dead_code, reason = "each user of this file needs part of it")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Reads the line `auditrail serve` prints once it listens (port 0 picks a free port)
/// and returns the base URL it names. Takes the child's piped stdout.
pub fn listening_base(child: &mut Child) -> String {
    listening_after(child, "auditrail listening on ")
}

/// The URL a child prints after `prefix` on its first line of output.
pub fn listening_after(child: &mut Child, prefix: &str) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("read the listening line");
    line.trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("no listening line: {line:?}"))
        .to_owned()
}

/// A running `auditrail serve`, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `auditrail serve` on a port-0 listener with the platform admin token `admin`,
/// after `configure` adds its flags and environment; returns once it listens.
pub fn serve(admin: &str, configure: impl FnOnce(&mut Command)) -> Serve {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditrail"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("AUDITRAIL_ADMIN_TOKEN", admin)
        .env(
            "AUDITRAIL_LOG",
            std::env::var("AUDITRAIL_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    configure(&mut cmd);
    let mut child = cmd.spawn().expect("start auditrail serve");
    let base = listening_base(&mut child);
    Serve { child, base }
}

/// Starts `auditrail gateway` on a port-0 listener with `args`; returns once it listens.
pub fn gateway(args: &[&str], configure: impl FnOnce(&mut Command)) -> Serve {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditrail"));
    cmd.args(["gateway", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("AUDITRAIL_ADMIN_TOKEN")
        .env(
            "AUDITRAIL_LOG",
            std::env::var("AUDITRAIL_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    configure(&mut cmd);
    let mut child = cmd.spawn().expect("start auditrail gateway");
    let base = listening_after(&mut child, "auditrail gateway listening on ");
    Serve { child, base }
}
