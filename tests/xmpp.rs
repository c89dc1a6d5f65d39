//! kith's PEP service driven by slixmpp (an independent XMPP implementation) and
//! GnuPG: two paired devices, one approved client on each, publish / events /
//! retrieve / paging / retract / preconditions / bad payloads / a removed client
//! (tests/xmpp/pep_client.py holds the checks). Needs a Python with slixmpp:
//! `KITH_PYTHON` (set by `.ci/run`, which installs it in a venv); skipped without
//! it unless `KITH_REQUIRE_SLIXMPP=1` (CI), which turns that into a failure.

use std::process::Command;

use crate::nodes::{Device, account};
use crate::util::*;

/// The Python to run the client with, if it has slixmpp.
pub(crate) fn python() -> Option<String> {
    let python = std::env::var("KITH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import slixmpp, zeroconf"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("KITH_REQUIRE_SLIXMPP").as_deref() != Ok("1"),
            "slixmpp is required (KITH_REQUIRE_SLIXMPP=1) but {python} cannot import it"
        );
        eprintln!("SKIPPED: no Python with slixmpp (set KITH_PYTHON; see .ci/run)");
        return None;
    }
    Some(python)
}

/// A GnuPG key for a client: its home and fingerprint; the certificate is exported
/// to `cert`.
fn client_key(gpg: &Gpg, uid: &str, cert: &std::path::Path) -> String {
    let out = gpg.run(&[
        "--passphrase",
        "",
        "--quick-generate-key",
        uid,
        "future-default",
        "default",
        "never",
    ]);
    assert!(out.status.success(), "gpg key: {}", stderr(&out));
    let out = gpg.run(&["--with-colons", "--list-keys", uid]);
    let listing = stdout(&out);
    let fpr = listing
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .expect("a fingerprint")
        .to_owned();
    let out = gpg.run(&["--export", &fpr]);
    assert!(out.status.success() && !out.stdout.is_empty());
    std::fs::write(cert, &out.stdout).expect("write cert");
    fpr
}

fn stream(d: &Device) -> (String, String) {
    let s = d.status();
    let port = s["node"]["xmpp_port"].as_u64().expect("xmpp port");
    let instance = s["node"]["xmpp_instance"]
        .as_str()
        .expect("instance")
        .to_owned();
    (port.to_string(), instance)
}

/// Two paired devices, each with a GnuPG key for its client (certificate exported,
/// not yet approved).
struct Pair {
    devices: Vec<Device>,
    gpg: [Gpg; 2],
    certs: [std::path::PathBuf; 2],
    fprs: [String; 2],
    _tmp: tempfile::TempDir,
}

impl Pair {
    /// `None` when GnuPG is missing (and not required).
    fn new() -> Option<Self> {
        let (Some(gpg_a), Some(gpg_b)) = (Gpg::new(), Gpg::new()) else {
            return None;
        };
        let devices = account(&["a", "b"]);
        let tmp = tempfile::tempdir().expect("temp dir");
        let certs = [tmp.path().join("a.pgp"), tmp.path().join("b.pgp")];
        let fprs = [
            client_key(&gpg_a, "xmpp:alice@client", &certs[0]),
            client_key(&gpg_b, "xmpp:bob@client", &certs[1]),
        ];
        Some(Self {
            devices,
            gpg: [gpg_a, gpg_b],
            certs,
            fprs,
            _tmp: tmp,
        })
    }

