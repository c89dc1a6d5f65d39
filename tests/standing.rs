//! "Are my devices in sync?" at a glance: `kith status` leads with one line, and
//! `status` and `device list` say per device whether it is up to date, behind or
//! ahead, and when it was last seen, also after a restart (every reconciliation frame carries what its
//! sender holds in brief; both commands first check with every connected device).

use crate::nodes::{Device, account};

fn lead(d: &Device) -> String {
    d.ok(&["status"])
        .lines()
        .next()
        .expect("a first line")
        .to_owned()
}

/// The `device list` row of the device named `name`.
fn row(d: &Device, name: &str) -> String {
    d.ok(&["device", "list"])
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} in the device list"))
        .to_owned()
}

#[test]
fn status_says_at_a_glance_whether_every_device_has_everything() {
    let mut devices = account(&["laptop", "phone"]);
    devices[0].wait("the phone in sync", |d| lead(d) == "In sync with phone.");
    let phone = row(&devices[0], "phone");
    assert!(
        phone.contains("up to date") && phone.ends_with("now"),
        "{phone}"
    );
    // Engine words only with --verbose.
    let status = devices[0].ok(&["status"]);
    assert!(!status.contains("held future records"), "{status}");
    assert!(
        devices[0]
            .ok(&["status", "--verbose"])
            .contains("held future records")
    );

    // The phone goes away; the laptop gets three contacts it lacks.
    devices[1].stop();
    devices[0].wait("the phone away", |d| lead(d).contains("phone is away"));
    for j in ["a@x.lit", "b@x.lit", "c@x.lit"] {
        devices[0].ok(&["contact", "add", j]);
    }
    let line = lead(&devices[0]);
    assert!(
        line.starts_with("Not all in sync: phone is away (last seen ")
            && line.contains("it lacks at least"),
        "{line}"
    );
    let json = devices[0].json(&["device", "list"]);
    let phone = json
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == "phone")
        .expect("the phone");
    assert!(
        phone["sync"]["behind_now"].as_u64().unwrap_or(0) >= 3,
        "{phone}"
    );
    assert!(phone["last_seen"].is_string(), "{phone}");
    // Where the phone stood is kept across a restart of the laptop, and read with
    // its node stopped too.
    devices[0].stop();
    let line = lead(&devices[0]);
    assert!(line.contains("it lacks at least"), "node stopped: {line}");
    devices[0].start();
    let line = lead(&devices[0]);
    assert!(
        line.starts_with("Not all in sync: phone is away (last seen ")
            && line.contains("it lacks at least"),
        "{line}"
    );

    // Back, it catches up, and both say so.
    devices[1].start();
    for (d, other) in [(0, "phone"), (1, "laptop")] {
        devices[d].wait("in sync again", |dev| {
            lead(dev) == format!("In sync with {other}.")
        });
    }
    assert_eq!(devices[1].jids(), devices[0].jids());
}

#[test]
fn three_devices_in_sync_say_so_in_one_line() {
    // The phone and the tablet each paired with the laptop, which they dial; the
    // laptop is connected to both.
    let devices = account(&["laptop", "phone", "tablet"]);
    devices[2].ok(&["contact", "add", "juliet@capulet.lit"]);
    devices[0].wait("all in sync", |d| lead(d) == "All 3 devices in sync.");
    assert_eq!(devices[1].jids(), ["juliet@capulet.lit"]);
}

#[test]
fn a_lone_device_says_so() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    assert_eq!(
        lead(&d),
        "This is the account's only device: pair another with `kith pair invite`."
    );
}

/// What an away device wrote itself, come here through a third device, is not
/// counted as what it lacks.
#[test]
fn an_away_device_is_not_said_to_lack_what_it_wrote() {
    let mut devices = account(&["laptop", "phone", "tablet"]);
    devices[0].wait("every device in sync", |d| {
        lead(d) == "All 3 devices in sync."
    });
    devices[1].wait("the phone in sync with the laptop", |d| {
        lead(d).contains("in sync with laptop") || lead(d) == "All 3 devices in sync."
    });
    // The phone goes away; the laptop writes three contacts, which reach the
    // tablet; the laptop goes; the phone comes back and gets them from the tablet.
    devices[1].stop();
    for j in ["a@x.lit", "b@x.lit", "c@x.lit"] {
        devices[0].ok(&["contact", "add", j]);
    }
    devices[2].wait("the laptop's contacts", |d| d.jids().len() == 3);
    devices[0].stop();
    let tablet = devices[2].listen_addr();
    devices[1].start_with("/ip4/127.0.0.1/tcp/0", &["--no-mdns", "--peer", &tablet]);
    devices[1].wait("the laptop's contacts, from the tablet", |d| {
        d.jids().len() == 3
    });
    let line = lead(&devices[1]);
    assert!(
        line.starts_with("Not all in sync: laptop is away (last seen ")
            && !line.contains("lacks")
            && line.contains("it has everything"),
        "{line}"
    );
}

/// A tombstone another device has already erased (collected once every device
/// acknowledged it) while this one still holds it until its own next pass is not
/// something that device lacks.
#[test]
fn a_tombstone_erased_elsewhere_is_not_counted_as_lacking() {
    let mut devices = account(&["laptop", "phone"]);
    for d in devices.iter_mut() {
        d.stop();
    }
    // The laptop acknowledges and collects every 20 s (its first pass at start), the
    // phone every second: the phone collects right after the laptop's second pass
    // acknowledges the deletion, the laptop only at its third.
    devices[0].start_with(
        "/ip4/127.0.0.1/tcp/0",
        &["--no-mdns", "--ack-interval", "20s"],
    );
    let laptop_at = devices[0].listen_addr();
    devices[1].start_with(
        "/ip4/127.0.0.1/tcp/0",
        &["--no-mdns", "--ack-interval", "1s", "--peer", &laptop_at],
    );
    let (laptop, phone) = (&devices[0], &devices[1]);
    laptop.ok(&["contact", "add", "tybalt@capulet.lit"]);
    phone.wait("the contact", |d| d.jids() == ["tybalt@capulet.lit"]);
    laptop.ok(&["contact", "rm", "tybalt@capulet.lit"]);
    phone.wait("the deletion", |d| d.jids().is_empty());
    phone.wait("the tombstone collected on the phone", |d| {
        d.status()["collected_tombstones"].as_u64().unwrap_or(0) >= 1
    });
    let s = laptop.status();
    assert_eq!(
        s["collected_tombstones"], 0,
        "the laptop still holds its tombstone (else this test shows nothing): {s}"
    );
    let line = lead(laptop);
    assert_eq!(line, "In sync with phone.", "{}", laptop.ok(&["status"]));
}
