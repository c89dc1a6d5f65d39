//! A revoked device is told: the revoking device sends it the roster records before
//! cutting it off; it says so in `status`, disconnects and dials nobody, and
//! refuses changes and invitations with exit 1 (its contacts stay readable). What
//! it wrote after its revocation stays set aside on every device, also for commands
//! run while the node is stopped.

use crate::nodes::account;
use crate::util::stderr;

#[test]
fn a_revoked_device_is_told_stops_syncing_and_refuses_changes() {
    let devices = account(&["laptop", "phone"]);
    let (laptop, phone) = (&devices[0], &devices[1]);
    phone.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    laptop.wait("the phone's contact", |d| {
        d.jids() == ["juliet@capulet.lit"]
    });
    let laptop_id = laptop.status()["device"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();

    laptop.ok(&["device", "revoke", "phone"]);
    phone.wait("told it was revoked", |d| {
        d.ok(&["status"])
            .starts_with(&format!("This device was revoked by laptop ({laptop_id}) "))
    });
    assert_eq!(
        phone.status()["device"]["revoked_by"]["id"],
        laptop_id.as_str()
    );
    phone.wait("cut off from every device", |d| {
        d.status()["connected_peers"] == 0
    });
    assert!(
        phone.log().contains("this device was revoked by laptop ("),
        "{}",
        phone.log()
    );

    // Changes and invitations are refused, with the reason; reading still works.
    for args in [
        &["contact", "add", "nurse@capulet.lit"][..],
        &["contact", "edit", "juliet@capulet.lit", "--name", "J"][..],
        &["group", "add", "Verona"][..],
        &["pair", "invite"][..],
        &["secret", "rotate"][..],
    ] {
        let out = phone.kith(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("this device was revoked by laptop"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        phone.jids(),
        ["juliet@capulet.lit"],
        "{}\n{}\n{}",
        phone.ok(&["contact", "list"]),
        phone.ok(&["status", "--verbose"]),
        phone.log()
    );

    // What the revocation resealed under the new secrets never reached it.
    assert_eq!(phone.status()["waiting_for_secret"], 0);
    // The laptop no longer counts the phone among the devices to sync with.
    let lead = laptop.ok(&["status"]);
    assert!(
        lead.starts_with("This is the account's only device"),
        "{lead}"
    );
}

#[test]
fn a_device_revoked_while_away_is_told_when_it_comes_back() {
    let mut devices = account(&["laptop", "phone"]);
    devices[0].wait("the phone connected", |d| {
        d.status()["connected_peers"] == 1
    });
    devices[1].stop();
    let laptop = &devices[0];
    let listening = laptop.status()["node"]["listen"].clone();
    laptop.ok(&["device", "revoke", "phone"]);
    let laptop_id = laptop.status()["device"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    // The revocation rotated the secrets: the laptop moved to the new guise's port,
    // which the phone (without the new secrets) cannot work out.
    laptop.wait("the laptop to move its port", |d| {
        let now = d.status()["node"]["listen"].clone();
        now.as_array().is_some_and(|a| !a.is_empty()) && now != listening
    });
    // Back on, the phone is reached by the laptop (which dials a revoked device it
    // has not told yet), told, and cut off.
    devices[1].start();
    let phone = &devices[1];
    phone.wait("told it was revoked on coming back", |d| {
        d.status()["device"]["revoked_by"]["id"] == laptop_id.as_str()
    });
    phone.wait("cut off", |d| d.status()["connected_peers"] == 0);
    let log = devices[0].log();
    let told: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("came back: told it was revoked"))
        .collect();
    assert_eq!(told.len(), 1, "{log}");
    assert!(told[0].contains("phone ("), "{log}");
    let out = phone.kith(&["contact", "add", "nurse@capulet.lit"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // The laptop never counts it among its peers.
    assert_eq!(devices[0].status()["connected_peers"], 0);
}

/// Renames of a group by a device revoked meanwhile, stamped above the group's
/// real version, stay set aside for commands on a stopped node too: six of them
/// (more than the versions a replica usually keeps below its winner) once hid the
/// group from the open that loads only what a command touches.
#[test]
fn a_stopped_node_reads_a_group_past_renames_by_a_revoked_device() {
    let mut devices = account(&["p", "q", "r", "d"]);
    devices[0].ok(&["contact", "add", "u@example.org", "--group", "Grp1"]);
    for d in &devices[1..] {
        d.wait("the group", |d| d.ok(&["group", "list"]).contains("Grp1"));
    }
    for d in devices.iter_mut() {
        d.stop();
    }
    // R revokes D while the others are away; then P renames the group.
    devices[2].start();
    devices[2].ok(&["device", "revoke", "d"]);
    devices[2].stop();
    devices[0].start();
    devices[0].ok(&["group", "rename", "Grp1", "PG1"]);
    devices[0].stop();
    // D, not knowing, renames it six times (later, so stamped above P's rename);
    // Q, not knowing either, takes them.
    devices[1].start();
    let q = devices[1].listen_addr();
    devices[3].start_with("/ip4/127.0.0.1/tcp/0", &["--no-mdns", "--peer", &q]);
    let mut name = "Grp1".to_owned();
    for i in 1..=6 {
        let next = format!("DG{i}");
        devices[3].ok(&["group", "rename", &name, &next]);
        name = next;
    }
    devices[1].wait("D's renames", |d| d.ok(&["group", "list"]).contains("DG6"));
    devices[3].stop();
    // Q learns the revocation from R, then gets P's rename.
    devices[2].start_with("/ip4/127.0.0.1/tcp/0", &["--no-mdns", "--peer", &q]);
    devices[1].wait("the revocation", |d| {
        d.ok(&["device", "list"]).contains("revoked")
    });
    devices[2].stop();
    devices[0].start_with("/ip4/127.0.0.1/tcp/0", &["--no-mdns", "--peer", &q]);
    devices[1].wait("P's rename", |d| {
        let groups = d.ok(&["group", "list"]);
        groups.contains("PG1") && !groups.contains("DG")
    });
    devices[0].stop();
    devices[1].stop();

    let q = &devices[1];
    let show = q.ok(&["contact", "show", "u@example.org"]);
    assert!(
        show.lines()
            .any(|l| l.starts_with("groups:") && l.contains("PG1")),
        "{show}"
    );
    let status = q.ok(&["status"]);
    assert!(status.contains("1 in 1 group"), "{status}");
    q.ok(&["group", "rename", "PG1", "Renamed"]);
    let groups = q.ok(&["group", "list"]);
    assert_eq!(
        groups
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next())
            .collect::<Vec<_>>(),
        [Some("Renamed")],
        "{groups}"
    );
}