    /// The script's options naming both streams and both GnuPG homes.
    fn args(&self) -> Vec<String> {
        let (port_a, instance_a) = stream(&self.devices[0]);
        let (port_b, instance_b) = stream(&self.devices[1]);
        [
            ("--port-a", port_a),
            ("--instance-a", instance_a),
            ("--port-b", port_b),
            ("--instance-b", instance_b),
            ("--gnupg-a", path(self.gpg[0].home()).to_owned()),
            ("--gnupg-b", path(self.gpg[1].home()).to_owned()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }
}

#[test]
fn a_slixmpp_client_publishes_retrieves_retracts_and_is_notified() {
    let Some(python) = python() else { return };
    let Some(pair) = Pair::new() else { return };
    let (a, b) = (&pair.devices[0], &pair.devices[1]);
    // A's client is approved from its certificate file; B's offers its key on the
    // stream and is approved by fingerprint (in the script).
    a.ok(&["client", "add", "--cert", path(&pair.certs[0])]);
    let listed = a.json(&["client", "list"]);
    assert_eq!(listed[0]["fingerprint"], pair.fprs[0].as_str(), "{listed}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xmpp/pep_client.py");
    let out = Command::new(python)
        .arg(script)
        .args(pair.args())
        .args(["--kith", env!("CARGO_BIN_EXE_kith")])
        .args(["--dir-a", path(&a.dir), "--dir-b", path(&b.dir)])
        .args(["--fpr-a", &pair.fprs[0], "--fpr-b", &pair.fprs[1]])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the slixmpp client failed:\n{}\n{}\nnode A:\n{}",
        stdout(&out),
        stderr(&out),
        a.log()
    );
    assert!(stdout(&out).contains("ok"));
}

/// A slixmpp client on another machine (a second network namespace joined by a
/// veth pair): disco answers, pubsub is `forbidden`; with `--xmpp-lan` it is served.
#[test]
fn a_lan_client_gets_disco_but_pubsub_only_with_xmpp_lan() {
    let Some(python) = python() else { return };
    let Some(net) = crate::netns::Net::or_skip(2) else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xmpp/pep_client.py");
    let mut a = Device::new().with_prefix(&net.prefix(0));
    a.ok(&["init", "--jid", "romeo@montague.lit"]);
    for (extra, allowed) in [(&[][..], false), (&["--xmpp-lan"][..], true)] {
        let mut args = vec!["--no-mdns"];
        args.extend_from_slice(extra);
        a.start_with(&format!("/ip4/{}/tcp/0", net.ip[0]), &args);
        let (port, instance) = stream(&a);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net.ns[1], &python, script, "lan"])
            .args([
                "--host",
                &net.ip[0],
                "--port",
                &port,
                "--instance",
                &instance,
            ]);
        if allowed {
            cmd.arg("--allowed");
        }
        let out = cmd.output().expect("python runs");
        assert!(
            out.status.success() && stdout(&out).contains("ok"),
            "LAN client (allowed: {allowed}):\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        a.stop();
    }
}

/// python-zeroconf in another network namespace finds the node's `_presence._tcp`
/// advertisement on the veth pair; its TXT caps (`hash`, `node`, `ver`) are those of
/// the disco#info the stream answers, as slixmpp computes them (XEP-0174 §6.2).
#[test]
fn the_txt_record_carries_the_caps_of_the_stream() {
    let Some(python) = python() else { return };
    let Some(net) = crate::netns::Net::or_skip(3) else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xmpp/pep_client.py");
    let mut a = Device::new().with_prefix(&net.prefix(0));
    a.ok(&["init", "--jid", "romeo@montague.lit"]);
    a.start_with(
        &format!("/ip4/{}/tcp/0", net.ip[0]),
        &["--mdns-interface", &net.veth[0]],
    );
    let (_, instance) = stream(&a);
    let out = Command::new("ip")
        .args(["netns", "exec", &net.ns[1], &python, script, "mdns"])
        .args(["--instance", &instance])
        .output()
        .expect("python runs");
    assert!(
        out.status.success() && stdout(&out).contains("ok"),
        "zeroconf + slixmpp:\n{}\n{}\nnode:\n{}",
        stdout(&out),
        stderr(&out),
        a.log()
    );
}

/// A slixmpp client on this machine but of another user (uid 65534): disco answers,
/// pubsub is `forbidden` (the node's files are its user's alone, so is its PEP
/// service). Needs root to change user; skipped without it unless CI requires it.
#[test]
fn another_user_on_this_machine_gets_disco_but_not_pubsub() {
    let Some(python) = python() else { return };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("KITH_REQUIRE_NETNS").as_deref() != Ok("1"),
            "root is required (KITH_REQUIRE_NETNS=1) to run a client as another user"
        );
        eprintln!("SKIPPED: run as root to try a client of another user");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xmpp/pep_client.py");
    let mut a = Device::new();
    a.ok(&["init", "--jid", "romeo@montague.lit"]);
    a.start();
    let (port, instance) = stream(&a);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args([&python, script, "lan"])
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--instance",
            &instance,
        ])
        .output()
        .expect("setpriv runs");
    assert!(
        out.status.success() && stdout(&out).contains("ok"),
        "a client of another user:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Figures, not checks (ignored; run in release, see docs/performance.md): a
/// slixmpp client publishes 50 GnuPG-sealed contacts on device A; how long each
/// publish takes to be answered, and to reach a client subscribed on device B.
#[test]
#[ignore]
fn pep_latency_figures() {
    let Some(python) = python() else { return };
    let Some(pair) = Pair::new() else { return };
    for (device, cert) in pair.devices.iter().zip(&pair.certs) {
        device.ok(&["client", "add", "--cert", path(cert)]);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xmpp/pep_client.py");
    let out = Command::new(python)
        .args([script, "latency"])
        .args(pair.args())
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", stderr(&out));
    println!("{}", stdout(&out));
}
