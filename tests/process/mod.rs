//! Building examples with cargo and running them as child processes, every wait bounded and
//! every child killed when the test ends, whatever its outcome.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test crate uses a part of the helpers"
)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The bound on one `cargo` build of an example (its dependencies are usually fresh).
pub const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a child ended, with what it printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    /// Empty unless the child's stderr was piped.
    pub stderr: String,
}

/// Reads a pipe to its end on its own thread.
fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    })
}

fn text(reader: Option<JoinHandle<Vec<u8>>>) -> String {
    let bytes = reader
        .map(|reader| reader.join().expect("the reader thread does not panic"))
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Waits for `child` at most `limit`, reading its piped output meanwhile (so that it never
/// blocks on a full pipe); kills it and fails the test past that.
pub fn finish(mut child: Child, limit: Duration, what: &str) -> Finished {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let mut child = Killed(child);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waits for the child") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: text(stdout),
        stderr: text(stderr),
    }
}

/// Runs `binary` with `args` to completion within `limit`, its stdout and stderr piped.
pub fn run(binary: &Path, args: &[&str], limit: Duration) -> Finished {
    let child = Command::new(binary)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
    finish(child, limit, &format!("{} {args:?}", binary.display()))
}

/// Builds the example `name` with `cargo <command> --example NAME [extra]` (`build`, or
/// `rustc` with `-- <rustc args>` in `extra`) in the workspace's target directory, offline,
/// and returns the executable cargo reports.
pub fn build_example(name: &str, command: &str, extra: &[&str], envs: &[(&str, &Path)]) -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args([command, "--offline", "--quiet", "--example", name])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in envs {
        cargo.env(key, value);
    }
    let child = cargo.spawn().expect("cargo runs");
    let built = finish(
        child,
        BUILD_LIMIT,
        &format!("cargo {command} --example {name}"),
    );
    assert!(built.status.success(), "building the {name} example failed");
    built
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == name)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reports the executable of the {name} example"))
}
