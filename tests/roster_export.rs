//! `kith export roster --full --xep0227` loaded by Prosody, an independent server:
//! Prosody reads the document as the account's roster (its own XEP-0227 storage
//! module, `storage = { roster = "xep0227" }`), and a slixmpp client logged in to
//! it fetches the roster with the names and groups kith holds. Needs `prosody` and
//! `prosodyctl` (`.ci/run` installs them) and a Python with slixmpp; skipped without
//! them unless `KITH_REQUIRE_PROSODY=1` (CI), which turns that into a failure.
//! Prosody listens on 127.0.0.1 only and is stopped by its pid, also on failure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::nodes::Device;
use crate::util::*;
use crate::xmpp::python;

/// Whether Prosody is here; panics when it is required and missing.
fn prosody_present() -> bool {
    let ok = ["prosody", "prosodyctl"].iter().all(|bin| {
        Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        assert!(
            std::env::var("KITH_REQUIRE_PROSODY").as_deref() != Ok("1"),
            "Prosody is required (KITH_REQUIRE_PROSODY=1) but prosody or prosodyctl is missing"
        );
        eprintln!("SKIPPED: no Prosody (apt install prosody; see .ci/run)");
    }
    ok
}

/// A Prosody process, stopped (by pid) and reaped when dropped.
struct Prosody(Child);

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on loopback a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Prosody's configuration: one virtual host, client connections on loopback only,
/// no TLS (no certificate here), passwords stored plain, the roster read from
/// XEP-0227 files in `data`, nothing else listening.
fn config(dir: &Path, port: u16) -> String {
    let d = path(dir);
    format!(
        r#"data_path = "{d}/data"
pidfile = "{d}/prosody.pid"
certificates = "{d}/certs"
run_as_root = true
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster", "saslauth", "disco" }}
modules_disabled = {{ "s2s", "offline" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = {{ roster = "xep0227" }}
log = {{ info = "{d}/prosody.log" }}
VirtualHost "montague.lit"
"#
    )
}

#[test]
fn prosody_loads_the_exported_roster_with_names_and_groups() {
    if !prosody_present() {
        return;
    }
    let Some(python) = python() else { return };
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    d.ok(&[
        "contact",
        "add",
        "juliet@capulet.lit",
        "--name",
        "Juliet & <the \"balcony\">",
        "--group",
        "Lovers",
        "--group",
        "Friends",
    ]);
    d.ok(&[
        "contact",
        "edit",
        "juliet@capulet.lit",
        "--add-jid",
        "juliet@verona.lit",
    ]);
    d.ok(&["contact", "add", "nurse@capulet.lit"]);
    d.ok(&[
        "contact",
        "add",
        "tybalt@capulet.lit",
        "--name",
        "Tybalt 🗡 提伯尔特",
    ]);
    let exported = d.ok(&["export", "roster", "--full", "--xep0227"]);

    let tmp = tempfile::tempdir().expect("temp dir");
    for sub in ["data", "certs"] {
        std::fs::create_dir(tmp.path().join(sub)).expect("dir");
    }
    // Where Prosody's XEP-0227 storage looks for the user's document.
    file(
        &tmp.path().join("data"),
        "romeo@montague.lit.xml",
        &exported,
    );
    let port = free_port();
    let cfg = file(tmp.path(), "prosody.cfg.lua", config(tmp.path(), port));
    let out = Command::new("prosodyctl")
        .args([
            "--config",
            path(&cfg),
            "register",
            "romeo",
            "montague.lit",
            "s3cret",
        ])
        .output()
        .expect("prosodyctl runs");
    assert!(
        out.status.success(),
        "prosodyctl register: {}",
        stderr(&out)
    );

    let _prosody = Prosody(
        Command::new("prosody")
            .args(["-F", "--config", path(&cfg)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prosody starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "Prosody did not listen within 30 s: {}",
            std::fs::read_to_string(tmp.path().join("prosody.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xmpp/roster_client.py");
    let out = Command::new(&python)
        .args([
            script,
            "--jid",
            "romeo@montague.lit",
            "--password",
            "s3cret",
        ])
        .args(["--port", &port.to_string(), "--timeout", "30"])
        .output()
        .expect("the client runs");
    assert!(
        out.status.success(),
        "the client: {}\nProsody said: {}",
        stderr(&out),
        std::fs::read_to_string(tmp.path().join("prosody.log")).unwrap_or_default()
    );
    let roster: Value = serde_json::from_slice(&out.stdout).expect("the roster as JSON");
    let juliet = json!({
        "name": "Juliet & <the \"balcony\">",
        "groups": ["Friends", "Lovers"],
        "subscription": "none",
    });
    assert_eq!(
        roster,
        json!({
            "juliet@capulet.lit": juliet,
            "juliet@verona.lit": juliet,
            "nurse@capulet.lit": {"name": null, "groups": [], "subscription": "none"},
            "tybalt@capulet.lit": {"name": "Tybalt 🗡 提伯尔特", "groups": [], "subscription": "none"},
        })
    );
}

/// An account of a bare domain has no user to file a XEP-0227 roster under: exit 1
/// with the reason, and the plain roster still exports.
#[test]
fn an_account_without_a_user_has_no_xep0227_roster() {
    let d = Device::new();
    d.ok(&["init", "--jid", "montague.lit", "--name", "laptop"]);
    d.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    let out = d.kith(&["export", "roster", "--xep0227"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("montague.lit has no local part"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
    assert_eq!(
        d.ok(&["export", "roster", "--full"]),
        "<query xmlns='jabber:iq:roster'><item jid='juliet@capulet.lit' name='Juliet'/></query>\n"
    );
}

/// With the node running, the export comes through the control socket, the same.
#[test]
fn a_running_node_exports_the_same_roster() {
    let mut d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    d.ok(&[
        "contact",
        "add",
        "juliet@capulet.lit",
        "--name",
        "Juliet",
        "--group",
        "Friends",
    ]);
    let stopped = d.ok(&["export", "roster", "--full", "--xep0227"]);
    d.start();
    assert_eq!(d.ok(&["export", "roster", "--full", "--xep0227"]), stopped);
    assert!(stopped.contains("<group>Friends</group>"), "{stopped}");
}
