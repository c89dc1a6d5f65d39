//! Three `kith run` processes on loopback: pairing, edits on each, deletion, a
//! restart with edits made while stopped, revocation.

use crate::nodes::{Device, account, converge};

fn has(d: &Device, jid: &str) -> bool {
    d.jids().iter().any(|j| j == jid)
}

/// Two paired devices of one account, running.
fn laptop_and_phone() -> [Device; 2] {
    account(&["laptop", "phone"])
        .try_into()
        .unwrap_or_else(|_| unreachable!("two devices"))
}

#[test]
fn three_nodes_pair_edit_restart_and_revoke() {
    let [mut a, mut b, mut c]: [Device; 3] = account(&["laptop", "phone", "desktop"])
        .try_into()
        .unwrap_or_else(|_| unreachable!("three devices"));

    // An edit on each device reaches the others.
    a.ok(&[
        "contact",
        "add",
        "juliet@capulet.lit",
        "--name",
        "Juliet",
        "--group",
        "Verona",
    ]);
    b.ok(&["contact", "add", "nurse@capulet.lit", "--group", "Verona"]);
    c.ok(&["group", "add", "Friends", "--description", "close ones"]);
    c.ok(&[
        "contact",
        "add",
        "mercutio@verona.lit",
        "--group",
        "Friends",
    ]);
    let list = converge(&[&a, &b, &c]);
    assert_eq!(list.len(), 3, "{list:?}");
    b.ok(&[
        "contact",
        "edit",
        "juliet@capulet.lit",
        "--name",
        "Juliet C.",
        "--add-group",
        "Friends",
    ]);
    c.wait("the edit", |c| {
        let j = c.json(&["contact", "show", "juliet@capulet.lit"]);
        j["name"] == "Juliet C." && j["groups"].as_array().is_some_and(|g| g.len() == 2)
    });
    c.ok(&["contact", "rm", "nurse@capulet.lit"]);
    a.wait("the deletion", |a| !has(a, "nurse@capulet.lit"));
    a.ok(&["group", "rename", "Verona", "Verona city"]);
    b.wait("the rename", |b| {
        b.json(&["group", "list"])
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["name"] == "Verona city"))
    });
    converge(&[&a, &b, &c]);

    // B stops; edits happen on A and on B's store while it is off; B comes back.
    b.stop();
    a.ok(&["contact", "add", "tybalt@capulet.lit", "--name", "Tybalt"]);
    b.ok(&["contact", "add", "paris@verona.lit", "--name", "Paris"]);
    assert!(b.status()["node"]["running"] == false);
    b.start();
    let list = converge(&[&a, &b, &c]);
    assert!(
        list.iter().any(|(j, _, _)| j.contains("paris@verona.lit")),
        "{list:?}"
    );
    assert!(
        list.iter()
            .any(|(j, _, _)| j.contains("tybalt@capulet.lit")),
        "{list:?}"
    );

    // A revokes C: C is cut off and gets nothing new; A and B go on.
    a.ok(&["device", "revoke", "desktop"]);
    let devices = a.json(&["device", "list"]);
    assert!(
        devices
            .as_array()
            .expect("a list")
            .iter()
            .any(|d| d["name"] == "desktop" && d["revoked"] == true),
        "{devices}"
    );
    b.wait("the revocation", |b| {
        b.json(&["device", "list"]).as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["name"] == "desktop" && d["revoked"] == true)
        })
    });
    a.ok(&["contact", "add", "rosaline@capulet.lit"]);
    b.wait("the contact added after the revocation", |b| {
        has(b, "rosaline@capulet.lit")
    });
    c.wait("the revoked device to be cut off", |c| {
        c.status()["connected_peers"] == 0
    });
    assert!(!has(&c, "rosaline@capulet.lit"));
    // Secrets rotated: a revoked device cannot revoke or rotate for the others.
    assert_eq!(converge(&[&a, &b]).len(), 5);
    for d in [&mut a, &mut b, &mut c] {
        assert!(d.running(), "a node died: {}", d.log());
    }
}

#[test]
fn configured_peers_work_without_mdns_and_the_srv_port_serves_disco() {
    use std::io::{Read, Write};

    let [mut a, mut b] = laptop_and_phone();
    // Both restart on new ports: what they remember is stale; B is told where A is.
    a.stop();
    b.stop();
    a.start();
    let addr = a.status()["node"]["listen"][0]
        .as_str()
        .expect("a listen address")
        .to_owned();
    b.start_with("/ip4/127.0.0.1/tcp/0", &["--no-mdns", "--peer", &addr]);
    a.ok(&["contact", "add", "juliet@capulet.lit"]);
    b.wait("the contact through the configured peer", |b| {
        b.jids() == ["juliet@capulet.lit"]
    });

    // The advertised SRV port speaks XEP-0174 streams (the PEP service on it is
    // tested with slixmpp in tests/xmpp.rs).
    let port = a.status()["node"]["xmpp_port"].as_u64().expect("a port");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams' from='juliet@balcony' version='1.0'>\
          <iq type='get' id='q1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>\
          <iq type='get' id='q2'><pubsub xmlns='http://jabber.org/protocol/pubsub'/></iq>\
          </stream:stream>",
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    for needle in [
        "pep",
        "urn:xmpp:contacts:0",
        "urn:xmpp:openpgp:pubsub:0",
        // An empty <pubsub/> asks nothing: a stanza error, the stream goes on.
        "bad-request",
        "</stream:stream>",
    ] {
        assert!(out.contains(needle), "{needle} not in {out}");
    }
    assert!(
        !out.contains("juliet@capulet.lit"),
        "no contact data on the stream"
    );
}

