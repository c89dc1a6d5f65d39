//! Transports beyond TCP over IPv4: two devices sync over QUIC alone, and over TCP
//! on IPv6 (loopback `::1`).

use crate::nodes::account;

/// Restarts both devices listening on `listen` (an address with port 0), the
/// second dialling the first where it now listens, and checks an edit on each
/// reaches the other over that transport.
fn sync_over(listen: &str, transport: &str) {
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
}

#[test]
fn devices_sync_over_quic_alone() {
    sync_over("/ip4/127.0.0.1/udp/0/quic-v1", "/quic-v1");
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
