//! Which addresses of a roster device this device remembers, and in what order:
//! where its own dials reached it, what it announces (most like the address of the
//! connection it announced them on first), and what it announced before. Pure
//! functions of addresses: the node feeds them and stores the result.

use std::net::IpAddr;

use libp2p::Multiaddr;

use super::listen::{ip_of, is_ip6, port_of, tcp_port};
use super::relayed;
use crate::device::Remembered;

/// Most addresses remembered for one device.
pub(super) const MAX_REMEMBERED: usize = 8;
/// Most addresses of one device that dials reached, remembered first.
pub(super) const MAX_REACHED: usize = 3;
/// Most of what a device announces now that is remembered ahead of what was
/// remembered before: room stays after them for an address that reached it and
/// was pushed out of the first part by fresher ones.
const MAX_ANNOUNCED: usize = MAX_REMEMBERED - MAX_REACHED - 1;

/// What to remember of where a device listens, most useful first:
/// 1. the addresses this device's own dials reached it at (`reached`, this run's,
///    most recent first, then earlier runs'), at most [`MAX_REACHED`];
/// 2. what it announces now (`listen`, on the connection at `at`: [`announced`]),
///    the first [`MAX_ANNOUNCED`] of it;
/// 3. addresses that reached it and were pushed out of the first part;
/// 4. what it announced before;
/// 5. the rest of what it announces now;
///
/// each once, at most [`MAX_REMEMBERED`]. What a device announces may not reach it
/// from here (behind a port forward it announces its private address); an address
/// that reached it stays first until fresher ones that reached it push it down,
/// and nothing else stays ahead of what it announces. What was remembered before
/// is filtered as what is announced is (a version before this one, or an
/// invitation, may have stored a loopback or `/p2p` form).
pub(super) fn remembered(
    reached: &[Multiaddr],
    listen: &[Multiaddr],
    at: Option<&Multiaddr>,
    before: &Remembered,
) -> Remembered {
    let here = on_this_machine(at);
    let mut out = Remembered::default();
    let mut pushed_down = Vec::new();
    let earlier = before.reached.iter().filter_map(|a| usable(a, here));
    for a in reached.iter().cloned().chain(earlier) {
        if out.reached.contains(&a) || pushed_down.contains(&a) {
            continue;
        }
        if out.reached.len() < MAX_REACHED {
            out.reached.push(a);
        } else {
            pushed_down.push(a);
        }
    }
    let mut now: Vec<Multiaddr> = announced(listen, at)
        .into_iter()
        .filter(|a| !out.reached.contains(a))
        .collect();
    let later = now.split_off(now.len().min(MAX_ANNOUNCED));
    let then = before.rest.iter().filter_map(|a| usable(a, here));
    for a in now.into_iter().chain(pushed_down).chain(then).chain(later) {
        if out.reached.len() + out.rest.len() == MAX_REMEMBERED {
            break;
        }
        if !out.reached.contains(&a) && !out.rest.contains(&a) {
            out.rest.push(a);
        }
    }
    out
}

/// What to remember of an inviting device's listen addresses (`listen`), reached
/// for the invitation at `at`.
pub(crate) fn invited(listen: &[Multiaddr], at: &Multiaddr) -> Remembered {
    remembered(&[], listen, Some(at), &Remembered::default())
}

/// Whether a connection at `at` is to a device on this machine (a loopback
/// address; not through a relay, whatever address the relay has).
fn on_this_machine(at: Option<&Multiaddr>) -> bool {
    at.filter(|a| !relayed::is_relayed(a))
        .and_then(ip_of)
        .is_some_and(|ip| ip.is_loopback())
}

/// `a` as remembered (without a trailing `/p2p`), if it is worth remembering: not
/// unspecified, relayed, IPv6 link-local or without a port; a loopback address only
/// when the device is on this machine (`here`), since elsewhere it names the
/// machine doing the dialling.
fn usable(a: &Multiaddr, here: bool) -> Option<Multiaddr> {
    let ok = port_of(a).is_some()
        && !relayed::is_relayed(a)
        && !relayed::is_link_local(a)
        && !relayed::is_unspecified(a)
        && (here || !ip_of(a).is_some_and(|ip| ip.is_loopback()));
    ok.then(|| relayed::without_peer(a))
}

/// How many leading bits `a` and `b` share (none across families).
fn common_bits(a: IpAddr, b: IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (a.to_bits() ^ b.to_bits()).leading_zeros(),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits() ^ b.to_bits()).leading_zeros(),
        _ => 0,
    }
}

