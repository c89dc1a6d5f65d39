//! Floods from the LAN or from the same user: a stranger filling a listener never
//! keeps a legitimate client out (the pairing listener, the XEP-0174 stream port,
//! the control socket).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kith_node::net::{self, Multiaddr};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;

use crate::nodes::Device;

/// Strangers that keep `per_identity` connections each to `target` open from
/// `identities` identities, dialling again whenever one is closed, until stopped.
struct PairingFlood {
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicU32>,
    closed: Arc<AtomicU32>,
    rt: tokio::runtime::Runtime,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Moves the calling thread into network namespace `ns`: sockets it makes from now
/// on live there.
fn enter_namespace(ns: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("namespace file");
    // SAFETY: setns on a file descriptor we hold open, for this thread only.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl PairingFlood {
    /// Starts the flood; from namespace `ns` when given, with `redial` dialling
    /// again whenever a connection closes (a storm), else holding what it got.
    fn start(
        target: Multiaddr,
        identities: usize,
        per_identity: usize,
        ns: Option<String>,
        redial: bool,
    ) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_start(move || {
                if let Some(ns) = &ns {
                    enter_namespace(ns);
                }
            })
            .enable_all()
            .build()
            .expect("runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicU32::new(0));
        let closed = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..identities {
            let secret: [u8; 32] = rand::random();
            let (stop, connected, closed) = (stop.clone(), connected.clone(), closed.clone());
            let target = target.clone();
            tasks.push(rt.spawn(async move {
                let Ok(mut swarm) = net::swarm(
                    net::keypair(&secret),
                    libp2p::swarm::dummy::Behaviour,
                    Duration::from_secs(300),
                ) else {
                    return;
                };
                let dial = |swarm: &mut libp2p::Swarm<libp2p::swarm::dummy::Behaviour>| {
                    let opts = DialOpts::unknown_peer_id().address(target.clone()).build();
                    let _ = swarm.dial(opts);
                };
                for _ in 0..per_identity {
                    dial(&mut swarm);
                }
                while !stop.load(Ordering::Relaxed) {
                    let event =
                        tokio::time::timeout(Duration::from_millis(100), swarm.select_next_some())
                            .await;
                    match event {
                        Ok(SwarmEvent::ConnectionEstablished { .. }) => {
                            connected.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(SwarmEvent::ConnectionClosed { .. })
                        | Ok(SwarmEvent::OutgoingConnectionError { .. }) => {
                            closed.fetch_add(1, Ordering::Relaxed);
                            if redial {
                                dial(&mut swarm);
                            }
                        }
                        _ => {}
                    }
                }
            }));
        }
        Self {
            stop,
            connected,
            closed,
            rt,
            tasks,
        }
    }
}

impl Drop for PairingFlood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            let _ = self.rt.block_on(t);
        }
    }
}

/// Pairs `b` with `a` under `flood`; the contact of `a` reaches `b`.
fn join_under(a: &Device, b: &mut Device, code: &str, flood: PairingFlood, listen: &str) {
    // Every dial answered, and more connections made than one address may hold.
    a.wait("the flood to fill the pairing listener", |_| {
        let connected = flood.connected.load(Ordering::Relaxed);
        connected > 8 && connected + flood.closed.load(Ordering::Relaxed) >= 160
    });
    let started = Instant::now();
    let out = b.kith_prefixed(&["pair", "join", code, "--name", "phone"], true);
    assert!(
        out.status.success(),
        "pair join under a flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "joined in {:?} while {} stranger connections came and {} were closed",
        started.elapsed(),
        flood.connected.load(Ordering::Relaxed),
        flood.closed.load(Ordering::Relaxed)
    );
    drop(flood);
    b.start_with(listen, &["--no-mdns"]);
    b.wait("the contact on the new device", |b| {
        b.jids() == ["juliet@capulet.lit"]
    });
}

