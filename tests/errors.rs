//! Bad input of every kind: one line on stderr, a documented exit code, and nothing
//! already stored lost.

use std::process::Output;

use crate::nodes::Device;

fn fails(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("kith: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

#[test]
fn commands_on_a_missing_or_existing_device() {
    let d = Device::new();
    fails(&d.kith(&["status"]), 6, "no kith device");
    fails(&d.kith(&["contact", "list"]), 6, "kith init");
    fails(&d.kith(&["init", "--jid", "not a jid"]), 3, "not a jid");
    let out = d.kith(&["init"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage code");
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    fails(
        &d.kith(&["init", "--jid", "romeo@montague.lit"]),
        6,
        "already holds",
    );
    fails(&d.kith(&["contact", "add", "@@bad"]), 3, "is not a JID");
    fails(
        &d.kith(&["contact", "rm", "nobody@example.org"]),
        1,
        "no contact",
    );
    fails(&d.kith(&["pair", "invite"]), 7, "kith run");
    let out = d.kith(&["pair", "invite", "--ttl", "ten"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage code");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
    fails(
        &d.kith(&["device", "revoke", "nosuchdevice"]),
        1,
        "no device",
    );
    fails(
        &d.kith(&["device", "revoke", "laptop"]),
        1,
        "cannot revoke itself",
    );
    fails(
        &d.kith(&["import", "roster", "/nonexistent/r.xml"]),
        4,
        "r.xml",
    );
    let bad = d.dir.join("bad.xml");
    std::fs::write(&bad, "<query xmlns='jabber:iq:roster'><item/></query>").expect("write");
    fails(
        &d.kith(&["import", "roster", bad.to_str().expect("utf-8")]),
        3,
        "no jid",
    );
    // Nothing of the above changed the device.
    d.ok(&["contact", "add", "juliet@capulet.lit"]);
    assert_eq!(d.jids(), ["juliet@capulet.lit"]);
}

#[test]
fn a_second_node_on_one_data_directory_is_refused() {
    let mut d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    d.start();
    let out = d.kith(&["run", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another kith process"));
    assert!(d.running(), "the first node still runs");
    let other = Device::new();
    other.ok(&["init", "--jid", "romeo@montague.lit"]);
    let out = other.kith(&["run", "--listen", "/ip4/192.0.2.1/tcp/0", "--no-mdns"]);
    assert_eq!(out.status.code(), Some(5), "an address not of this machine");
    let out = other.kith(&["run", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    let out = other.kith(&[
        "run",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--mdns-interface",
        "nonexist0",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexist0"));
    d.ok(&["contact", "add", "juliet@capulet.lit"]);
}

#[test]
fn a_corrupt_store_is_reported_and_left_alone() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    let db = d.dir.join("kith.db");
    let garbage = vec![0x5Au8; 8192];
    std::fs::write(&db, &garbage).expect("write");
    let _ = std::fs::remove_file(d.dir.join("kith.db-wal"));
    let _ = std::fs::remove_file(d.dir.join("kith.db-shm"));
    fails(&d.kith(&["contact", "list"]), 6, "kith.db");
    assert_eq!(std::fs::read(&db).expect("read"), garbage, "left as it was");
}

/// A small tmpfs, unmounted on drop (also when the test fails).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self { dir })
    }

    /// Fills the disk; returns the filler's path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_is_reported_and_loses_nothing() {
    let disk = match SmallDisk::mount() {
        Ok(d) => d,
        Err(e) => {
            assert!(
                std::env::var("KITH_REQUIRE_NETNS").as_deref() != Ok("1"),
                "root is required here (CI) but mounting a tmpfs failed: {e}"
            );
            eprintln!("SKIPPED: cannot mount a small tmpfs (run as root): {e}");
            return;
        }
    };
    let mut d = Device::at(disk.dir.path().join("kith"));
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    d.ok(&["contact", "add", "juliet@capulet.lit"]);

    // No node: the command fails, the store keeps what it had.
    let filler = disk.fill();
    let out = d.kith(&["contact", "add", "tybalt@capulet.lit"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Reading still works on a full disk.
    assert_eq!(d.jids(), ["juliet@capulet.lit"]);
    d.ok(&["group", "list"]);
    std::fs::remove_file(&filler).expect("room again");
    assert_eq!(d.jids(), ["juliet@capulet.lit"]);

    // A running node: the command fails, the node stops (exit 6) rather than send
    // what it could not keep; after a restart everything stored is there.
    d.start();
    let filler = disk.fill();
    let out = d.kith(&["contact", "add", "tybalt@capulet.lit"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.exit_code(), Some(6), "the node stops: {}", d.log());
    std::fs::remove_file(&filler).expect("room again");
    d.start();
    assert_eq!(d.jids(), ["juliet@capulet.lit"]);
    d.ok(&["contact", "add", "tybalt@capulet.lit"]);
    assert_eq!(d.jids(), ["juliet@capulet.lit", "tybalt@capulet.lit"]);
    d.stop();
}

/// A node that stops tells every client still waiting on its control socket why
/// (a wait held by the node), rather than hanging up on it.
#[test]
fn a_stopping_node_answers_the_clients_it_holds() {
    use std::io::{BufRead, BufReader, Write};
    let mut d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    d.start();
    let changes = d.status()["changes"].as_u64().expect("a change count");
    let mut s = std::os::unix::net::UnixStream::connect(d.dir.join("control.sock"))
        .expect("the control socket");
    let wait = serde_json::json!({"wait": {"after": changes + 1_000, "timeout_ms": 600_000}});
    let mut line = serde_json::to_vec(&wait).expect("JSON");
    line.push(b'\n');
    s.write_all(&line).expect("request sent");
    // Two commands answered after it: the node has read the wait by then.
    d.ok(&["status"]);
    d.ok(&["status"]);
    d.stop();
    let mut reply = String::new();
    BufReader::new(s)
        .read_line(&mut reply)
        .expect("a reply line");
    let v: serde_json::Value = serde_json::from_str(&reply).expect("a JSON reply, not a hang-up");
    assert_eq!(v["error"]["kind"], "not_running", "{v}");
}
