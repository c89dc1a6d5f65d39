//! Transports beyond TCP over IPv4: two devices sync over QUIC alone, and over TCP
//! on IPv6 (loopback `::1`).

use crate::nodes::{Device, account};
use crate::util::stderr;

/// Restarts both devices listening on `listen` (an address with port 0), the
/// second dialling the first where it now listens, and checks an edit on each
/// reaches the other over that transport.
fn sync_over(listen: &str, transport: &str) -> Device {
    let mut devices = account(&["laptop", "phone"]);
    for d in devices.iter_mut() {
        d.stop();
    }
    devices[0].start_with(listen, &["--no-mdns"]);
    let at = devices[0].listen_addr();
    assert!(at.contains(transport), "{at}");
    devices[1].start_with(listen, &["--no-mdns", "--peer", &at]);
    let (laptop, phone) = (&devices[0], &devices[1]);
    laptop.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    phone.wait("the laptop's contact", |d| {
        d.jids() == ["juliet@capulet.lit"]
    });
    phone.ok(&["contact", "add", "nurse@capulet.lit"]);
    laptop.wait("the phone's contact", |d| {
        d.jids() == ["juliet@capulet.lit", "nurse@capulet.lit"]
    });
    // Every connection between them is over that transport.
    let status = phone.status();
    let conns: Vec<&str> = status["roster"]
        .as_array()
        .expect("a roster")
        .iter()
        .filter_map(|m| m["connected"].as_str())
        .collect();
    assert!(!conns.is_empty(), "{status}");
    assert!(conns.iter().all(|c| c.contains(transport)), "{conns:?}");
    devices.remove(0)
}

#[test]
fn devices_sync_over_quic_alone() {
    let laptop = sync_over("/ip4/127.0.0.1/udp/0/quic-v1", "/quic-v1");
    // Pairing has a TCP listener only: said so.
    let out = laptop.kith(&["pair", "invite", "--no-wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pairing needs a TCP listen address"),
        "{}",
        stderr(&out)
    );
}

/// A fixed TCP port another node holds is refused (exit 5), though libp2p's
/// listeners share ports among themselves (`SO_REUSEPORT`); a `--peer` the node
/// could never dial (a DNS name, another transport, or nowhere: `0.0.0.0`, port 0)
/// is refused at once (exit 2).
#[test]
fn a_taken_port_and_an_undialable_peer_are_refused() {
    let mut first = account(&["laptop"]).remove(0);
    first.stop();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address").port()
    };
    let at = format!("/ip4/127.0.0.1/tcp/{port}");
    first.start_with(&at, &["--no-mdns"]);
    let other = Device::new();
    other.ok(&["init", "--jid", "juliet@capulet.lit", "--name", "other"]);
    let (code, _, err) = other.spawn(&["run", "--listen", &at, "--no-mdns"]).finish();
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("Address already in use"), "{err}");
    let (form, nowhere) = ("no DNS names", "an address a dial can reach");
    for (peer, said) in [
        ("/dns4/example.org/tcp/4001", form),
        ("/ip4/127.0.0.1/tcp/1/ws", form),
        ("/ip4/127.0.0.1/udp/1/quic", form),
        ("/ip4/127.0.0.1", form),
        ("/ip4/0.0.0.0/tcp/4001", nowhere),
        ("/ip6/::/tcp/4001", nowhere),
        ("/ip4/224.0.0.251/udp/5353/quic-v1", nowhere),
        ("/ip4/255.255.255.255/tcp/4001", nowhere),
        ("/ip4/127.0.0.1/tcp/0", nowhere),
        ("/ip4/0.1.2.3/tcp/4001", nowhere),
        ("/ip6/::ffff:0.0.0.0/tcp/4001", nowhere),
        ("/ip6/::ffff:224.0.0.1/tcp/4001", nowhere),
        ("/ip6/fe80::1/tcp/4001", nowhere),
    ] {
        let out = other.kith(&["run", "--no-mdns", "--peer", peer]);
        assert_eq!(out.status.code(), Some(2), "{peer}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{peer}: {}", stderr(&out));
    }
}

#[test]
fn devices_sync_over_ipv6() {
    // Some hosts (containers) have no IPv6 at all: said, and passed.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: this host has no IPv6 loopback (::1)");
        return;
    }
    sync_over("/ip6/::1/tcp/0", "/ip6/::1/tcp/");
}
