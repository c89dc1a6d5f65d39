//! Two devices behind two separate NATs and a relay device on the "internet": they
//! sync through the relay, then directly once DCUtR punched a hole through both
//! NATs. All of it in network namespaces this test makes (and deletes, also when it
//! fails): an "internet" bridge, a relay host on it, and two routers that
//! masquerade (iptables) a private network each, with one device behind each.
//! Needs root; where namespaces cannot be made the test says so and passes, unless
//! `KITH_REQUIRE_NETNS=1` (set by `.ci/run`).

use crate::netns::ip;
use crate::nodes::{Device, account};
use crate::util::stderr;

/// In namespace `ns`: `prog args…`.
fn inside(ns: &str, prog: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, prog];
    all.extend_from_slice(args);
    ip(&all)
}

/// In namespace `ns`: `iptables` with the words of `rule`.
fn iptables(ns: &str, rule: &str) -> Result<(), String> {
    inside(ns, "iptables", &rule.split_whitespace().collect::<Vec<_>>())
}

/// The namespaces: `inet` (a bridge), `relay`, and for each side `router` and
/// `host`. Deleted on drop.
struct Topology {
    names: Vec<String>,
    /// The namespaces this run made (and deletes): never another run's.
    made: std::cell::RefCell<Vec<String>>,
    /// The relay's address on the internet.
    relay_ip: String,
    /// The devices' addresses on their private networks.
    host_ip: [String; 2],
    /// The routers' addresses on the internet (what the NATs map to).
    wan_ip: [String; 2],
    /// The routers' addresses on the private networks.
    gateway: [String; 2],
}

impl Topology {
    fn ns(&self, which: &str) -> String {
        format!("{}{which}", self.names[0].trim_end_matches("inet"))
    }