#[test]
fn devices_restarted_on_any_free_port_find_each_other_again_without_mdns() {
    let [mut a, mut b] = laptop_and_phone();
    // Both restart asking for no port in particular, and nobody tells them where the
    // other is: each listens on its guise's port of the day, which the other works
    // out from the secrets and the address it remembers.
    a.stop();
    b.stop();
    a.start();
    b.start();
    a.ok(&["contact", "add", "juliet@capulet.lit"]);
    b.wait("the contact, through the remembered address", |b| {
        b.jids() == ["juliet@capulet.lit"]
    });
}

/// Sends one request to the node of `dir` through its control socket.
fn control(
    dir: &std::path::Path,
    request: &kith_node::api::Request,
) -> Result<serde_json::Value, kith_node::api::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(kith_node::api::socket::request(
        &dir.join("control.sock"),
        request,
        |_, _| {},
    ))
    .map(|v| v.expect("the node listens").payload_json())
}

#[test]
fn a_wait_answers_as_soon_as_the_device_stores_something() {
    use kith_node::api::{ErrorKind, MAX_WAITERS, Request};
    let [a, b] = laptop_and_phone();
    let seen = b.status()["changes"].as_u64().expect("a change count");
    // A short wait ends with its timeout (or an earlier change), never before.
    let started = std::time::Instant::now();
    let quiet = control(
        &b.dir,
        &Request::Wait {
            after: seen,
            timeout_ms: 50,
        },
    )
    .expect("a wait");
    let count = quiet["changes"].as_u64().expect("a count");
    assert!(count >= seen, "{quiet}");
    assert!(
        count > seen || started.elapsed() >= std::time::Duration::from_millis(50),
        "answered before anything changed or its time was up"
    );
    // An edit on the other device: waits as long as the test's deadline end with
    // each change stored here (never by their timeout) until the contact is there.
    let mut seen = count;
    a.ok(&["contact", "add", "juliet@capulet.lit"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let juliet = Request::Contact {
        jid: "juliet@capulet.lit".into(),
    };
    while control(&b.dir, &juliet).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the contact never came"
        );
        let started = std::time::Instant::now();
        let answer = control(
            &b.dir,
            &Request::Wait {
                after: seen,
                timeout_ms: 55_000,
            },
        )
        .expect("a wait");
        let count = answer["changes"].as_u64().expect("a count");
        assert!(count > seen, "{answer}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(50),
            "answered by a change, not the timeout"
        );
        seen = count;
    }
    // Each answer carries the contacts held then, as `status` counts them: none
    // before the edit, the one added after it.
    assert_eq!(quiet["contacts"].as_u64(), Some(0), "{quiet}");
    let now = control(
        &b.dir,
        &Request::Wait {
            after: u64::MAX,
            timeout_ms: 0,
        },
    )
    .expect("a wait");
    assert_eq!(now["contacts"].as_u64(), Some(1), "{now}");
    assert_eq!(now["contacts"], b.status()["contacts"], "{now}");
    // Waits are bounded: past MAX_WAITERS the node says it is busy (a wait of no
    // time is answered at once while there is room).
    let now = seen;
    let held: Vec<_> = (0..MAX_WAITERS)
        .map(|_| {
            let dir = b.dir.clone();
            std::thread::spawn(move || {
                control(
                    &dir,
                    &Request::Wait {
                        after: now + 1_000,
                        timeout_ms: 5_000,
                    },
                )
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let busy = loop {
        let r = control(
            &b.dir,
            &Request::Wait {
                after: now + 1_000,
                timeout_ms: 0,
            },
        );
        match r {
            Err(e) if e.kind == ErrorKind::Busy => break Some(e),
            _ if std::time::Instant::now() > deadline => break None,
            _ => {}
        }
    };
    assert!(busy.is_some(), "a wait past the bound is refused");
    // The held waits end at their timeout, with the count they found.
    for h in held {
        let answer = h.join().expect("a waiting thread").expect("a wait ends");
        assert!(answer["changes"].as_u64() >= Some(now), "{answer}");
    }
}
