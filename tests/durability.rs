//! What must never happen to a user's data: a command that writes over a device, an
//! import that lands in part, a store that cannot be opened again.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::nodes::Device;

fn code_and_err(out: &std::process::Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A roster document of `n` entries; `tweak` may change entry `i` (0-based).
fn roster(n: usize, tweak: impl Fn(usize, &mut String)) -> String {
    let mut doc = String::from("<query xmlns='jabber:iq:roster'>");
    for i in 0..n {
        let mut name = format!("User {i}");
        tweak(i, &mut name);
        doc.push_str(&format!(
            "<item jid='user{i}@example.org' name='{name}'><group>G{}</group></item>",
            i % 7
        ));
    }
    doc.push_str("</query>");
    doc
}

#[test]
fn init_never_writes_over_a_device() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    let keys: Vec<Vec<u8>> = ["device.key", "openpgp.key", "secrets.xml"]
        .iter()
        .map(|f| std::fs::read(d.dir.join(f)).expect("key file"))
        .collect();
    for damage in ["missing", "empty"] {
        for f in ["kith.db", "kith.db-wal", "kith.db-shm"] {
            let _ = std::fs::remove_file(d.dir.join(f));
        }
        if damage == "empty" {
            std::fs::write(d.dir.join("kith.db"), b"").expect("write");
            // A log left beside it must survive a look at the directory.
            std::fs::write(d.dir.join("kith.db-wal"), b"a log to restore").expect("write");
        }
        // The hint does not lead to `kith init`...
        let (code, err) = code_and_err(&d.kith(&["status"]));
        assert_eq!(code, Some(6), "{err}");
        assert!(err.contains("holds this device's keys"), "{err}");
        assert!(err.contains("backup"), "{err}");
        assert!(!err.contains("kith init"), "{damage}: {err}");
        // ...and `kith init` refuses, whatever JID it is given.
        for jid in ["romeo@montague.lit", "someone@else.lit"] {
            let (code, err) = code_and_err(&d.kith(&["init", "--jid", jid]));
            assert_eq!(code, Some(6), "{err}");
            assert!(err.contains("already holds a kith device"), "{err}");
        }
        let now: Vec<Vec<u8>> = ["device.key", "openpgp.key", "secrets.xml"]
            .iter()
            .map(|f| std::fs::read(d.dir.join(f)).expect("key file"))
            .collect();
        assert_eq!(now, keys, "{damage}: the keys are untouched");
        if damage == "empty" {
            assert_eq!(std::fs::read(d.dir.join("kith.db")).expect("read"), b"");
            assert_eq!(
                std::fs::read(d.dir.join("kith.db-wal")).expect("the log is still there"),
                b"a log to restore"
            );
        }
    }
    // One key file alone is enough to refuse.
    let other = Device::new();
    std::fs::create_dir_all(&other.dir).expect("mkdir");
    std::fs::write(other.dir.join("secrets.xml"), b"<secrets/>").expect("write");
    let (code, err) = code_and_err(&other.kith(&["init", "--jid", "a@b.lit"]));
    assert_eq!(code, Some(6), "{err}");
    assert_eq!(
        std::fs::read(other.dir.join("secrets.xml")).expect("read"),
        b"<secrets/>"
    );
}

