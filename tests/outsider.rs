//! A peer outside the roster tries to connect, read and inject: it is refused right
//! after the Noise handshake; while a pairing is open it may connect, but gets no
//! gossip, no reconciliation answer, and nothing it sends is applied.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kith_node::net::{self, Behaviour, BehaviourEvent, Multiaddr};
use kith_protocol::clock::Hlc;
use kith_protocol::record::{Body, ItemId, Record, Space};
use kith_protocol::sync::wire::Frame;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, gossipsub, request_response};

use crate::nodes::{Device, account};

/// What the outsider saw.
#[derive(Debug, Default)]
struct Seen {
    connected: u32,
    closed: u32,
    dial_errors: u32,
    gossip: u32,
    responses: u32,
    failures: u32,
    log: Vec<String>,
}

#[test]
fn an_outsider_gets_nothing_in_or_out() {
    let [a, b]: [Device; 2] = account(&["laptop", "phone"])
        .try_into()
        .unwrap_or_else(|_| unreachable!("two devices"));
    a.ok(&["contact", "add", "juliet@capulet.lit"]);
    b.wait("the first contact", |b| b.jids().len() == 1);

    let status = a.status();
    let peer: PeerId = status["device"]["peer_id"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("peer id");
    let listen: Multiaddr = status["node"]["listen"][0]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("listen address");
    let genesis = net::device_of(&peer).expect("an Ed25519 peer id");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (cmd_tx, mut cmd_rx) =
        tokio::sync::mpsc::unbounded_channel::<(&'static str, Option<Multiaddr>)>();
    let secret: [u8; 32] = rand::random();
    let key = net::keypair(&secret);
    let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
    let mut swarm = rt.block_on(async {
        let k = key.clone();
        net::node_swarm(
            key.clone(),
            |relay_client| Behaviour::new(&k, None, relay_client, false),
            Duration::from_secs(300),
        )
        .expect("swarm")
    });
    // The outsider's own gate lets anyone in: only A's gate is under test.
    swarm.behaviour_mut().gate.set_pairing_open(true);
    let topic = net::topic(&genesis);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .expect("subscribe");
    let s2 = seen.clone();
    let target = listen.clone().with(libp2p::multiaddr::Protocol::P2p(peer));
    let task = rt.spawn(async move {
        // Requests go to A's device and to whatever the outsider connected to last
        // (the pairing listener, whose identity is its own).
        let mut last: Option<PeerId> = None;
        loop {
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    Some(("dial", None)) => { let _ = swarm.dial(target.clone()); }
                    Some(("dial", Some(addr))) => { let _ = swarm.dial(addr); }
                    Some(("inject", _)) => {
                        // A record signed by the outsider, as gossip and as a request.
                        let record = Record::sign(
                            Space::Contacts,
                            ItemId([7; 16]),
                            Hlc { wall_ms: 1, counter: 0 },
                            Body::Tombstone,
                            &signing,
                        );
                        let frame = Frame::Gossip { records: vec![record] }.encode();
                        let _ = swarm.behaviour_mut().gossipsub.publish(topic.clone(), frame.clone());
                        let to = last.unwrap_or(peer);
                        swarm.behaviour_mut().sync.send_request(&to, frame.into());
                        swarm.behaviour_mut().sync.send_request(&to, vec![0xFF; 64].into());
                    }
                    _ => return,
                },
                event = swarm.select_next_some() => {
                    let mut s = s2.lock().expect("lock");
                    s.log.push(format!("{event:?}").chars().take(200).collect());
                    match event {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                            s.connected += 1;
                            last = Some(peer_id);
                        }
                        SwarmEvent::ConnectionClosed { .. } => s.closed += 1,
                        SwarmEvent::OutgoingConnectionError { .. } => s.dial_errors += 1,
                        SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { .. })) => s.gossip += 1,
                        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message { .. })) => s.responses += 1,
                        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure { .. })) => s.failures += 1,
                        _ => {}
                    }
                }
            }
        }
    });
    let snapshot = |f: &dyn Fn(&Seen) -> bool| f(&seen.lock().expect("lock"));

    let refused = |n: u32| move |s: &Seen| s.dial_errors + s.closed >= n && s.connected <= s.closed;
    // 1. No pairing open: refused right after the handshake.
    cmd_tx.send(("dial", None)).expect("task");
    a.wait("the stranger to be refused", |_| snapshot(&refused(1)));
    cmd_tx.send(("inject", None)).expect("task");
    a.wait("the requests to fail", |_| snapshot(&|s| s.failures >= 2));

    // 2. A pairing is open: the node's own port still refuses the stranger; the
    // pairing listener lets it in, and it gets nothing there either.
    let code = a.invite();
    let code = kith_node::pair::Code::parse(&code).expect("a code");
    let before = {
        let s = seen.lock().expect("lock");
        s.dial_errors + s.closed
    };
    cmd_tx.send(("dial", None)).expect("task");
    a.wait("the stranger to be refused again", |_| {
        snapshot(&refused(before + 1))
    });
    // The pairing listener's identity is its own (not A's device's).
    let pairing = code.addrs[0].clone();
    cmd_tx.send(("dial", Some(pairing))).expect("task");
    a.wait("the stranger to connect to the pairing listener", |_| {
        snapshot(&|s| s.connected > s.closed)
    });
    let failures = seen.lock().expect("lock").failures;
    cmd_tx.send(("inject", None)).expect("task");
    a.wait("the injected requests to go unanswered", |_| {
        snapshot(&|s| s.failures >= failures + 2)
    });
    // A publishes while the stranger is connected and subscribed; B gets it.
    a.ok(&["contact", "add", "tybalt@capulet.lit"]);
    b.wait("the new contact on B", |b| b.jids().len() == 2);

    let _ = cmd_tx.send(("stop", None));
    rt.block_on(task).expect("task");
    let s = seen.lock().expect("lock");
    assert_eq!(s.gossip, 0, "the stranger read gossip: {:?}", s.log);
    assert_eq!(s.responses, 0, "the stranger got an answer: {:?}", s.log);
    assert_eq!(a.jids(), ["juliet@capulet.lit", "tybalt@capulet.lit"]);
    assert_eq!(b.jids(), ["juliet@capulet.lit", "tybalt@capulet.lit"]);
    let st = a.status();
    assert_eq!(
        st["sync"]["rejected_records"], 0,
        "nothing reached the engine"
    );
    assert_eq!(st["connected_peers"], 1, "only B is a peer: {st}");
}