/// 160 connections held open from the joiner's own address (the finding: 128 made
/// `pair join` fail): the joiner takes the place of the oldest stranger.
#[test]
fn a_pairing_flood_from_the_same_address_does_not_keep_a_device_out() {
    let mut a = Device::new();
    a.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    a.start();
    a.ok(&["contact", "add", "juliet@capulet.lit"]);
    let code = a.invite();
    let parsed = kith_node::pair::Code::parse(&code).expect("a code");
    let flood = PairingFlood::start(parsed.addrs[0].clone(), 40, 4, None, false);
    let mut b = Device::new();
    join_under(&a, &mut b, &code, flood, "/ip4/127.0.0.1/tcp/0");
}

/// A stranger on the LAN dialling again as fast as it can, from another address
/// than the joiner's: per-address caps keep it to its own share.
#[test]
fn a_pairing_storm_from_another_address_does_not_keep_a_device_out() {
    let Some(net) = crate::netns::Net::or_skip(1) else {
        return;
    };
    let listen = |i: usize| format!("/ip4/{}/tcp/0", net.ip[i]);
    let mut a = Device::new().with_prefix(&net.prefix(0));
    a.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    a.start_with(&listen(0), &["--no-mdns"]);
    a.ok(&["contact", "add", "juliet@capulet.lit"]);
    let code = a.invite();
    let parsed = kith_node::pair::Code::parse(&code).expect("a code");
    // The storm comes from A's own namespace (its own address), the joiner from B's.
    let flood = PairingFlood::start(
        parsed.addrs[0].clone(),
        40,
        4,
        Some(net.ns[0].clone()),
        true,
    );
    let mut b = Device::new().with_prefix(&net.prefix(1));
    join_under(&a, &mut b, &code, flood, &listen(1));
    drop((a, b));
}

#[test]
fn streams_that_never_read_do_not_lock_the_xep0174_port() {
    let mut a = Device::new();
    a.ok(&["init", "--jid", "romeo@montague.lit"]);
    a.start();
    let port = a.status()["node"]["xmpp_port"].as_u64().expect("port") as u16;
    let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                  xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    let disco = "<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
    // 48 streams that open, ask for a lot, and never read.
    let mut slow = Vec::new();
    for _ in 0..48 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let _ = s.write_all(header.as_bytes());
        for _ in 0..200 {
            if s.write_all(disco.as_bytes()).is_err() {
                break;
            }
        }
        slow.push(s);
    }
    // A client that reads gets its stream at once.
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    c.write_all(format!("{header}{disco}</stream:stream>").as_bytes())
        .expect("write");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(out.contains("<stream:features>"), "{out}");
    assert!(out.contains("urn:xmpp:contacts:0"), "{out}");
    assert!(out.ends_with("</stream:stream>"), "{out}");
    drop(slow);
    assert!(a.running());
}

#[test]
fn control_clients_that_never_finish_a_line_do_not_lock_the_cli_out() {
    let mut a = Device::new();
    a.ok(&["init", "--jid", "romeo@montague.lit"]);
    a.start();
    let path = a.dir.join("control.sock");
    let mut idle = Vec::new();
    for _ in 0..40 {
        let mut s = UnixStream::connect(&path).expect("connect");
        s.write_all(b"{\"status\"").expect("write");
        idle.push(s);
    }
    a.ok(&["contact", "add", "juliet@capulet.lit"]);
    assert_eq!(a.jids(), ["juliet@capulet.lit"]);
    drop(idle);
}

/// A loop connecting to the control socket and hanging up as fast as it can (found by
/// the attacker helper: commands then failed with exit 7, some after being applied):
/// every command succeeds, and is applied once.
#[test]
fn a_connection_storm_on_the_control_socket_fails_no_command() {
    let mut a = Device::new();
    a.ok(&["init", "--jid", "romeo@montague.lit"]);
    a.start();
    let path = a.dir.join("control.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = UnixStream::connect(&path) {
                    drop(s);
                    n += 1;
                }
            }
            n
        })
    };
    for i in 0..20 {
        a.ok(&["contact", "add", &format!("storm{i}@x.lit")]);
    }
    stop.store(true, Ordering::Relaxed);
    let connections = storm.join().expect("the storm thread");
    assert!(connections > 100, "{connections} connections");
    assert_eq!(a.jids().len(), 20);
}