#[test]
fn a_bad_import_stores_nothing_and_names_the_entry() {
    let mut d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    d.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    let doc = roster(20_000, |i, name| {
        if i == 12_344 {
            *name = "x".repeat(4_000);
        }
    });
    let file = d.dir.join("roster.xml");
    std::fs::write(&file, doc).expect("write");
    let file = file.to_str().expect("utf-8");
    for running in [false, true] {
        if running {
            d.start();
        }
        let (code, err) = code_and_err(&d.kith(&["import", "roster", file]));
        assert_eq!(code, Some(3), "{err}");
        assert!(err.contains("roster.xml"), "the file is named: {err}");
        assert!(
            err.contains("entry 12345") && err.contains("user12344@example.org"),
            "the entry is named: {err}"
        );
        assert_eq!(d.jids(), ["juliet@capulet.lit"], "nothing was stored");
    }
    d.stop();
    // Not UTF-8: bad input too (exit 3), not a file that cannot be read (4).
    let latin1 = d.dir.join("latin1.xml");
    std::fs::write(
        &latin1,
        b"<query xmlns='jabber:iq:roster'><item jid='a@b.lit' name='Jos\xe9'/></query>",
    )
    .expect("write");
    let (code, err) = code_and_err(&d.kith(&["import", "roster", latin1.to_str().expect("utf-8")]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
}

/// kill -9 in the middle of an import (after some of its steps, told by its progress
/// lines on the control socket) leaves none of it; after its answer, all of it.
#[test]
fn an_import_killed_at_any_moment_lands_whole_or_not_at_all() {
    use std::io::{BufRead, BufReader, Write};
    let mut d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    let n = 20_000;
    let request = serde_json::json!({"import": {"format": "roster", "text": roster(n, |_, _| {})}});
    let mut line = serde_json::to_vec(&request).expect("JSON");
    line.push(b'\n');
    // (kill after this many progress steps, or after the answer: `None`)
    for kill_after in [Some(1), Some(10), None] {
        d.start();
        let mut s = std::os::unix::net::UnixStream::connect(d.dir.join("control.sock"))
            .expect("the control socket");
        s.write_all(&line).expect("request sent");
        let mut replies = BufReader::new(s);
        let mut steps = 0;
        loop {
            let mut reply = String::new();
            replies.read_line(&mut reply).expect("a reply line");
            let v: serde_json::Value = serde_json::from_str(&reply).expect("JSON reply");
            if let Some(p) = v.get("progress") {
                if p["done"].as_u64().unwrap_or(0) > 0 {
                    steps += 1;
                }
                if Some(steps) == kill_after {
                    break;
                }
            } else {
                assert!(v.get("ok").is_some(), "{v}");
                assert_eq!(kill_after, None, "answered before the kill");
                break;
            }
        }
        d.kill();
        // The store opens, and holds the import whole or not at all.
        let count = d.jids().len();
        let want = if kill_after.is_some() { 0 } else { n };
        assert_eq!(count, want, "after kill -9 at {kill_after:?} steps");
    }
}

#[test]
fn jids_with_empty_or_hyphen_labels_are_refused() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    for bad in ["x@.lit", "a@x..lit", "a@-.lit", "a@x-.lit"] {
        let (code, err) = code_and_err(&d.kith(&["contact", "add", bad]));
        assert_eq!(code, Some(3), "{bad}: {err}");
    }
    assert!(d.jids().is_empty());
}

#[test]
fn a_closed_pipe_ends_a_listing_quietly() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    // Enough output to fill a pipe's buffer.
    let file = d.dir.join("roster.xml");
    std::fs::write(&file, roster(3_000, |_, _| {})).expect("write");
    d.ok(&["import", "roster", file.to_str().expect("utf-8")]);
    for args in [
        &["contact", "list"][..],
        &["contact", "list", "--json"],
        &["status", "--json"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
            .arg("--data-dir")
            .arg(&d.dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kith starts");
        // Read a little, then close the pipe, as `| head -c 10` does.
        let mut out = child.stdout.take().expect("piped");
        let mut first = [0u8; 10];
        let _ = out.read(&mut first);
        drop(out);
        let status = child.wait().expect("kith ends");
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut err)
            .expect("stderr");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
    }
}

/// Commands started together on a stopped node wait for each other instead of one
/// failing with "in use" (found by the attacker helper).
#[test]
fn commands_started_together_on_a_stopped_node_all_succeed() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_kith"))
                .arg("--data-dir")
                .arg(&d.dir)
                .args(["contact", "add", &format!("together{i}@x.lit")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("kith starts")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("kith ends");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(d.jids().len(), 8);
}

/// What a name or group may not be: empty, holding control characters (they would
/// reach every device's terminal), over XEP-0510's limit, or too many: bad input,
/// exit 3, nothing stored.
#[test]
fn names_are_checked_as_input() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    let long = "x".repeat(5_000);
    let many: Vec<String> = (0..300).map(|i| format!("--group=g{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let cases: Vec<Vec<&str>> = vec![
        vec!["contact", "add", "a@x.lit", "--name", &long],
        vec!["contact", "add", "a@x.lit", "--name", "a\u{1b}[31mred"],
        vec!["contact", "add", "a@x.lit", "--group", ""],
        vec!["contact", "add", "a@x.lit", "--group", " "],
        [vec!["contact", "add", "a@x.lit"], many].concat(),
        vec!["group", "add", ""],
        vec!["group", "add", "a\nb"],
    ];
    for args in cases {
        let (code, err) = code_and_err(&d.kith(&args));
        assert_eq!(code, Some(3), "{:?}: {err}", &args[..3]);
    }
    assert!(d.jids().is_empty());
    let out = d.kith(&["import", "roster", "/dev/null"]);
    assert_eq!(out.status.code(), Some(3), "an empty file is not a roster");
    // A character reference to a control character is not XML.
    let file = d.dir.join("esc.xml");
    std::fs::write(
        &file,
        "<query xmlns='jabber:iq:roster'><item jid='a@b.lit' name='a&#x1b;[31mRED'/></query>",
    )
    .expect("write");
    let (code, err) = code_and_err(&d.kith(&["import", "roster", file.to_str().expect("utf-8")]));
    assert_eq!(code, Some(3), "{err}");
}

/// A data directory deep in the tree: its control socket's path is longer than a
/// Unix socket address holds, and the node and the CLI still meet.
#[test]
fn a_data_directory_with_a_long_path_runs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let deep = tmp
        .path()
        .join("d".repeat(60))
        .join("e".repeat(60))
        .join("kith");
    let mut d = Device::at(deep);
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    d.start();
    d.ok(&["contact", "add", "juliet@capulet.lit"]);
    assert_eq!(d.status()["node"]["running"], true);
    d.stop();
    assert_eq!(d.jids(), ["juliet@capulet.lit"]);
}

/// A data directory the first release wrote and then could not open (exit 6, "record
/// is 37915 bytes, more than the limit of 33792"): 1,500 contacts added one by one with
/// `kith contact add`, the acknowledgement timer, a clean stop. Made with that release's
/// own binary (`tests/fixtures/README.md`). It opens, the oversize record is moved
/// aside, nothing else is lost, and the node runs on it and stores new edits.
#[test]
fn a_store_the_first_release_could_not_open_opens_and_runs() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/first-release-bricked.tar.gz"
    );
    let mut d = Device::new();
    std::fs::create_dir_all(&d.dir).expect("data dir");
    let unpacked = Command::new("tar")
        .arg("xzf")
        .arg(fixture)
        .arg("-C")
        .arg(&d.dir)
        .status()
        .expect("tar runs");
    assert!(unpacked.success());
    let (code, err) = code_and_err(&d.kith(&["status"]));
    assert_eq!(code, Some(0), "{err}");
    let status = d.status();
    assert_eq!(status["contacts"], 1500, "{status}");
    assert_eq!(status["quarantined_records"], 1, "{status}");
    let jids = d.jids();
    assert_eq!(jids.len(), 1500);
    assert!(jids.contains(&"c1@example.lit".to_owned()));
    assert!(jids.contains(&"c1500@example.lit".to_owned()));
    d.start();
    d.ok(&["contact", "add", "nurse@capulet.lit", "--name", "Nurse"]);
    d.stop();
    let (code, err) = code_and_err(&d.kith(&["status"]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(d.status()["contacts"], 1501);
    assert!(d.jids().contains(&"nurse@capulet.lit".to_owned()));
}

/// A node started while a long command holds its stopped directory waits for the
/// command instead of failing with "in use" (the chaos harness hit this: a status
/// read of a large store after a kill -9 outlasted the node's old 3 s wait).
#[test]
fn a_node_started_while_a_command_holds_the_directory_waits_for_it() {
    let mut d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    let file = d.dir.join("roster.xml");
    std::fs::write(&file, roster(10_000, |_, _| {})).expect("write");
    let import = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data-dir")
        .arg(&d.dir)
        .args(["import", "roster"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kith starts");
    // The node starts, whoever takes the directory first (waits for the node to
    // listen, and fails the test if it exits).
    d.start();
    let out = import.wait_with_output().expect("the import ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.running(), "the node runs: {}", d.log());
    assert_eq!(d.status()["contacts"], 10_000, "{}", d.status());
}

/// A running node writes its item index and history a moment behind the records: a
/// kill -9 right after the commands (before or after that write) loses none of
/// their changes from `kith log`, and the index the next open rebuilds serves a
/// command on the stopped node.
#[test]
fn the_history_written_behind_survives_a_kill_9() {
    let mut d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    d.start();
    let jids = ["a@x.lit", "b@x.lit", "c@x.lit"];
    for j in jids {
        d.ok(&["contact", "add", j, "--name", &format!("Name of {j}")]);
    }
    let status = d.status();
    let behind = status
        .get("index_behind")
        .expect("status says index_behind");
    assert!(behind.is_null() || behind.as_u64().is_some(), "{status}");
    d.kill();
    // A command on the stopped node first (it reads the index when current), then
    // the log (a full open, rebuilding the index if it is not).
    let shown = d.ok(&["contact", "show", "b@x.lit"]);
    assert!(shown.contains("Name of b@x.lit"), "{shown}");
    let log = d.ok(&["log", "--json"]);
    for j in jids {
        assert!(log.contains(j), "{j} missing from the log: {log}");
    }
    // And after a clean stop (which writes what waits).
    d.start();
    d.ok(&["contact", "add", "d@x.lit"]);
    d.stop();
    let log = d.ok(&["log", "--json"]);
    assert!(log.contains("d@x.lit"), "{log}");
}
