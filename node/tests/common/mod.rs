//! Helpers for tests that run the real `sparebox` binary in a temp dir.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A temp home: XDG dirs point inside it, so defaults never touch the real home.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sparebox"));
        c.env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run sparebox")
    }
    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sparebox {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Runs and asserts failure, returning stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "sparebox {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// A `sparebox node` child process, killed on drop.
pub struct NodeProc {
    pub child: Child,
    pub banner: Vec<String>,
    pub api: String,
    pub peer_id: String,
}

impl NodeProc {
    /// Starts a node with `args` and waits (≤ 30 s) for its banner. The
    /// node listens on loopback only, with mDNS off (no LAN traffic).
    pub fn start(sb: &Sandbox, args: &[&str]) -> NodeProc {
        let mut child = sb
            .cmd()
            .arg("node")
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep reading to EOF even after the test stops listening: a
            // closed pipe would make the node's next println! fail (EPIPE)
            // and panic, exiting 101.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut banner = Vec::new();
        let (mut api, mut peer_id) = (None, None);
        while api.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = line.trim().strip_prefix("api:") {
                        api = Some(v.trim().to_string());
                    }
                    if let Some(v) = line.trim().strip_prefix("peer id:") {
                        peer_id = Some(v.trim().to_string());
                    }
                    banner.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let out = child.wait_with_output().expect("wait");
                    panic!(
                        "node printed no API address; stderr:\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        NodeProc {
            child,
            banner,
            api: api.unwrap_or_default(),
            peer_id: peer_id.unwrap_or_default(),
        }
    }

    /// Sends `sig` and waits (≤ 20 s) for exit; returns the exit code.
    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal) -> Option<i32> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("kill");
        wait_timeout(&mut self.child, Duration::from_secs(20)).code()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}
