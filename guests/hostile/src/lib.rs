//! Hostile agent: each task tries one way of escaping or exhausting the
//! sandbox, chosen by the task's content. The host must end every attempt in
//! a typed error and keep serving the next task.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use std::hint::black_box;

use sparebox::agent::{kv, log};

struct Hostile;

fn ok(s: impl Into<String>) -> Result<Reply, AgentError> {
    Ok(Reply { content: s.into() })
}

fn denied(what: &str, e: impl std::fmt::Display) -> Result<Reply, AgentError> {
    Err(AgentError::Failed(format!("denied: {what}: {e}")))
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == 0 { 0 } else { black_box(recurse(black_box(n - 1))) + 1 }
}

impl Guest for Hostile {
    fn handle(task: Task) -> Result<Reply, AgentError> {
        let content = task.content;
        let (cmd, arg) = content.split_once(':').unwrap_or((content.as_str(), ""));
        match cmd {
            "ping" => ok("pong"),
            // A reply of ARG bytes.
            "big" => ok("x".repeat(arg.parse().unwrap_or(1))),
            "loop" => loop {
                black_box(());
            },
            // Allocate and touch ARG MiB in one block, then report success.
            "alloc" => {
                let mib: usize = arg.parse().unwrap_or(1);
                let mut v = vec![0u8; mib << 20];
                for i in (0..v.len()).step_by(4096) {
                    v[i] = 1;
                }
                ok(format!("allocated {} MiB", black_box(v).len() >> 20))
            }
            "membomb" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "recurse" => {
                let depth: u64 = arg.parse().unwrap_or(u64::MAX / 2);
                ok(format!("depth {}", recurse(depth)))
            }
            "read" => match std::fs::read_to_string(arg) {
                Ok(text) => ok(format!("LEAKED {} bytes", text.len())),
                Err(e) => denied(arg, e),
            },
            // `fill:PATH`: append 1 MiB chunks to PATH until a write fails
            // (or 1 GiB); reports how far it got.
            "fill" => {
                use std::io::Write;
                let mut f = match std::fs::OpenOptions::new().create(true).append(true).open(arg) {
                    Ok(f) => f,
                    Err(e) => return denied(arg, e),
                };
                let chunk = vec![7u8; 1 << 20];
                for n in 0..1024 {
                    if let Err(e) = f.write_all(&chunk).and_then(|()| f.flush()) {
                        return denied("fill", format!("after {n} MiB: {e}"));
                    }
                }
                ok("wrote 1024 MiB")
            }
            "write" => match std::fs::write(arg, b"x") {
                Ok(()) => ok(format!("wrote {arg}")),
                Err(e) => denied(arg, e),
            },
            "socket" => match std::net::TcpStream::connect(if arg.is_empty() { "127.0.0.1:80" } else { arg }) {
                Ok(_) => ok("CONNECTED"),
                Err(e) => denied("socket", e),
            },
            // GET ARG; the reply is the status and body, or the denial.
            "http" => match fetch::get(arg, 1 << 20) {
                Ok(r) => ok(format!("HTTP {} {}", r.status, String::from_utf8_lossy(&r.body))),
                Err(e) => denied("http", e),
            },
            // `httpn:N:URL`: GET URL N times; past the per-task budget the
            // host denies the rest.
            "httpn" => {
                let (n, url) = arg.split_once(':').unwrap_or(("2", arg));
                let n: u32 = n.parse().unwrap_or(2);
                for i in 0..n {
                    if let Err(e) = fetch::get(url, 1024) {
                        return denied("http", format!("request #{}: {e}", i + 1));
                    }
                }
                ok(format!("{n} requests"))
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                ok(format!("env: [{}]", vars.join(",")))
            }
            "logflood" => {
                for i in 0..u64::MAX {
                    log::log(log::Level::Info, &format!("flood {i}"));
                }
                ok("flooded")
            }
            "hugearg" => {
                let mib: usize = arg.parse().unwrap_or(8);
                log::log(log::Level::Info, &"x".repeat(mib << 20));
                ok("sent")
            }
            "kvflood" => {
                for i in 0..1_000_000u32 {
                    if let Err(e) = kv::set(&format!("k{i}"), &[0u8; 1024]) {
                        return Err(AgentError::Failed(format!("kv refused after {i} writes: {e:?}")));
                    }
                }
                ok("wrote everything")
            }
            "files" => {
                let mut n = Vec::new();
                for i in 0..100_000 {
                    match std::fs::File::open("/workspace") {
                        Ok(f) => n.push(f),
                        Err(e) => return denied(&format!("open #{i}"), e),
                    }
                }
                ok(format!("opened {}", n.len()))
            }
            other => Err(AgentError::InvalidInput(format!("unknown command `{other}`"))),
        }
    }
}

export!(Hostile);
