//! Relay devices: a device that joins with `pair join --relay` keeps and forwards
//! the account's sealed records, is never sent a secret, reads no contact, refuses
//! every request about contacts, and is enough for a device that was away to
//! catch up when no full device is up.

use crate::nodes::{Device, account};
use crate::util::stderr;

/// How many contact records a device holds (sealed or not).
fn contact_records(d: &Device) -> u64 {
    d.status()["records"]["contacts"].as_u64().unwrap_or(0)
}

/// Elements in a device's `secrets.xml` (the root counts as one).
fn secret_elements(d: &Device) -> usize {
    std::fs::read_to_string(d.dir.join("secrets.xml"))
        .map(|t| t.matches('<').count() - t.matches("</").count() - t.matches("<?").count())
        .unwrap_or(0)
}

#[test]
fn a_relay_keeps_what_it_cannot_read_and_a_device_catches_up_from_it_alone() {
    let mut devices = account(&["laptop", "phone"]);
    let mut relay = Device::new();
    // The inviting person chooses the role: a code for a full device takes no
    // relay, and a code for a relay takes no full device (which would get the
    // secrets); neither refusal uses the code up.
    let code = devices[0].invite();
    let out = relay.kith(&["pair", "join", &code, "--name", "server", "--relay"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("for a full device"),
        "{}",
        stderr(&out)
    );
    let code = devices[0].invite_relay();
    let sneaky = Device::new();
    let out = sneaky.kith(&["pair", "join", &code, "--name", "sneaky"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("for a relay device"),
        "{}",
        stderr(&out)
    );
    let out = relay.kith(&["pair", "join", &code, "--name", "server", "--relay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("as relay device"), "{said}");
    relay.start();
    devices[0].wait("the relay joined", |d| {
        d.log().contains("server (") && d.status()["connected_peers"] == 2
    });
    assert!(
        devices[0].log().contains("joined as a relay"),
        "{}",
        devices[0].log()
    );

    devices[0].ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    devices[1].wait("the contact", |d| d.jids() == ["juliet@capulet.lit"]);
    let held = contact_records(&devices[0]);
    relay.wait("the sealed contact records", |r| contact_records(r) >= held);

    // It holds the records and no secret: it opens nothing.
    let s = relay.status();
    assert_eq!(s["device"]["role"], "relay", "{s}");
    assert_eq!(s["contacts"], 0, "{s}");
    assert_eq!(s["groups"], 0, "{s}");
    assert!(
        secret_elements(&relay) <= 1,
        "{:?}",
        std::fs::read_to_string(relay.dir.join("secrets.xml"))
    );
    assert!(
        secret_elements(&devices[0]) > 1,
        "the full devices hold secrets"
    );
    let text = relay.ok(&["status"]);
    assert!(text.contains("this device is a relay"), "{text}");
    // The full devices list it as a relay.
    let list = devices[0].json(&["device", "list"]);
    let roles: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|d| d["role"].as_str())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "relay").count(), 1, "{list}");

    // Its XMPP service serves the sealed items and refuses writes (slixmpp).
    if let Some(python) = crate::xmpp::python() {
        let s = relay.status();
        let port = s["node"]["xmpp_port"].as_u64().expect("a port").to_string();
        let instance = s["node"]["xmpp_instance"].as_str().expect("an instance");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xmpp/pep_client.py");
        let out = std::process::Command::new(python)
            .args([script, "relay", "--port", &port, "--instance", instance])
            .args(["--at-least", "1"])
            .output()
            .expect("python runs");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }

    // Every request about contacts, groups, secrets, clients or devices is
    // refused with the reason (exit 1), with the node running and stopped (where
    // `pair invite` says first that it needs the node).
    let refused = |relay: &Device, running: bool| {
        for args in [
            &["contact", "list"][..],
            &["contact", "show", "juliet@capulet.lit"][..],
            &["contact", "add", "nurse@capulet.lit"][..],
            &["group", "list"][..],
            &["export", "roster"][..],
            &["pair", "invite"][..],
            &["secret", "rotate"][..],
            &["device", "revoke", "phone"][..],
        ] {
            if !running && args[0] == "pair" {
                continue;
            }
            let out = relay.kith(args);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("this device is a relay"),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    };
    refused(&relay, true);

    // The phone is away; the laptop edits, the relay keeps it, the laptop goes.
    devices[1].stop();
    devices[0].ok(&["contact", "add", "nurse@capulet.lit", "--name", "Nurse"]);
    let held = contact_records(&devices[0]);
    relay.wait("the new sealed records", |r| contact_records(r) >= held);
    devices[0].stop();

    // Back, the phone reaches the relay alone and gets what it missed.
    let at = relay.listen_addr();
    devices[1].start_with("/ip4/127.0.0.1/tcp/0", &["--no-mdns", "--peer", &at]);
    devices[1].wait(
        "the contact the laptop added while the phone was away",
        |d| d.jids() == ["juliet@capulet.lit", "nurse@capulet.lit"],
    );
    assert_eq!(devices[1].status()["connected_peers"], 1);

    relay.stop();
    refused(&relay, false);
}

/// A relay device is revoked like any device: told so, it is cut off, and the
/// full devices no longer count it.
#[test]
fn a_relay_is_revoked_like_any_device() {
    let devices = account(&["laptop"]);
    let mut relay = Device::new();
    let code = devices[0].invite_relay();
    let out = relay.kith(&["pair", "join", &code, "--name", "server", "--relay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    relay.start();
    devices[0].wait("the relay connected", |d| {
        d.status()["connected_peers"] == 1
    });
    devices[0].ok(&["device", "revoke", "server"]);
    relay.wait("told it was revoked", |r| {
        !r.status()["device"]["revoked_by"].is_null()
    });
    relay.wait("cut off", |r| r.status()["connected_peers"] == 0);
    let lead = devices[0].ok(&["status"]);
    assert!(
        lead.starts_with("This is the account's only device"),
        "{lead}"
    );
}

/// A peer outside the roster asks a relay device for a reservation: the gate
/// refuses its connection before the relay protocol runs, so it never gets one.
#[test]
fn an_outsider_is_refused_a_relay_reservation() {
    use futures::StreamExt;
    use kith_node::net::{self, Behaviour, BehaviourEvent};
    use libp2p::multiaddr::Protocol;
    use libp2p::swarm::SwarmEvent;
    use libp2p::{Multiaddr, PeerId, relay};
    use std::time::{Duration, Instant};

    let devices = account(&["laptop"]);
    let mut server = Device::new();
    let code = devices[0].invite_relay();
    let out = server.kith(&["pair", "join", &code, "--name", "server", "--relay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.start();
    let status = server.status();
    let peer: PeerId = status["device"]["peer_id"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("peer id");
    let at: Multiaddr = server.listen_addr().parse().expect("an address");
    let circuit = at.with(Protocol::P2p(peer)).with(Protocol::P2pCircuit);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (refused, reserved) = rt.block_on(async {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let k = key.clone();
        let mut swarm = net::node_swarm(
            key,
            |relay_client| Behaviour::new(&k, None, relay_client, false),
            Duration::from_secs(60),
        )
        .expect("swarm");
        // Its own gate lets anyone in: only the relay device's gate is under test.
        swarm.behaviour_mut().gate.set_pairing_open(true);
        swarm
            .listen_on(circuit.clone())
            .expect("a circuit listener");
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut refused, mut reserved) = (false, false);
        while Instant::now() < deadline && !refused {
            let next = tokio::time::timeout(Duration::from_secs(1), swarm.select_next_some());
            match next.await {
                Ok(SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                    relay::client::Event::ReservationReqAccepted { .. },
                ))) => reserved = true,
                Ok(SwarmEvent::ListenerClosed { .. }) | Ok(SwarmEvent::ListenerError { .. }) => {
                    refused = true
                }
                _ => {}
            }
        }
        (refused, reserved)
    });
    assert!(!reserved, "an outsider got a reservation");
    assert!(refused, "the outsider's reservation attempt never ended");
    // It relays for the account's laptop, and for nobody else.
    server.wait("a reservation for the laptop", |s| {
        s.log().contains("relaying for laptop (")
    });
    let log = server.log();
    assert!(
        log.lines()
            .filter(|l| l.contains("relaying for"))
            .all(|l| l.contains("relaying for laptop (")),
        "{log}"
    );
}
