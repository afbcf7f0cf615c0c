//! Running third-party peers (and Strata itself) as child processes.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// The path of a peer binary: the first of `candidates` that exists
/// (absolute paths) or is found on `PATH`.
pub fn find_binary(candidates: &[&str]) -> Option<PathBuf> {
    for c in candidates {
        let p = Path::new(c);
        if p.is_absolute() {
            if p.is_file() {
                return Some(p.to_path_buf());
            }
            continue;
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let full = dir.join(c);
                if full.is_file() {
                    return Some(full);
                }
            }
        }
    }
    None
}

/// True when `STRATA_COMPAT_REQUIRE=1`: a missing peer is then a failure,
/// not a skip (CI sets it).
pub fn peers_required() -> bool {
    std::env::var("STRATA_COMPAT_REQUIRE").is_ok_and(|v| v == "1")
}

/// Looks up every named peer; returns their paths, or `None` after printing
/// why the caller should skip. Panics instead when peers are required.
pub fn require_peers(what: &str, peers: &[(&str, &[&str])]) -> Option<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (name, candidates) in peers {
        match find_binary(candidates) {
            Some(p) => found.push(p),
            None => missing.push(*name),
        }
    }
    if missing.is_empty() {
        return Some(found);
    }
    let msg = format!(
        "{what}: peer(s) not installed: {} (apt-get install {}; `bash .ci/run` does this)",
        missing.join(", "),
        missing.join(" ")
    );
    if peers_required() {
        panic!("{msg}; STRATA_COMPAT_REQUIRE=1 makes this a failure");
    }
    eprintln!("SKIPPED {msg}");
    None
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
/// Its stdout and stderr go to `<log_dir>/<name>.log`.
pub struct Proc {
    /// Short name used in messages and the log file name.
    pub name: String,
    /// The log file.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `program args…` with output to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("creating log file");
        let err = out.try_clone().expect("cloning log file");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        Proc {
            name: name.to_string(),
            log,
            child: Some(child),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Panics with the tail of the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!(
                    "{} exited early ({status}); log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
        }
    }

    /// The last `n` lines of the process's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Sends SIGTERM and waits up to `grace` for exit, then SIGKILLs.
    /// Returns true when the process exited on its own after SIGTERM.
    pub fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Polls `url` until it answers 2xx or `timeout` passes; checks that `proc`
/// is still alive in between so a crash fails fast with its log.
pub fn wait_ready(proc: &mut Proc, url: &str, timeout: Duration) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
    let deadline = Instant::now() + timeout;
    loop {
        proc.assert_running();
        if let Ok(r) = client.get(url).send() {
            if r.status().is_success() {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "{} not ready at {url} after {timeout:?}; log tail:\n{}",
                proc.name,
                proc.log_tail(40)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// CPU seconds (user + system) used so far by process `pid`, from
/// `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after the last ')'. utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // fields[0] is field 3 (state), so field 14 is fields[11].
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// Peak resident set size in bytes (`VmHWM` in `/proc/<pid>/status`).
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Disk use of everything under a directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirUsage {
    /// Sum of file lengths (what `du --apparent-size -b` prints).
    pub apparent: u64,
    /// Blocks actually allocated (what `du -B1` prints).
    pub allocated: u64,
}

/// Disk use of the regular files under `dir`, recursively.
pub fn dir_usage(dir: &Path) -> DirUsage {
    use std::os::unix::fs::MetadataExt;
    let mut u = DirUsage::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return u;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            let sub = dir_usage(&e.path());
            u.apparent += sub.apparent;
            u.allocated += sub.allocated;
        } else if meta.is_file() {
            u.apparent += meta.len();
            u.allocated += meta.blocks() * 512;
        }
    }
    u
}
