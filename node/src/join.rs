//! Both ends of pairing: the inviting device answering `/kith/pair/1` requests, and
//! `kith pair join`, which dials the inviter, joins its roster and creates the new
//! device's data directory. See [`crate::pair`] for the code and the messages.

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::StreamExt;
use kith_protocol::jid::BareJid;
use kith_protocol::ox::{self, DeviceKey};
use kith_protocol::record::{DeviceId, Record, Space};
use kith_protocol::roster::{Entry, Role};
use libp2p::TransportError;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{PeerId, request_response};
use rand::RngExt;

use crate::control::{Error, ErrorKind};
use crate::device::{Device, wall_now};
use crate::net::{self, Frames, MAX_PAIR_BYTES};
use crate::pair::{self, Code, CodeError};
use crate::store::Account;

/// How long `pair join` waits for the inviter at each step.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

fn refusal(why: &str) -> Vec<u8> {
    // Invariant: serialising a plain enum of strings to JSON cannot fail.
    serde_json::to_vec(&pair::Response::Refused(why.into())).expect("JSON of a string enum")
}

impl Device {
    /// Answers a pairing request from `peer` (the inviting side), and whether it
    /// showed a valid invite secret. `listen` is where this device's node listens,
    /// for the new device to dial.
    pub fn answer_pairing(
        &mut self,
        peer: &PeerId,
        bytes: &[u8],
        listen: &[libp2p::Multiaddr],
    ) -> (Vec<u8>, bool) {
        match self.try_pairing(peer, bytes, listen) {
            // Invariant: a plain enum of strings always serialises.
            Ok(r) => (serde_json::to_vec(&r).expect("JSON of a string enum"), true),
            Err(why) => (refusal(&why), false),
        }
    }

    fn try_pairing(
        &mut self,
        peer: &PeerId,
        bytes: &[u8],
        listen: &[libp2p::Multiaddr],
    ) -> Result<pair::Response, String> {
        let request: pair::Request =
            serde_json::from_slice(bytes).map_err(|_| "malformed pairing request".to_owned())?;
        let secret = match &request {
            pair::Request::Hello { secret } | pair::Request::Join { secret, .. } => secret,
        };
        let secret: [u8; 16] = pair::unb64(secret, 16)
            .and_then(|s| s.try_into().ok())
            .ok_or("malformed invite secret")?;
        let hash = pair::secret_hash(&secret);
        let invite = self
            .store
            .invite(&hash)
            .map_err(|e| e.to_string())?
            .ok_or("unknown invite code")?;
        if invite.used {
            return Err("this invite code was used already".into());
        }
        if invite.expires_ms <= wall_now().0 {
            return Err("this invite code expired".into());
        }
        match request {
            pair::Request::Hello { .. } => Ok(pair::Response::Account {
                jid: self.account.jid.clone(),
                genesis: pair::b64(&self.account.genesis),
            }),
            pair::Request::Join { entry, .. } => {
                let entry = pair::unb64(&entry, MAX_PAIR_BYTES)
                    .and_then(|b| Entry::decode(&b).ok())
                    .ok_or("malformed roster entry")?;
                if Some(entry.device) != net::device_of(peer) {
                    return Err("the entry is not for the connected device".into());
                }
                if entry.role != Role::Full || entry.revoked || entry.name.chars().count() > 64 {
                    return Err(
                        "the entry must be a full, unrevoked device with a short name".into(),
                    );
                }
                ox::cert_from_bytes(&entry.cert).map_err(|e| format!("bad certificate: {e}"))?;
                let device = entry.device;
                self.store.use_invite(&hash).map_err(|e| e.to_string())?;
                self.execute(kith_protocol::sync::Command::AddDevice(entry))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                if self.engine.roster().is_active(&device) {
                    let roster = self
                        .engine
                        .replica()
                        .space(Space::Roster)
                        .map(|r| pair::b64(&r.encode()))
                        .collect();
                    let addrs = listen.iter().map(|a| a.to_string()).collect();
                    Ok(pair::Response::Welcome { roster, addrs })
                } else {
                    Err("the roster refused the device (revoked before?)".into())
                }
            }
        }
    }
}

type PairSwarm = libp2p::Swarm<request_response::Behaviour<Frames<MAX_PAIR_BYTES>>>;

/// Whether a dial failed because nothing listens there (connection refused). libp2p
/// wraps the socket's error in `Either`s whose `source` skips it, so the error kinds
/// cannot be reached through `source()`; the kind shows in the debug form, which is
/// what is looked at.
fn refused(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::ConnectionRefused
        || format!("{e:?}").contains("kind: ConnectionRefused")
}

async fn ask(
    swarm: &mut PairSwarm,
    peer: PeerId,
    request: &pair::Request,
) -> Result<pair::Response, Error> {
    // Invariant: a plain enum of strings always serialises.
    let bytes = serde_json::to_vec(request).expect("JSON of a string enum");
    let id = swarm.behaviour_mut().send_request(&peer, bytes);
    let unreachable = |what: String| Error::new(ErrorKind::Unreachable, what);
    let wait = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) if request_id == id => {
                    return serde_json::from_slice::<pair::Response>(&response)
                        .map_err(|_| unreachable("the inviting device answered nonsense".into()));
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) if request_id == id => {
                    return Err(unreachable(format!(
                        "the inviting device did not answer: {error}"
                    )));
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(JOIN_TIMEOUT, wait)
        .await
        .map_err(|_| unreachable("the inviting device did not answer in time".into()))?
}

