//! cgroup enforcement with small stand-in processes. These need permission
//! to create cgroups (root here, with cgroup v1 mounted read-write); they
//! fail, not skip, when that is missing, so a broken setup is noticed.
#![allow(clippy::unwrap_used)] // test file: a failed unwrap is a failed test

use std::process::Stdio;
use std::time::{Duration, Instant};

use sparebox_sandbox::process::cgroup::{AgentCgroup, CgroupLimits, CgroupSupport, probe};

fn limits(memory_mib: u64, cpu_millis: u32, pids_max: u64) -> CgroupLimits {
    CgroupLimits {
        memory_bytes: memory_mib << 20,
        cpu_millis,
        pids_max,
    }
}

fn cgroup(name: &str, l: CgroupLimits) -> AgentCgroup {
    assert!(probe().is_available(), "cgroups unavailable: {:?}", probe());
    AgentCgroup::create(&format!("test-{name}-{}", std::process::id()), &l).unwrap()
}

#[test]
fn probe_reports_the_hierarchy() {
    match probe() {
        CgroupSupport::V1 | CgroupSupport::V2 => {}
        CgroupSupport::Unavailable(why) => panic!("{why}"),
    }
}

#[test]
fn memory_hog_is_killed_inside_its_cgroup() {
    let cg = cgroup("mem", limits(64, 1000, 64));
    // Touch 256 MiB: far past the 64 MiB limit.
    let status = cg
        .launcher(std::path::Path::new("python3"))
        .args(["-c", "b = bytearray(256 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('survived')"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.status.signal(), Some(9), "{status:?}");
    assert!(!String::from_utf8_lossy(&status.stdout).contains("survived"));
    assert!(cg.memory_failures() > 0);
    // Just under the limit works.
    let ok = cg
        .launcher(std::path::Path::new("python3"))
        .args([
            "-c",
            "b = bytearray(16 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('ok')",
        ])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    cg.remove();
}

#[test]
fn fork_bomb_stops_at_pids_max() {
    let cg = cgroup("pids", limits(256, 1000, 20));
    // Try to hold 100 sleeping children; report how many started.
    let out = cg
        .launcher(std::path::Path::new("python3"))
        .args([
            "-c",
            "import subprocess\nn = 0\nps = []\nfor i in range(100):\n    try:\n        ps.append(subprocess.Popen(['sleep', '5'])); n += 1\n    except OSError:\n        break\nprint(n)\nfor p in ps: p.kill()",
        ])
        .output()
        .unwrap();
    let started: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        started < 20,
        "started {started} children under pids.max 20; {out:?}"
    );
    assert!(started > 5, "started only {started}: {out:?}");
    cg.remove();
}

#[test]
fn cpu_hog_stays_near_its_quota() {
    let cg = cgroup("cpu", limits(64, 200, 16)); // 0.2 core
    let mut child = cg
        .launcher(std::path::Path::new("sh"))
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    std::thread::sleep(Duration::from_millis(300));
    let (t0, start) = (ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let used = (ticks(pid) - t0) as f64 / 100.0; // USER_HZ
    let share = used / start.elapsed().as_secs_f64();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        (0.12..=0.3).contains(&share),
        "CPU share {share:.3} with a 0.2-core quota"
    );
    cg.remove();
}

#[test]
fn process_is_in_the_cgroup_before_it_execs_and_removal_kills_it() {
    let cg = cgroup("join", limits(64, 500, 16));
    let mut child = cg
        .launcher(std::path::Path::new("sleep"))
        .arg("30")
        .spawn()
        .unwrap();
    // The pid that execs `sleep` is the pid the shell wrote into the cgroup.
    let pid = u64::from(child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cg.pids().contains(&pid) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never in {:?}",
            cg.pids()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    cg.remove();
    let status = child.wait().unwrap();
    assert!(!status.success(), "removing the cgroup killed the process");
}