/// What of the addresses a device announces (`listen`) is worth remembering
/// ([`usable`]), each once, most like the address of the connection it announced
/// them on (`at`) first: on a LAN its LAN address, not a container bridge's
/// (nothing is like a relayed connection's). Then IPv4 before IPv6 and TCP before
/// QUIC, in a stable order (identify's is a hash set's).
pub(super) fn announced(listen: &[Multiaddr], at: Option<&Multiaddr>) -> Vec<Multiaddr> {
    let at_ip = at.filter(|a| !relayed::is_relayed(a)).and_then(ip_of);
    let here = on_this_machine(at);
    let mut out: Vec<Multiaddr> = listen.iter().filter_map(|a| usable(a, here)).collect();
    out.sort_by_cached_key(|a| {
        let like = match (ip_of(a), at_ip) {
            (Some(ip), Some(at)) => common_bits(ip, at),
            _ => 0,
        };
        (
            std::cmp::Reverse(like),
            is_ip6(a),
            tcp_port(a).is_none(),
            ip_of(a),
            a.to_string(),
        )
    });
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().expect("a test address")
    }

    /// A connection from elsewhere on the LAN.
    fn lan() -> Multiaddr {
        a("/ip4/192.168.1.9/tcp/5000")
    }

    #[test]
    fn what_a_dial_reached_is_remembered_first_and_kept_across_runs() {
        let public = a("/ip4/203.0.113.7/tcp/4001");
        let private = a("/ip4/192.168.1.5/tcp/4001");
        let quic = a("/ip4/192.168.1.5/udp/4001/quic-v1");
        let listen = [private.clone(), quic.clone()];
        // Reached at the forwarded address; the device announces its private ones.
        let first = remembered(
            std::slice::from_ref(&public),
            &listen,
            Some(&public),
            &Remembered::default(),
        );
        assert_eq!(first.reached, std::slice::from_ref(&public));
        assert_eq!(first.rest, [private.clone(), quic.clone()]);
        // A later run reaches it on the LAN: the forwarded address stays, second.
        let second = remembered(
            std::slice::from_ref(&private),
            &listen,
            Some(&lan()),
            &first,
        );
        assert_eq!(second.reached, [private.clone(), public.clone()]);
        assert_eq!(second.rest, std::slice::from_ref(&quic));
        // A run that only heard from it (it dialled here) keeps both first.
        let third = remembered(&[], std::slice::from_ref(&quic), Some(&lan()), &second);
        assert_eq!(third.reached, [private, public]);
        // Stored and read back as it was.
        assert_eq!(Remembered::parse(&third.line()), third);
    }

    #[test]
    fn what_was_only_announced_does_not_stay_ahead_of_what_is_announced_now() {
        let old = a("/ip4/10.0.0.1/tcp/4001");
        let new = a("/ip4/10.0.9.9/tcp/4001");
        let before = remembered(
            &[],
            std::slice::from_ref(&old),
            None,
            &Remembered::default(),
        );
        let now = remembered(&[], std::slice::from_ref(&new), None, &before);
        assert_eq!(now.rest, [new, old]);
        assert!(now.reached.is_empty());
        // A line earlier versions wrote is all announced.
        let line = "/ip4/10.0.0.1/tcp/4001 /ip4/10.0.0.2/tcp/4001";
        assert_eq!(Remembered::parse(line).rest.len(), 2);
        assert!(Remembered::parse(line).reached.is_empty());
    }

    #[test]
    fn remembered_addresses_are_bounded_and_each_once() {
        let many: Vec<Multiaddr> = (0..20)
            .map(|i| a(&format!("/ip4/10.0.0.{i}/tcp/4001")))
            .collect();
        let before = Remembered {
            reached: many[10..14].to_vec(),
            rest: many[14..20].to_vec(),
        };
        let out = remembered(&many[..2], &many[5..15], None, &before);
        assert_eq!(out.reached, [&many[..2], &many[10..11]].concat());
        assert_eq!(out.reached.len() + out.rest.len(), MAX_REMEMBERED);
        let mut all: Vec<_> = out.all().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), MAX_REMEMBERED, "{out:?}");
        // What it announces, then one that reached it and was pushed down.
        assert_eq!(out.rest, [&many[5..9], &many[11..12]].concat());
    }

    #[test]
    fn an_address_that_reached_a_device_moves_down_rather_than_out() {
        let old = a("/ip4/203.0.113.7/tcp/4001");
        // A device announcing as much as a laptop does: TCP and QUIC on its LAN
        // address, an IPv6 address and a container bridge's.
        let listen = [
            a("/ip4/192.168.1.5/tcp/4001"),
            a("/ip4/192.168.1.5/udp/4001/quic-v1"),
            a("/ip4/172.17.0.1/tcp/4001"),
            a("/ip4/172.17.0.1/udp/4001/quic-v1"),
            a("/ip6/2001:db8::5/tcp/4001"),
            a("/ip6/2001:db8::5/udp/4001/quic-v1"),
        ];
        let mut now = remembered(
            std::slice::from_ref(&old),
            &listen,
            Some(&old),
            &Remembered::default(),
        );
        // Three fresher addresses reach it.
        for i in 0..MAX_REACHED {
            let fresh = a(&format!("/ip4/198.51.100.{i}/tcp/4001"));
            now = remembered(std::slice::from_ref(&fresh), &listen, Some(&lan()), &now);
            assert_eq!(now.reached.len() + now.rest.len(), MAX_REMEMBERED);
        }
        assert!(!now.reached.contains(&old), "{now:?}");
        assert_eq!(now.rest[..MAX_ANNOUNCED], listen[..MAX_ANNOUNCED]);
        assert_eq!(now.rest[MAX_ANNOUNCED], old, "moved down: {now:?}");
        // It stays there at the next identify, and across a store.
        let again = remembered(&[], &listen, Some(&lan()), &Remembered::parse(&now.line()));
        assert_eq!(again, now);
    }

    #[test]
    fn announced_addresses_most_like_the_connection_come_first() {
        let listen = [
            a("/ip4/127.0.0.1/tcp/4001"),
            a("/ip4/172.17.0.1/tcp/4001"),
            a("/ip4/172.18.0.1/tcp/4001"),
            a("/ip4/192.168.1.5/udp/4001/quic-v1"),
            a("/ip4/192.168.1.5/tcp/4001"),
            a("/ip6/2001:db8::5/tcp/4001"),
            a("/ip6/fe80::1/tcp/4001"),
            a("/ip4/0.0.0.0/tcp/4001"),
            a("/ip4/192.168.1.5/tcp/4001/p2p/12D3KooWGBfKqTqgA6SPZ6N3NWmeLmtzDDx8d8dvVjzMsERo6Dvr"),
        ];
        let on_lan = announced(&listen, Some(&lan()));
        assert_eq!(
            on_lan,
            [
                a("/ip4/192.168.1.5/tcp/4001"),
                a("/ip4/192.168.1.5/udp/4001/quic-v1"),
                a("/ip4/172.17.0.1/tcp/4001"),
                a("/ip4/172.18.0.1/tcp/4001"),
                a("/ip6/2001:db8::5/tcp/4001"),
            ],
            "no loopback, link-local, unspecified or /p2p; each once"
        );
        let over_ip6 = announced(&listen, Some(&a("/ip6/2001:db8::9/tcp/5000")));
        assert_eq!(over_ip6[0], a("/ip6/2001:db8::5/tcp/4001"));
        // On this machine its loopback address is where it is.
        let here = announced(&listen, Some(&a("/ip4/127.0.0.1/tcp/5000")));
        assert_eq!(here[0], a("/ip4/127.0.0.1/tcp/4001"));
        // Through a relay (on this machine or not): nothing is like a circuit, and
        // the device is not on this machine.
        let circuit = a(
            "/ip4/127.0.0.1/tcp/41000/p2p/12D3KooWGBfKqTqgA6SPZ6N3NWmeLmtzDDx8d8dvVjzMsERo6Dvr/p2p-circuit",
        );
        let relayed = announced(&listen, Some(&circuit));
        assert_eq!(relayed[0], a("/ip4/172.17.0.1/tcp/4001"));
        assert!(!relayed.contains(&a("/ip4/127.0.0.1/tcp/4001")));
    }

    #[test]
    fn what_was_remembered_before_is_filtered_as_what_is_announced() {
        let before = Remembered {
            reached: vec![
                a(
                    "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWGBfKqTqgA6SPZ6N3NWmeLmtzDDx8d8dvVjzMsERo6Dvr",
                ),
                // Reached when the device was on this machine; it is not now.
                a("/ip4/127.0.0.1/tcp/4001"),
            ],
            rest: vec![
                a("/ip4/127.0.0.1/tcp/4001"),
                a(
                    "/ip4/192.168.1.5/tcp/4001/p2p/12D3KooWGBfKqTqgA6SPZ6N3NWmeLmtzDDx8d8dvVjzMsERo6Dvr",
                ),
                a("/ip4/192.168.1.5/tcp/4001"),
            ],
        };
        let now = remembered(&[], &[], Some(&lan()), &before);
        assert_eq!(now.reached, [a("/ip4/203.0.113.7/tcp/4001")]);
        assert_eq!(now.rest, [a("/ip4/192.168.1.5/tcp/4001")]);
        // An invitation's addresses, reached from elsewhere on the LAN.
        let invited = invited(&before.rest, &lan());
        assert_eq!(invited.rest, [a("/ip4/192.168.1.5/tcp/4001")]);
        assert!(invited.reached.is_empty());
    }
}
