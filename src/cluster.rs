//! Nodes on loopback for `kith demo` and `kith bench`: each is a `kith run` child
//! process (listening on 127.0.0.1, mDNS on `lo` only) stopped by pid when dropped,
//! and by the kernel when this process ends without dropping it.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith_node::api::Payload;
use kith_node::api::Request;
use kith_node::api::answer::{Changes, ContactList, Invited};
use kith_node::api::status::Status;

use crate::ops;

/// A running `kith run`, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub(crate) struct Node {
    /// Its data directory.
    pub(crate) dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts `kith run` on `dir` with loopback-only networking; waits until it
    /// listens. `mdns` turns on discovery restricted to `lo`.
    pub(crate) fn start(dir: &Path, mdns: bool) -> Result<Self> {
        let log = std::fs::File::create(dir.join("node.log")).context("node log")?;
        let mut cmd = Command::new(std::env::current_exe().context("own executable")?);
        cmd.arg("--data-dir")
            .arg(dir)
            .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"]);
        if mdns {
            cmd.args(["--mdns-interface", "lo"]);
        } else {
            cmd.arg("--no-mdns");
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        // Stopped with this process however it ends (a kill of the demo or the
        // bench alone would leave its nodes running): the kernel sends the child
        // SIGTERM when the thread that started it ends, and every node is started
        // from the main thread.
        // Should this process end between the fork and the prctl, the child is
        // not started (it would miss the signal).
        let parent = std::process::id();
        // SAFETY: the closure runs in the child between fork and exec: raw system
        // calls (prctl, getppid) and errno only, no allocation and no lock.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting kith run")?;
        let node = Self {
            dir: dir.to_owned(),
            child: Some(child),
        };
        node.wait("the node to listen", Duration::from_secs(30), |n| {
            let s: Status = n.call(Request::Status)?;
            Ok(!s.node.listen.is_empty())
        })?;
        Ok(node)
    }

    /// Answers a request through the node's control socket only (opening the store
    /// here would race with a node that is starting).
    pub(crate) fn call<T: Payload>(&self, request: Request) -> Result<T> {
        let answer = ops::via_node(&self.dir, &request, &mut |_, _| {})?
            .context("the node's control socket is not there")?;
        Ok(T::try_from(answer).map_err(crate::Exit::from)?)
    }

    /// Answers a request on the store of a stopped node.
    pub(crate) fn call_offline<T: Payload>(&self, request: Request) -> Result<T> {
        let answer = ops::call(&self.dir, request, &mut |_, _| {})?;
        Ok(T::try_from(answer).map_err(crate::Exit::from)?)
    }

    /// Polls `ready` every 5 ms until it holds or `limit` passes.
    pub(crate) fn wait(
        &self,
        what: &str,
        limit: Duration,
        mut ready: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if ready(self).unwrap_or(false) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "timed out after {limit:?} waiting for {what} ({})",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// How many times the node stored something since it started.
    pub(crate) fn changes(&self) -> Result<u64> {
        Ok(self.counts()?.changes)
    }

    /// How many times the node stored something since it started, and the contacts
    /// it holds.
    pub(crate) fn counts(&self) -> Result<Changes> {
        // A wait that is due at once answers with the counts, and costs the node
        // nothing (a status counts the store's rows).
        self.call(Request::Wait {
            after: u64::MAX,
            timeout_ms: 0,
        })
    }

    /// Waits until the node holds at least `n` contacts ([`Node::wait_counts`]).
    pub(crate) fn wait_contacts(
        &self,
        seen: u64,
        what: &str,
        limit: Duration,
        n: usize,
    ) -> Result<Duration> {
        self.wait_counts(seen, what, limit, |c| c.contacts >= n as u64)
    }

    /// Waits until `ready` holds of the counts a wait answers with, reading them
    /// from each wait's answer: no further call (a `status` counts every stored
    /// row, and at 100,000 contacts slowed the very sync being timed) and no
    /// polling interval. After a count (`seen` > 0, from [`Node::changes`]) it waits
    /// first, as what it waits for comes after that count; from 0 it checks first.
    pub(crate) fn wait_counts(
        &self,
        mut seen: u64,
        what: &str,
        limit: Duration,
        mut ready: impl FnMut(&Changes) -> bool,
    ) -> Result<Duration> {
        let start = Instant::now();
        // A wait past every count, of no time, answers at once with the counts.
        let (mut after, mut timeout_ms) = if seen > 0 {
            (seen, 1_000)
        } else {
            (u64::MAX, 0)
        };
        loop {
            let c: Changes = self.call(Request::Wait { after, timeout_ms })?;
            if ready(&c) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "timed out after {limit:?} waiting for {what}: {} contacts ({})",
                    c.contacts,
                    self.dir.display()
                );
            }
            seen = seen.max(c.changes);
            (after, timeout_ms) = (seen, 1_000);
        }
    }

    /// JIDs of the merged contact list, sorted.
    pub(crate) fn jids(&self) -> Result<Vec<String>> {
        let ContactList(contacts) = self.call(Request::Contacts)?;
        let mut out: Vec<String> = contacts.into_iter().flat_map(|c| c.jids).collect();
        out.sort();
        Ok(out)
    }

    /// Number of contacts.
    pub(crate) fn count(&self) -> Result<usize> {
        let s: Status = self.call(Request::Status)?;
        Ok(s.contacts)
    }

    /// Stops the node (SIGTERM, waiting up to 10 s, then SIGKILL).
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: signalling our own child process by pid.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Resident memory of the node process, in KiB (Linux).
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        self.proc_status("VmRSS:")
    }

    /// The most resident memory the node process has had, in KiB (Linux).
    pub(crate) fn peak_kib(&self) -> Option<u64> {
        self.proc_status("VmHWM:")
    }

    /// Processor time the node process has used so far ([`process_cpu`]); `None`
    /// when it is not running or its `/proc` entry does not read.
    pub(crate) fn cpu(&self) -> Option<Duration> {
        process_cpu(self.child.as_ref()?.id())
    }

    fn proc_status(&self, field: &str) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

