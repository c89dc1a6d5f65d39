//! Helpers for tests that run `kith run` processes: a device with its own data
//! directory whose node is stopped by pid when the test ends, also when it fails.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any one condition may take to come true.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// A device: a data directory and, while it runs, its `kith run` process.
pub(crate) struct Device {
    pub(crate) dir: PathBuf,
    /// Commands run through this prefix (e.g. `ip netns exec NS`).
    prefix: Vec<String>,
    /// Environment variables every command of this device gets.
    envs: Vec<(String, String)>,
    child: Option<Child>,
    tmp: tempfile::TempDir,
}

impl Device {
    /// A device in a fresh temporary directory (not initialised).
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("kith");
        Self {
            dir,
            prefix: Vec::new(),
            envs: Vec::new(),
            child: None,
            tmp,
        }
    }

    /// A device whose data directory is `dir` (its log stays in a temporary
    /// directory of its own).
    pub(crate) fn at(dir: PathBuf) -> Self {
        let mut d = Self::new();
        d.dir = dir;
        d
    }

    /// Gives every command of this device the variable `key`.
    pub(crate) fn with_env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the node's commands (`run`, `pair join`) under `prefix`.
    pub(crate) fn with_prefix(mut self, prefix: &[&str]) -> Self {
        self.prefix = prefix.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// From now on, runs the node's commands under `prefix` (a device paired in
    /// one network, then run in another).
    pub(crate) fn set_prefix(&mut self, prefix: &[&str]) {
        self.prefix = prefix.iter().map(|s| (*s).to_owned()).collect();
    }

    fn command(&self, prefixed: bool) -> Command {
        let bin = env!("CARGO_BIN_EXE_kith");
        let mut cmd = if prefixed && !self.prefix.is_empty() {
            let mut c = Command::new(&self.prefix[0]);
            c.args(&self.prefix[1..]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.arg("--data-dir").arg(&self.dir);
        // Tables are never narrowed to a width the test runner's shell has.
        cmd.env_remove("COLUMNS");
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `kith --data-dir DIR args…` to completion.
    pub(crate) fn kith(&self, args: &[&str]) -> Output {
        self.kith_prefixed(args, false)
    }

    /// Like [`Device::kith`], under the prefix when `prefixed`.
    pub(crate) fn kith_prefixed(&self, args: &[&str], prefixed: bool) -> Output {
        self.command(prefixed)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("kith runs")
    }

    /// Starts `kith --data-dir DIR args…` in the background, its stdout piped; it is
    /// killed (by pid) when the handle drops, also when the test fails.
    pub(crate) fn spawn(&self, args: &[&str]) -> Background {
        let child = self
            .command(false)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kith starts");
        Background(Some(child))
    }

    /// Runs a command that must succeed; returns its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.kith(args);
        assert!(
            out.status.success(),
            "kith {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a listing with `--json` and parses it.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("JSON output")
    }

    /// Sorted JIDs of the contact list.
    pub(crate) fn jids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .json(&["contact", "list"])
            .as_array()
            .expect("a list")
            .iter()
            .flat_map(|c| c["jids"].as_array().cloned().unwrap_or_default())
            .filter_map(|j| j.as_str().map(str::to_owned))
            .collect();
        v.sort();
        v
    }

    /// The contact list as (jids, name, groups), sorted.
    pub(crate) fn list(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<(String, String, String)> = self
            .json(&["contact", "list"])
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| {
                (
                    c["jids"].to_string(),
                    c["name"].to_string(),
                    c["groups"].to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Starts `kith run` (listening on `listen`, plus `extra` options) and waits
    /// until it answers with a listen address.
    pub(crate) fn start_with(&mut self, listen: &str, extra: &[&str]) {
        self.start_within(listen, extra, DEADLINE);
    }

    /// [`Device::start_with`], waiting up to `deadline` (a large store opens slowly
    /// after a kill -9: every row is checked).
    pub(crate) fn start_within(&mut self, listen: &str, extra: &[&str], deadline: Duration) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let child = self
            .command(true)
            .args(["run", "--listen", listen])
            .args(extra)
            .env("RUST_LOG", "info,kith_node=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kith run starts");
        self.child = Some(child);
        self.wait_within("the node to listen", deadline, |d| {
            d.status()["node"]["listen"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        });
    }

    /// Starts `kith run` on loopback without mDNS.
    pub(crate) fn start(&mut self) {
        self.start_with("/ip4/127.0.0.1/tcp/0", &["--no-mdns"]);
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.path().join("node.log")
    }

    /// The node's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `kith status --json`, or `Null` while it fails.
    pub(crate) fn status(&self) -> Value {
        let out = self.kith(&["status", "--json"]);
        if !out.status.success() {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Polls `cond` until it holds; fails the test (with the node's log) after
    /// [`DEADLINE`].
    pub(crate) fn wait(&self, what: &str, cond: impl FnMut(&Self) -> bool) {
        self.wait_within(what, DEADLINE, cond);
    }

    /// [`Device::wait`] with another deadline (for runs whose size is chosen at
    /// run time).
    pub(crate) fn wait_within(
        &self,
        what: &str,
        deadline: Duration,
        mut cond: impl FnMut(&Self) -> bool,
    ) {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < deadline,
                "timed out waiting for {what} in {}; log:\n{}",
                self.dir.display(),
                tail(&self.log())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the node: SIGTERM, then SIGKILL after 10 s.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        // SAFETY: signalling a child process this test started, by pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
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

    /// The address the running node listens on (`/ip4/…/tcp/PORT`).
    pub(crate) fn listen_addr(&self) -> String {
        self.status()["node"]["listen"][0]
            .as_str()
            .expect("a listening node")
            .to_owned()
    }

    /// Kills the node at once (SIGKILL), as a power cut would.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the node process to end by itself; its exit code.
    pub(crate) fn exit_code(&mut self) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Whether the node process is still alive.
    pub(crate) fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// An invite code from this (running) device, with its addresses (what works
    /// without mDNS).
    pub(crate) fn invite(&self) -> String {
        long_code(&self.ok(&["pair", "invite", "--ttl", "5m", "--no-wait"]))
    }

    /// An invite code for a relay device (`pair invite --relay`), with addresses.
    pub(crate) fn invite_relay(&self) -> String {
        long_code(&self.ok(&["pair", "invite", "--relay", "--ttl", "5m", "--no-wait"]))
    }

    /// Joins the account of `inviter` as `name`, and starts.
    pub(crate) fn join(&mut self, inviter: &Device, name: &str) {
        let code = inviter.invite();
        let out = self.kith_prefixed(&["pair", "join", &code, "--name", name], true);
        assert!(
            out.status.success(),
            "pair join: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A `kith` command running in the background ([`Device::spawn`]).
pub(crate) struct Background(Option<Child>);

impl Background {
    /// Its first `n` lines of stdout (blocks until they come or it exits).
    pub(crate) fn lines(&mut self, n: usize) -> String {
        use std::io::BufRead as _;
        let out = self
            .0
            .as_mut()
            .and_then(|c| c.stdout.as_mut())
            .expect("stdout piped");
        let mut reader = std::io::BufReader::new(out);
        let mut text = String::new();
        for _ in 0..n {
            if reader.read_line(&mut text).unwrap_or(0) == 0 {
                break;
            }
        }
        text
    }

    /// Waits for it to exit (within [`DEADLINE`], else kills it and fails): its exit
    /// code, the rest of its stdout, its stderr.
    pub(crate) fn finish(mut self) -> (Option<i32>, String, String) {
        let mut child = self.0.take().expect("running");
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("a background kith did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("its output");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last word of the line of what `kith pair invite` printed that starts so.
fn last_word_of(printed: &str, line: &str) -> String {
    printed
        .lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no {line:?} line in {printed:?}"))
        .to_owned()
}

/// The code with addresses in what `kith pair invite` printed (its line for another
/// network).
pub(crate) fn long_code(printed: &str) -> String {
    last_word_of(printed, "From another network")
}

/// The code alone (`K7QX2-M9PDA`) in what `kith pair invite` printed.
pub(crate) fn short_code(printed: &str) -> String {
    last_word_of(printed, "On the new device")
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop();
        // A failed test deletes the directory with the log: say what the node said
        // last (without its debug lines, which bury the rest in a long run).
        if std::thread::panicking() {
            let log = self.log();
            let said: Vec<&str> = log.lines().filter(|l| !l.contains("DEBUG")).collect();
            eprintln!(
                "--- the node in {} said last:\n{}",
                self.dir.display(),
                said[said.len().saturating_sub(20)..].join("\n")
            );
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Devices of one account, on loopback without mDNS: the first creates it, the
/// others pair with it; all run and hold the secrets.
pub(crate) fn account(names: &[&str]) -> Vec<Device> {
    let mut first = Device::new();
    first.ok(&["init", "--jid", "romeo@montague.lit", "--name", names[0]]);
    first.start();
    let mut devices = vec![first];
    for name in &names[1..] {
        let mut d = Device::new();
        d.join(&devices[0], name);
        d.start();
        d.wait("the secrets", |d| {
            let s = d.status();
            s["waiting_for_secret"] == 0 && s["records"]["keys"].as_u64().unwrap_or(0) > 0
        });
        devices.push(d);
    }
    devices
}

/// Waits until every device has the same contact list; returns it.
pub(crate) fn converge(devices: &[&Device]) -> Vec<(String, String, String)> {
    converge_within(devices, DEADLINE)
}

/// [`converge`] with another deadline.
/// Waits until every device lists the same contacts, as long as they are getting
/// there: fails when no device's list changed for `stall`, or after `cap` in all.
/// For runs whose last catching-up is large (a device that missed rotations of
/// 100,000 contacts receives them all at the end), where how long it takes says
/// how fast sync is, not whether it converges.
pub(crate) fn converge_while_progressing(
    devices: &[&Device],
    stall: Duration,
    cap: Duration,
) -> Vec<(String, String, String)> {
    let first = devices[0];
    let start = Instant::now();
    let mut last: Vec<Vec<(String, String, String)>> = Vec::new();
    let mut moved = Instant::now();
    loop {
        let lists: Vec<_> = devices.iter().map(|d| d.list()).collect();
        if lists.windows(2).all(|w| w[0] == w[1]) {
            return lists.into_iter().next().unwrap_or_default();
        }
        if lists != last {
            last = lists;
            moved = Instant::now();
        }
        assert!(
            moved.elapsed() < stall && start.elapsed() < cap,
            "the devices did not agree ({} s since a list last changed, {} s in all) in {}; log:\n{}",
            moved.elapsed().as_secs(),
            start.elapsed().as_secs(),
            first.dir.display(),
            tail(&first.log())
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub(crate) fn converge_within(
    devices: &[&Device],
    deadline: Duration,
) -> Vec<(String, String, String)> {
    let first = devices[0];
    first.wait_within("every device to agree", deadline, |_| {
        let lists: Vec<_> = devices.iter().map(|d| d.list()).collect();
        lists.windows(2).all(|w| w[0] == w[1])
    });
    first.list()
}
