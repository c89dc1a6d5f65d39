//! Devices of one account on one LAN (mDNS on `lo` only): each connects to each
//! other directly, a device that joins later too, though it sees the others'
//! advertisements before it holds the secret their tags are made with, and
//! mdns-sd tells of an advertisement once; an advertisement withdrawn is
//! forgotten.

use crate::nodes::Device;

const MDNS: [&str; 2] = ["--mdns-interface", "lo"];

/// Starts `d` on loopback with mDNS on `lo`, and waits for the account's secrets.
fn start(d: &mut Device) {
    d.start_with("/ip4/127.0.0.1/tcp/0", &MDNS);
    d.wait("the secrets", |d| {
        let s = d.status();
        s["waiting_for_secret"] == 0 && s["records"]["keys"].as_u64().unwrap_or(0) > 0
    });
}

/// The account's first device, started.
fn laptop() -> Device {
    let mut a = Device::new();
    a.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    start(&mut a);
    a
}

/// A device paired with `a` as `name`, started.
fn joined(a: &Device, name: &str) -> Device {
    let mut d = Device::new();
    d.join(a, name);
    start(&mut d);
    d
}

/// Waits until each of `devices` is connected to all the others.
fn all_connected(devices: &[&Device]) {
    let others = devices.len() as u64 - 1;
    for d in devices {
        d.wait("a connection to every other device", |d| {
            d.status()["connected_peers"].as_u64() == Some(others)
        });
    }
}

#[test]
fn every_device_connects_to_every_other_also_one_that_joins_later() {
    let a = laptop();
    let mut others = Vec::new();
    for name in ["phone", "desktop", "watch"] {
        let mut d = joined(&a, name);
        // Started again holding the secret: from the start it advertises under it,
        // as a device that has run for a while does.
        d.stop();
        start(&mut d);
        others.push(d);
    }
    let [b, c, e] = &others[..] else {
        unreachable!("three devices")
    };
    all_connected(&[&a, b, c, e]);
    // Enough contacts that the new device's first sync takes a while: the secret
    // reaches it after the others' advertisements do.
    let roster: String = std::iter::once("<query xmlns='jabber:iq:roster'>".to_owned())
        .chain((0..5_000).map(|i| format!("<item jid='c{i}@verona.lit'/>")))
        .chain(std::iter::once("</query>".to_owned()))
        .collect();
    let file = a.dir.join("roster.xml");
    std::fs::write(&file, roster).expect("the roster written");
    a.ok(&["import", "roster", file.to_str().expect("utf-8")]);
    for x in [b, c, e] {
        x.wait("the contacts", |x| x.status()["contacts"] == 5_000);
    }
    // It sees the others' advertisements before it holds the secret, and is seen
    // first under the genesis key; of each pair, the device with the smaller peer
    // id dials first, so unless it has the largest, it must dial a device it could
    // not recognise when it saw it.
    let mut d = Device::new();
    d.join(&a, "tablet");
    start(&mut d);
    all_connected(&[&a, b, c, e, &d]);
    // Connected, then checked: the status says so once the first syncs are done.
    d.wait("the tablet in sync with all five devices", |d| {
        d.ok(&["status"]).starts_with("All 5 devices in sync")
    });
}

#[test]
fn an_advertisement_withdrawn_is_forgotten() {
    let a = laptop();
    let mut b = joined(&a, "phone");
    all_connected(&[&a, &b]);
    let peer = b.status()["device"]["peer_id"]
        .as_str()
        .expect("the phone's peer id")
        .to_owned();
    let lines = |a: &Device, what: &str| {
        a.log()
            .lines()
            .filter(|l| l.contains(what) && l.contains(&peer))
            .count()
    };
    a.wait("the phone seen on mDNS", |a| lines(a, "seen on mDNS") > 0);
    let forgotten = |a: &Device| lines(a, "its advertisement withdrawn");
    let before = forgotten(&a);
    // Stopped, the phone withdraws its advertisement (an mDNS goodbye): the laptop
    // no longer holds its advertised addresses to dial it at for having seen it.
    b.stop();
    a.wait("the phone's advertisement forgotten", |a| {
        forgotten(a) > before
    });
}
