//! Helpers of the end-to-end tests: the promlake binary, real peers (Prometheus, LocalStack,
//! DuckDB), loopback ports.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn promlake() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_promlake"));
    c.env("RUST_LOG", "warn");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the promlake binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The environment a child needs to reach the test S3 server.
pub fn s3_env(cmd: &mut Command) -> &mut Command {
    let _ = promlake_core::testdata::s3_test_options(); // fails the test when the server is down
    let (endpoint, _) = promlake_core::testdata::s3_test_endpoint();
    cmd.env("AWS_ENDPOINT", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
}

/// A real peer binary from Debian's packages; the test fails when it is missing.
pub fn peer(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not installed (scripts/test installs it: apt-get install prometheus prometheus-alertmanager prometheus-node-exporter)"
    );
}

/// A Python with DuckDB; the test fails when there is none.
pub fn python_with_duckdb() -> String {
    let py = std::env::var("PROMLAKE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ok = Command::new(&py)
        .args(["-c", "import duckdb, pyarrow"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{py} cannot import duckdb and pyarrow (scripts/test installs them: pip install duckdb pyarrow)"
    );
    py
}

/// Waits until `f` returns Some, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn"),
        )
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> Output {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let child = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap());
        child.wait_with_output().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET a URL on loopback, body as text.
pub fn http_get(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