    fn prefix(&self, which: &str) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(which)]
    }

    /// Runs `device`'s commands in namespace `which`.
    fn put_in(&self, device: &mut Device, which: &str) {
        device.set_prefix(
            &self
                .prefix(which)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
    }

    fn create() -> Result<Self, String> {
        // Unique per topology: the tests of one run make theirs at the same time.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() * 13 + 5 + n * 7_919) % 100_000;
        let net = 20 + (id % 60) * 3;
        let tag = format!("kn{id}");
        let t = Self {
            names: ["inet", "relay", "ra", "rb", "ha", "hb"]
                .iter()
                .map(|n| format!("{tag}{n}"))
                .collect(),
            made: std::cell::RefCell::new(Vec::new()),
            relay_ip: format!("10.200.{net}.1"),
            wan_ip: [format!("10.200.{net}.2"), format!("10.200.{net}.3")],
            host_ip: [
                format!("10.200.{}.2", net + 1),
                format!("10.200.{}.2", net + 2),
            ],
            gateway: [
                format!("10.200.{}.1", net + 1),
                format!("10.200.{}.1", net + 2),
            ],
        };
        // Made before anything else: dropping it deletes what was made, also when
        // a step below fails.
        t.setup(&tag)?;
        Ok(t)
    }

    fn setup(&self, tag: &str) -> Result<(), String> {
        let t = self;
        for n in &t.names {
            ip(&["netns", "add", n])?;
            t.made.borrow_mut().push(n.clone());
        }
        for n in &t.names {
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        let inet = t.ns("inet");
        ip(&["-n", &inet, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &inet, "link", "set", "br0", "up"])?;
        // A veth from `ns` (named `inner`, with `addr`) to the bridge.
        let to_bridge = |ns: &str, inner: &str, outer: &str, addr: &str| -> Result<(), String> {
            ip(&[
                "link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer, "netns",
                &inet,
            ])?;
            ip(&["-n", &inet, "link", "set", outer, "master", "br0", "up"])?;
            ip(&["-n", ns, "addr", "add", addr, "dev", inner])?;
            ip(&["-n", ns, "link", "set", inner, "up"])
        };
        to_bridge(
            &t.ns("relay"),
            &format!("{tag}r"),
            &format!("{tag}R"),
            &format!("{}/24", t.relay_ip),
        )?;
        for (i, side) in ["a", "b"].iter().enumerate() {
            let router = t.ns(&format!("r{side}"));
            let host = t.ns(&format!("h{side}"));
            let wan = format!("{tag}w{side}");
            to_bridge(
                &router,
                &wan,
                &format!("{tag}W{side}"),
                &format!("{}/24", t.wan_ip[i]),
            )?;
            let lan = format!("{tag}l{side}");
            let inner = format!("{tag}h{side}");
            ip(&[
                "link", "add", &lan, "netns", &router, "type", "veth", "peer", "name", &inner,
                "netns", &host,
            ])?;
            let gateway = &t.gateway[i];
            ip(&[
                "-n",
                &router,
                "addr",
                "add",
                &format!("{gateway}/24"),
                "dev",
                &lan,
            ])?;
            ip(&["-n", &router, "link", "set", &lan, "up"])?;
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{}/24", t.host_ip[i]),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &host, "link", "set", &inner, "up"])?;
            ip(&["-n", &host, "route", "add", "default", "via", gateway])?;
            inside(&router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
            // A home router: the private network goes out under the router's
            // address.
            iptables(
                &router,
                &format!("-t nat -A POSTROUTING -o {wan} -j MASQUERADE"),
            )?;
            // Nothing comes in that did not go out first; like most home routers,
            // it drops what comes unasked to itself too, rather than refuse it (a
            // reset would end a hole punch's first try).
            for chain in ["FORWARD", "INPUT"] {
                iptables(
                    &router,
                    &format!(
                        "-A {chain} -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
                    ),
                )?;
                iptables(&router, &format!("-A {chain} -i {wan} -j DROP"))?;
            }
        }
        Ok(())
    }

    /// Forwards TCP `port` of router `side`'s internet address to the same port of
    /// the host behind it (a port forward, as for a server at home).
    fn forward(&self, side: usize, port: u16) -> Result<(), String> {
        let router = self.ns(["ra", "rb"][side]);
        let (wan, host) = (&self.wan_ip[side], &self.host_ip[side]);
        iptables(
            &router,
            &format!(
                "-t nat -A PREROUTING -d {wan} -p tcp --dport {port} -j DNAT --to-destination {host}:{port}"
            ),
        )?;
        iptables(
            &router,
            &format!("-I FORWARD 1 -d {host} -p tcp --dport {port} -j ACCEPT"),
        )
    }

    /// Router `side` routes its private network as it is, without a NAT: its host
    /// is reached at its own address (the other router routes to it), through a
    /// firewall that drops what comes unasked.
    fn route_without_nat(&self, side: usize) -> Result<(), String> {
        let router = self.ns(["ra", "rb"][side]);
        let wan = format!(
            "{}w{}",
            self.names[0].trim_end_matches("inet"),
            ["a", "b"][side]
        );
        iptables(
            &router,
            &format!("-t nat -D POSTROUTING -o {wan} -j MASQUERADE"),
        )?;
        let net = self.host_ip[side].rsplit_once('.').map_or("", |(n, _)| n);
        ip(&[
            "-n",
            &self.ns(["ra", "rb"][1 - side]),
            "route",
            "add",
            &format!("{net}.0/24"),
            "via",
            &self.wan_ip[side],
        ])
    }

    fn or_skip() -> Option<Self> {
        match Self::create() {
            Ok(t) => Some(t),
            Err(e) => {
                assert!(
                    std::env::var("KITH_REQUIRE_NETNS").as_deref() != Ok("1"),
                    "network namespaces and iptables are required (KITH_REQUIRE_NETNS=1) but: {e}"
                );
                eprintln!(
                    "SKIPPED: cannot make the NAT namespaces (run as root, with iptables): {e}"
                );
                None
            }
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for n in self.made.borrow().iter() {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// Whether a TCP connection from namespace `ns` to `ip:port` opens (within 2 s).
fn reaches(ns: &str, ip: &str, port: u16) -> bool {
    inside(
        ns,
        "timeout",
        &["2", "bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")],
    )
    .is_ok()
}

/// The address of `device`'s connection to the device named `name`, as `status`
/// shows it.
fn connection_to(device: &Device, name: &str) -> Option<String> {
    device.status()["roster"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["connected"].as_str().map(str::to_owned))
}

#[test]
fn devices_behind_two_nats_sync_through_a_relay_then_directly() {
    // Paired on loopback first (pairing needs a reachable inviter), then each
    // device moves to its own network.
    let mut devices = account(&["laptop", "phone"]);
    let mut relay = Device::new();
    let code = devices[0].invite_relay();
    let out = relay.kith(&["pair", "join", &code, "--name", "server", "--relay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for d in devices.iter_mut() {
        d.stop();
    }
    let Some(t) = Topology::or_skip() else { return };
    let on = |ip: &str, port: u16| {
        [
            format!("/ip4/{ip}/tcp/{port}"),
            format!("/ip4/{ip}/udp/{port}/quic-v1"),
        ]
    };
    t.put_in(&mut relay, "relay");
    let [tcp, quic] = on(&t.relay_ip, 41_000);
    relay.start_with(&tcp, &["--listen", &quic, "--no-mdns"]);
    let relay_at = tcp.clone();
    for (i, side) in ["a", "b"].iter().enumerate() {
        t.put_in(&mut devices[i], &format!("h{side}"));
        let [tcp, quic] = on(&t.host_ip[i], 41_001 + i as u16);
        devices[i].start_with(&tcp, &["--listen", &quic, "--no-mdns", "--peer", &relay_at]);
    }
    let (laptop, phone) = (&devices[0], &devices[1]);
    // The topology is what it should be: the relay is reached through each NAT,
    // and neither device can open a connection to the other.
    assert!(
        reaches(&t.ns("ha"), &t.relay_ip, 41_000),
        "the relay must be reachable"
    );
    assert!(
        reaches(&t.ns("hb"), &t.relay_ip, 41_000),
        "the relay must be reachable"
    );
    assert!(
        !reaches(&t.ns("ha"), &t.host_ip[1], 41_002),
        "B's network is private"
    );
    assert!(
        !reaches(&t.ns("ha"), &t.wan_ip[1], 41_002),
        "B's NAT lets nothing in"
    );
    assert!(
        !reaches(&t.ns("hb"), &t.wan_ip[0], 41_001),
        "A's NAT lets nothing in"
    );
    for d in [laptop, phone] {
        d.wait("a reservation on the relay", |d| {
            d.status()["node"]["relayed_by"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
        });
    }

    let said = phone.ok(&["status"]);
    assert!(
        said.contains("\nreach    ") && said.contains("through server ("),
        "{said}"
    );
    laptop.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    phone.wait("the laptop's contact, across both NATs", |d| {
        d.jids() == ["juliet@capulet.lit"]
    });
    // The relay device forwards what it keeps (the contact may have come that
    // way); the two also connect through it, then punch through both NATs.
    phone.wait("a connection to the laptop", |d| {
        connection_to(d, "laptop").is_some()
    });
    let logs = format!("{}{}", laptop.log(), phone.log());
    assert!(
        logs.contains("connected through server ("),
        "no relayed connection:\n{logs}"
    );
    phone.wait("a direct connection to the laptop", |d| {
        connection_to(d, "laptop").is_some_and(|a| !a.contains("p2p-circuit"))
    });
    let logs = format!("{}{}", laptop.log(), phone.log());
    assert!(logs.contains("hole punched"), "{logs}");
    let direct = connection_to(phone, "laptop").expect("connected");
    assert!(direct.contains(&t.wan_ip[0]), "{direct}");

    // AutoNAT: the devices behind the NATs learn that the others cannot dial them
    // (the relay's dial-back is dropped by their routers); the relay, that they can.
    for d in [laptop, phone] {
        d.wait("AutoNAT to say it is behind a NAT", |d| {
            d.status()["node"]["reachable"] == "private"
        });
    }
    relay.wait("AutoNAT to say it can be dialled", |d| {
        d.status()["node"]["reachable"] == "public"
    });

    // Both restarted at once: they meet again through the relay, although each
    // one's redials of the other's remembered addresses are dropped meanwhile (a
    // try through the relay used to be refused while such a dial was under way).
    for d in devices.iter_mut() {
        d.stop();
    }
    for (i, d) in devices.iter_mut().enumerate() {
        let [tcp, quic] = on(&t.host_ip[i], 41_001 + i as u16);
        d.start_with(&tcp, &["--listen", &quic, "--no-mdns", "--peer", &relay_at]);
    }
    let (laptop, phone) = (&devices[0], &devices[1]);
    phone.wait("the laptop again, both restarted", |d| {
        connection_to(d, "laptop").is_some()
    });
    phone.wait("a direct connection again", |d| {
        connection_to(d, "laptop").is_some_and(|a| !a.contains("p2p-circuit"))
    });

    // Now direct: an edit on the phone reaches the laptop with the relay gone.
    relay.stop();
    phone.ok(&["contact", "add", "nurse@capulet.lit", "--name", "Nurse"]);
    laptop.wait("the phone's contact, directly", |d| {
        d.jids() == ["juliet@capulet.lit", "nurse@capulet.lit"]
    });
    drop(devices);
    drop(relay);
    drop(t);
}

/// A device at home behind a port forward (a home server) announces its private
/// address, which does not reach it from elsewhere; a device whose dial reached it
/// at the forwarded address remembers that one first, and finds it again after a
/// restart without `--peer`. (Two full devices: no relay device, so no AutoNAT,
/// which could confirm the forwarded address and have it announced.)
#[test]
fn a_device_behind_a_port_forward_is_found_again_without_peer() {
    let mut devices = account(&["phone", "server"]);
    for d in devices.iter_mut() {
        d.stop();
    }
    let Some(t) = Topology::or_skip() else { return };
    let port = 41_010;
    t.forward(0, port).expect("the port forward");
    let (phone, server) = devices.split_at_mut(1);
    let (phone, server) = (&mut phone[0], &mut server[0]);
    t.put_in(server, "ha");
    server.start_with(&format!("/ip4/{}/tcp/{port}", t.host_ip[0]), &["--no-mdns"]);
    t.put_in(phone, "hb");
    let forwarded = format!("/ip4/{}/tcp/{port}", t.wan_ip[0]);
    let private = format!("/ip4/{}/tcp/{port}", t.host_ip[0]);
    let listen = format!("/ip4/{}/tcp/41011", t.host_ip[1]);
    // The topology: the forwarded address reaches the server, its own does not.
    assert!(
        reaches(&t.ns("hb"), &t.wan_ip[0], port),
        "the port forward must work"
    );
    assert!(
        !reaches(&t.ns("hb"), &t.host_ip[0], port),
        "the server's private address must not reach it from the phone"
    );
    phone.start_with(&listen, &["--no-mdns", "--peer", &forwarded]);
    // Its identify came (the private address it announces is remembered), and
    // the address that reached it is first.
    phone.wait("the server's addresses remembered", |d| {
        let r = remembered(d, "server");
        r.first() == Some(&forwarded) && r.contains(&private)
    });
    phone.stop();
    phone.start_with(&listen, &["--no-mdns"]);
    phone.wait(
        "the server found again at the address that reached it",
        |d| connection_to(d, "server").is_some_and(|a| a.contains(&t.wan_ip[0])),
    );
    assert_eq!(remembered(phone, "server").first(), Some(&forwarded));
    drop(devices);
    drop(t);
}

/// The roster entry of `name` as `device`'s status shows it: the addresses it
/// remembers for it.
fn remembered(device: &Device, name: &str) -> Vec<String> {
    device.status()["roster"]
        .as_array()
        .and_then(|r| r.iter().find(|m| m["name"] == name))
        .and_then(|m| m["remembered"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

/// A home server behind a port forward and a device behind a firewall that drops
/// what comes unasked, both restarted at once, redial each other's remembered
/// addresses. Were both dials from their listen ports, the server's (dropped, so
/// pending) and the device's (through the forward) would meet as one TCP
/// simultaneous open, which Noise cannot take, at every try: they never met again.
#[test]
fn devices_restarted_together_meet_again_through_a_port_forward_and_a_dropping_firewall() {
    restarted_together(account(&["phone", "server"]));
}

/// The same with two relay devices (relays dialled each other from their listen
/// ports, as full devices dial relays).
#[test]
fn relays_restarted_together_meet_again_through_a_port_forward_and_a_dropping_firewall() {
    let mut first = account(&["laptop"]).remove(0);
    let mut relays = Vec::new();
    for name in ["phone", "server"] {
        let mut d = Device::new();
        let code = first.invite_relay();
        let out = d.kith(&["pair", "join", &code, "--name", name, "--relay"]);
        assert!(out.status.success(), "{}", stderr(&out));
        d.start();
        relays.push(d);
    }
    // Each knows the other (the first learns of the second from the laptop).
    for (d, other) in relays.iter().zip(["server", "phone"]) {
        d.wait("the other relay in the roster", |d| {
            d.status()["roster"]
                .as_array()
                .is_some_and(|r| r.iter().any(|m| m["name"] == other))
        });
    }
    first.stop();
    restarted_together(relays);
}

/// Devices `phone` and `server` (running or not) meet on each side of the
/// topology, then are stopped and started again at once.
fn restarted_together(mut devices: Vec<Device>) {
    for d in devices.iter_mut() {
        d.stop();
    }
    let Some(t) = Topology::or_skip() else { return };
    let port = 41_020;
    t.forward(0, port).expect("the port forward");
    t.route_without_nat(1).expect("the phone's network routed");
    let (phone, server) = devices.split_at_mut(1);
    let (phone, server) = (&mut phone[0], &mut server[0]);
    t.put_in(server, "ha");
    t.put_in(phone, "hb");
    let server_listen = format!("/ip4/{}/tcp/{port}", t.host_ip[0]);
    let phone_listen = format!("/ip4/{}/tcp/41021", t.host_ip[1]);
    let forwarded = format!("/ip4/{}/tcp/{port}", t.wan_ip[0]);
    server.start_with(&server_listen, &["--no-mdns"]);
    assert!(
        reaches(&t.ns("hb"), &t.wan_ip[0], port),
        "the port forward must work"
    );
    phone.start_with(&phone_listen, &["--no-mdns", "--peer", &forwarded]);
    assert!(
        !reaches(&t.ns("ha"), &t.host_ip[1], 41_021),
        "the phone's firewall must drop the server's dials"
    );
    phone.wait("the server remembered where its dial reached it", |d| {
        remembered(d, "server").first() == Some(&forwarded)
    });
    server.wait("the phone's address remembered", |d| {
        remembered(d, "phone").contains(&phone_listen)
    });
    phone.stop();
    server.stop();
    server.start_with(&server_listen, &["--no-mdns"]);
    phone.start_with(&phone_listen, &["--no-mdns"]);
    phone.wait("the server found again", |d| {
        connection_to(d, "server").is_some_and(|a| a.contains(&t.wan_ip[0]))
    });
    // Shown as the address alone, as an inbound connection's is.
    assert_eq!(connection_to(phone, "server"), Some(forwarded));
    drop(devices);
    drop(t);
}