/// Joins the roster of the device that printed `code`, creating the device in `dir`
/// (which must not hold one). Returns the new device.
pub async fn join(
    dir: &Path,
    code: &str,
    name: &str,
    key_files: crate::store::KeyFiles,
) -> Result<Device, Error> {
    let code = Code::decode(code, wall_now().0).map_err(|e| match e {
        CodeError::Malformed(_) => Error::new(ErrorKind::Input, e.to_string()),
        CodeError::Expired => Error::new(ErrorKind::Refused, e.to_string()),
    })?;
    crate::device::check_name(name).map_err(|e| Error::new(ErrorKind::Input, e.to_string()))?;
    // Before anything reaches the inviting device: this directory must be new.
    Device::check_new(dir).map_err(|e| match e {
        crate::device::Error::Store(e) => e.into(),
        other => Error::new(ErrorKind::Store, other.to_string()),
    })?;
    let secret: [u8; 32] = rand::rng().random();
    let keypair = net::keypair(&secret);
    let device = DeviceId(SigningKey::from_bytes(&secret).verifying_key().to_bytes());
    let behaviour = request_response::Behaviour::new(
        [(
            net::PAIR_PROTOCOL,
            request_response::ProtocolSupport::Outbound,
        )],
        request_response::Config::default().with_request_timeout(JOIN_TIMEOUT),
    );
    let mut swarm: PairSwarm = net::swarm(keypair, behaviour, JOIN_TIMEOUT)
        .map_err(|e| Error::new(ErrorKind::Unreachable, e))?;
    let unreachable = |what: String| Error::new(ErrorKind::Unreachable, what);
    let dial = |swarm: &mut PairSwarm| {
        swarm
            .dial(
                DialOpts::peer_id(code.peer)
                    .addresses(code.addrs.clone())
                    .build(),
            )
            .map_err(|e| unreachable(format!("cannot dial the inviting device: {e}")))
    };
    dial(&mut swarm)?;
    // A refused handshake may be the inviter shedding a flood of strangers: try again
    // for a while, then report the last error.
    let started = tokio::time::Instant::now();
    let connected = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == code.peer => {
                    return Ok(());
                }
                SwarmEvent::OutgoingConnectionError {
                    peer_id: Some(p),
                    error,
                    ..
                } if p == code.peer => {
                    // Nobody listening there fails at once; a handshake cut short
                    // is worth another try.
                    let shed = match &error {
                        DialError::Transport(errors) => errors.iter().all(|(_, e)| match e {
                            TransportError::Other(io) => !refused(io),
                            TransportError::MultiaddrNotSupported(_) => false,
                        }),
                        _ => false,
                    };
                    if !shed || started.elapsed() > JOIN_TIMEOUT / 2 {
                        return Err(unreachable(format!(
                            "cannot reach the inviting device: {error}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    dial(&mut swarm)?;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(JOIN_TIMEOUT, connected)
        .await
        .map_err(|_| unreachable("the inviting device did not answer in time".into()))??;
    let secret_text = pair::b64(&code.secret);
    let refused = |why: String| {
        Error::new(
            ErrorKind::Refused,
            format!("the inviting device refused: {why}"),
        )
    };
    let (jid, genesis) = match ask(
        &mut swarm,
        code.peer,
        &pair::Request::Hello {
            secret: secret_text.clone(),
        },
    )
    .await?
    {
        pair::Response::Account { jid, genesis } => (jid, genesis),
        pair::Response::Refused(why) => return Err(refused(why)),
        pair::Response::Welcome { .. } => return Err(unreachable("unexpected answer".into())),
    };
    let account_jid = BareJid::parse(&jid)
        .map_err(|_| unreachable("the inviting device sent an invalid account".into()))?;
    let genesis: [u8; 32] = pair::unb64(&genesis, 32)
        .and_then(|g| g.try_into().ok())
        .ok_or_else(|| unreachable("the inviting device sent an invalid genesis".into()))?;
    let ox = DeviceKey::generate(&account_jid, wall_now())
        .map_err(|e| Error::new(ErrorKind::Store, e.to_string()))?;
    let entry = Entry {
        device,
        cert: ox::cert_to_bytes(&ox.cert()),
        name: name.to_owned(),
        role: Role::Full,
        revoked: false,
    };
    let (roster, inviter_addrs) = match ask(
        &mut swarm,
        code.peer,
        &pair::Request::Join {
            secret: secret_text,
            entry: pair::b64(&entry.encode()),
        },
    )
    .await?
    {
        pair::Response::Welcome { roster, addrs } => (roster, addrs),
        pair::Response::Refused(why) => return Err(refused(why)),
        pair::Response::Account { .. } => return Err(unreachable("unexpected answer".into())),
    };
    drop(swarm);
    // Signed roster records only; the engine checks their authors when it starts.
    let records: Vec<Record> = roster
        .iter()
        .filter_map(|r| pair::unb64(r, MAX_PAIR_BYTES))
        .filter_map(|b| Record::decode(&b).ok())
        .filter(|r| r.space == Space::Roster && r.verify().is_ok())
        .collect();
    let mut device = Device::create(
        dir,
        Account {
            jid: account_jid.to_string(),
            genesis,
            name: name.to_owned(),
        },
        secret,
        Some(ox),
        &records,
        key_files,
    )
    .map_err(|e| Error::new(ErrorKind::Store, e.to_string()))?;
    if let Some(inviter) = net::device_of(&code.peer) {
        let addrs: Vec<String> = inviter_addrs
            .iter()
            .filter(|a| a.parse::<libp2p::Multiaddr>().is_ok())
            .take(8)
            .cloned()
            .collect();
        device.remember_addrs(&inviter.0, &addrs.join(" "))?;
    }
    Ok(device)
}