/// Processor time process `pid` has used so far, over all its threads, ended ones
/// included (user and system; Linux, `/proc/PID/stat`, in the kernel's clock
/// ticks, 10 ms here: each reading is up to one tick short).
pub(crate) fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(cpu_tick()?.saturating_mul(u32::try_from(cpu_ticks(&stat)?).ok()?))
}

/// The kernel's clock tick, the unit of [`process_cpu`] (10 ms here).
pub(crate) fn cpu_tick() -> Option<Duration> {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(Duration::from_nanos(1_000_000_000 / hz))
}

/// The processor time (user and system, in clock ticks) a `/proc/PID/stat` line
/// names. The command name (its second field) is in parentheses and may hold
/// spaces and parentheses: the fields are counted after the last `)`. utime and
/// stime are fields 14 and 15, so the 12th and 13th after it.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    user.checked_add(system)
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates the first device of an account in `dir`.
pub(crate) fn init(dir: &Path, jid: &str, name: &str) -> Result<()> {
    kith_node::Device::init(dir, jid, name).map_err(crate::Exit::from)?;
    Ok(())
}

/// Pairs a new device in `dir` with the running `inviter`.
pub(crate) fn pair(inviter: &Node, dir: &Path, name: &str) -> Result<()> {
    let invited: Invited = inviter.call(Request::Invite {
        ttl_secs: 600,
        relay: false,
    })?;
    let code = invited.long_code;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(kith_node::join::join(
        dir,
        &code,
        name,
        kith_protocol::roster::Role::Full,
        kith_node::store::KeyFiles::clear(),
        &kith_node::join::Find::default(),
    ))
    .map_err(crate::Exit::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cpu_ticks;

    #[test]
    fn processor_time_is_read_after_the_command_name_whatever_it_holds() {
        let stat = "4242 (kith) x (y) S 1 4242 4242 0 -1 4194560 900 0 0 0 137 25 0 0 20 0 7 0";
        assert_eq!(cpu_ticks(stat), Some(162));
        assert_eq!(cpu_ticks("4242 (kith) S 1"), None, "too few fields");
        assert_eq!(cpu_ticks("no parentheses at all"), None);
    }
}
