//! Starting a node: its keys and swarms, listeners, discovery, control socket and
//! XEP-0174 service, and the task that runs it until it is stopped.

use super::*;

/// Starts a node on `device`: listeners, discovery, control socket, and the task.
pub async fn start(device: Device, options: Options) -> Result<Running, Error> {
    let keypair = net::keypair(&device.secret);
    let me = keypair.public().to_peer_id();
    let ahead = device.ahead();
    let serve_relay = device.is_relay();
    // The pairing listener has an identity of its own, new at every start: its port
    // is advertised beside the day's guise while an invitation is open, and the
    // device's own PeerId there would name the device for good. SPAKE2 proves the
    // inviter to the joiner; `Welcome` names the device.
    let mut pair_swarm = net::swarm(
        libp2p::identity::Keypair::generate_ed25519(),
        PairBehaviour::new(),
        Duration::from_secs(60),
    )
    .map_err(Error::Network)?;
    let behaviour_key = keypair.clone();
    let mut swarm = net::node_swarm(
        keypair,
        |relay_client| Behaviour::new(&behaviour_key, Some(ahead), relay_client, serve_relay),
        Duration::from_secs(24 * 3600),
    )
    .map_err(Error::Network)?;
    // Where no port is asked for (port 0, the default), the ports of the day's guise:
    // own devices that remember an address work out where to dial, and an observer
    // cannot follow the device by them; any free port if one is taken.
    let calendar = options.calendar.clone();
    let guise = discover::guise(&device, &calendar);
    let defaults = options.listen.is_empty();
    let listen = if defaults {
        default_listen()
    } else {
        options.listen.clone()
    };
    let mut moving = Vec::new();
    for addr in &listen {
        // Without IPv6 on this host the default IPv6 listeners are left out; an
        // address asked for must work.
        let tolerated = |e: &Error| {
            if defaults && is_ip6(addr) {
                warn!("not listening on {addr}: {e}");
                true
            } else {
                false
            }
        };
        let opened = if port_of(addr) == Some(0) {
            listen_moving(&mut swarm, addr, guise.p2p_port)
                .map(|id| moving.push((id, addr.clone())))
        } else if !tcp_port_free(addr) {
            Err(Error::Listen(format!("{addr}: Address already in use")))
        } else {
            swarm
                .listen_on(addr.clone())
                .map(|_| ())
                .map_err(|e| Error::Listen(format!("{addr}: {}", reason(&e))))
        };
        match opened {
            Err(e) if tolerated(&e) => continue,
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        // The pairing listener (TCP only): same address, a port of its own.
        if tcp_port(addr).is_none() {
            continue;
        }
        let pair_addr: Multiaddr = addr
            .iter()
            .map(|p| match p {
                Protocol::Tcp(_) => Protocol::Tcp(0),
                other => other,
            })
            .collect();
        if let Err(e) = pair_swarm.listen_on(pair_addr.clone()) {
            let e = Error::Listen(format!("{pair_addr}: {}", reason(&e)));
            if !tolerated(&e) {
                return Err(e);
            }
        }
    }
    let topic = net::topic(&DeviceId(device.account.genesis));
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| Error::Network(e.to_string()))?;
    let stream_ip = bind_ip(&listen);
    let stream_moves = options.xmpp_port.is_none_or(|p| p == 0);
    let xmpp_listener = if stream_moves {
        bind_stream(stream_ip, guise.stream_port).or_else(|_| bind_stream(stream_ip, 0))
    } else {
        bind_stream(stream_ip, options.xmpp_port.unwrap_or(0))
    }
    .map_err(|e| Error::Listen(format!("XEP-0174 port: {e}")))?;
    let xmpp_port = xmpp_listener
        .local_addr()
        .map_err(|e| Error::Listen(e.to_string()))?
        .port();
    let (discovery, seen_rx) = if options.mdns {
        let (d, rx) = Discovery::start(&options.mdns_interfaces)?;
        (Some(d), Some(rx))
    } else {
        (None, None)
    };
    let instance = guise.instance();
    let (instance_tx, instance_rx) = watch::channel(xmpp::Names {
        now: instance.clone(),
        before: None,
    });
    let (stream_tx, stream_rx) = mpsc::channel(1);
    let ox_key = device.ox_key().map_err(|e| Error::Failed(e.message))?;
    let mut pep_names = BTreeMap::new();
    let mut device = device;
    for (node, item, name) in device.store.item_names()? {
        // Names of retracted items are forgotten, also once their tombstone was
        // collected (the table stays bounded, and a name a client chose, maybe a
        // JID, does not outlive its item on the disk).
        let retracted = device
            .engine
            .replica()
            .get(node, &item)
            .is_none_or(|r| r.is_tombstone());
        if retracted {
            device.store.remove_item_name(node, &item)?;
        } else {
            pep_names.insert((node, item), name);
        }
    }
    let (xmpp_calls_tx, xmpp_calls_rx) = mpsc::channel(64);
    let (pep_notices, _) = broadcast::channel(xmpp::NOTICE_QUEUE);
    let (pep_secrets, secrets_rx) = watch::channel(None);
    let xmpp_context = xmpp::Context {
        instance: instance_rx,
        account: device.jid.to_string(),
        lan: options.xmpp_lan,
        calls: xmpp_calls_tx,
        notices: pep_notices.clone(),
        secrets: secrets_rx,
    };
    device.watch = Some(Vec::new());
    device.write_index_behind();
    let (calls_tx, calls_rx) = mpsc::channel(16);
    let handle = Handle::new(calls_tx);
    let socket_path: PathBuf = device.dir().join("control.sock");
    let socket = api::socket::serve(&socket_path, handle.clone())
        .map_err(|e| Error::Listen(format!("{}: {e}", socket_path.display())))?;
    let mut node = Node {
        waiters: Vec::new(),
        device,
        ox_key,
        pep_notices,
        pep_secrets,
        pep_secrets_for: None,
        pep_secrets_keys: BTreeSet::new(),
        pep_forget: Vec::new(),
        pep_names,
        swarm,
        pair_swarm,
        pair_listen: Vec::new(),
        topic,
        me,
        out_requests: HashMap::new(),
        notices: HashMap::new(),
        revoked_peers: BTreeMap::new(),
        revoked_here: false,
        cutting: BTreeMap::new(),
        held: Vec::new(),
        inbound: HashMap::new(),
        next_inbound: 1,
        connected: BTreeMap::new(),
        allowed: BTreeSet::new(),
        allowed_devices: BTreeSet::new(),
        pairing: BTreeMap::new(),
        // The peer a `/p2p` at the end names is known before any dial.
        configured: options
            .peers
            .iter()
            .map(|a| {
                let named = match a.iter().last() {
                    Some(Protocol::P2p(peer)) => Some(peer),
                    _ => None,
                };
                (a.clone(), named)
            })
            .collect(),
        listen: Vec::new(),
        moving,
        readvertise_due: false,
        p2p_port: None,
        xmpp_port,
        stream_rebind: stream_moves.then_some((stream_tx, stream_ip)),
        xmpp_instance: instance,
        instance_tx,
        calendar,
        guise,
        discovery,
        advert: None,
        sightings: sightings::Sightings::default(),
        relays: BTreeMap::new(),
        links: BTreeMap::new(),
        reached_at: BTreeMap::new(),
        own_dials: BTreeMap::new(),
        redial_rounds: 0,
        listen_any: listen.iter().any(relayed::is_unspecified),
        reach: relayed::Reach::default(),
    };
    node.update_roster();
    // Revoked already (`update_roster` found it): nobody to dial.
    let dials = node.dials();
    let configured: Vec<(Multiaddr, Option<PeerId>)> =
        node.configured.iter().filter(|_| dials).cloned().collect();
    for (addr, peer) in configured {
        if let Err(e) = node.dial_configured(addr.clone(), peer) {
            warn!("cannot dial {addr}: {e}");
        }
    }
    // The first round of redials comes at once: it dials the configured addresses
    // again, from another port than these dials (a second dial from the same one
    // to the same address could not connect).
    node.redial_rounds += 1;
    node.redial_known()?;
    // Spawned last: nothing fallible follows, so it never outlives a failed start.
    let xmpp_task = tokio::spawn(xmpp::serve(xmpp_listener, stream_rx, xmpp_context));
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut calls_rx = calls_rx;
        let result = node
            .run(&mut calls_rx, xmpp_calls_rx, seen_rx, stop_rx)
            .await;
        xmpp_task.abort();
        let _ = std::fs::remove_file(&socket_path);
        // Every CLI still waiting is told why the node stopped: calls not taken
        // yet, and waits.
        let why = match &result {
            Ok(()) => api::Error::new(api::ErrorKind::NotRunning, "the node stopped"),
            Err(e @ (Error::Store(_) | Error::Failed(_))) => {
                api::Error::new(api::ErrorKind::Store, e.to_string())
            }
            Err(e) => api::Error::new(api::ErrorKind::NotRunning, e.to_string()),
        };
        calls_rx.close();
        // Closed, `recv` ends once the queue is empty and no sender holds a place.
        while let Some(call) = calls_rx.recv().await {
            let _ = call.reply.try_send(Reply::Error(why.clone()));
        }
        for (_, _, reply) in node.waiters.drain(..) {
            let _ = reply.try_send(Reply::Error(why.clone()));
        }
        // Answers already handed over (a store failure's, say) are written first.
        socket.close().await;
        if let Some(d) = node.discovery.take() {
            d.stop();
        }
        result
    });
    Ok(Running {
        handle,
        stop: stop_tx,
        task,
    })
}
