//! `kith pair join`: finds the inviting device (by mDNS or at the addresses the code
//! carries), runs SPAKE2 with the code, joins its roster and creates the new device's
//! data directory. See [`crate::pair`] for the code and the messages; the inviting
//! side is [`crate::pair::answer`].

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::StreamExt;
use kith_protocol::jid::BareJid;
use kith_protocol::ox::{self, DeviceKey};
use kith_protocol::record::{DeviceId, Record, Space};
use kith_protocol::roster::{Entry, Role};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, TransportError, request_response};
use rand::RngExt;
use spake2::{Ed25519Group, Identity, Password, Spake2};

use crate::api::{Error, ErrorKind};
use crate::device::{Device, wall_now};
use crate::net::{self, Frames, MAX_PAIR_BYTES};
use crate::pair::{self, Code, Refusal};
use crate::store::Account;

/// How long `pair join` waits for the inviter at each step.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `pair join` looks for the inviter on mDNS.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(10);

/// How `pair join` looks for the inviting device when the code carries no address.
#[derive(Debug, Clone, Default)]
pub struct Find {
    /// Whether to look on mDNS at all.
    pub mdns: bool,
    /// The interfaces to look on (every one when empty).
    pub interfaces: Vec<String>,
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

/// What one attempt at one address came to, when it did not join.
enum Failed {
    /// That device has no invitation with this nameplate: try the next one.
    NoSuchCode,
    /// Anything else: report it.
    Error(Error),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

fn unreachable(what: String) -> Error {
    Error::new(ErrorKind::Unreachable, what)
}

fn refused_by(why: &Refusal) -> Failed {
    match why {
        Refusal::NoSuchCode => Failed::NoSuchCode,
        why => Failed::Error(Error::new(
            ErrorKind::Refused,
            format!("the inviting device refused: {why}"),
        )),
    }
}

async fn ask(
    swarm: &mut PairSwarm,
    peer: PeerId,
    request: &pair::Request,
) -> Result<pair::Response, Failed> {
    // Invariant: a plain enum of strings always serialises.
    let bytes = serde_json::to_vec(request).expect("JSON of a string enum");
    let id = swarm.behaviour_mut().send_request(&peer, bytes);
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
                    return match serde_json::from_slice::<pair::Response>(&response) {
                        Ok(pair::Response::Refused(why)) => Err(refused_by(&why)),
                        Ok(r) => Ok(r),
                        Err(_) => {
                            Err(unreachable("the inviting device answered nonsense".into()).into())
                        }
                    };
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) if request_id == id => {
                    // Its gate turned the connection down after the handshake: it is
                    // there, and has no invitation open (nor one ended lately).
                    if matches!(error, request_response::OutboundFailure::ConnectionClosed) {
                        return Err(Error::new(
                            ErrorKind::Refused,
                            "the inviting device turned the connection down: it has no \
                             invitation open (used or cancelled over an hour ago, expired, \
                             or its node restarted since). Ask for a new code",
                        )
                        .into());
                    }
                    return Err(unreachable(format!(
                        "the inviting device did not answer: {error}"
                    ))
                    .into());
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(JOIN_TIMEOUT, wait)
        .await
        .map_err(|_| unreachable("the inviting device did not answer in time".into()))?
}

fn unexpected() -> Failed {
    unreachable("the inviting device answered out of order".into()).into()
}

/// A joining device's keys, made once for every attempt.
struct Joiner {
    secret: [u8; 32],
    device: DeviceId,
}

/// What the inviting device gave, once the device joined.
struct Joined {
    inviter: String,
    name: String,
    jid: BareJid,
    genesis: [u8; 32],
    ox: DeviceKey,
    roster: Vec<String>,
    addrs: Vec<String>,
}

/// Connects to `addr` (whoever listens there: SPAKE2 tells whether it holds the
/// code), and runs the exchange.
async fn attempt(
    joiner: &Joiner,
    addr: &Multiaddr,
    code: &Code,
    name: &str,
    role: Role,
) -> Result<Joined, Failed> {
    let behaviour = request_response::Behaviour::new(
        [(
            net::PAIR_PROTOCOL,
            request_response::ProtocolSupport::Outbound,
        )],
        request_response::Config::default().with_request_timeout(JOIN_TIMEOUT),
    );
    let mut swarm: PairSwarm =
        net::swarm(net::keypair(&joiner.secret), behaviour, JOIN_TIMEOUT).map_err(unreachable)?;
    let dial = |swarm: &mut PairSwarm| {
        swarm
            .dial(DialOpts::unknown_peer_id().address(addr.clone()).build())
            .map_err(|e| unreachable(format!("cannot dial the inviting device at {addr}: {e}")))
    };
    dial(&mut swarm)?;
    // A refused handshake may be the inviter shedding a flood of strangers: try again
    // for a while, then report the last error.
    let started = tokio::time::Instant::now();
    let connected = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => return Ok(peer_id),
                SwarmEvent::OutgoingConnectionError { error, .. } => {
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
                            "cannot reach the inviting device at {addr}: {error}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    dial(&mut swarm)?;
                }
                _ => {}
            }
        }
    };
    let inviter = tokio::time::timeout(JOIN_TIMEOUT, connected)
        .await
        .map_err(|_| {
            unreachable(format!(
                "the inviting device at {addr} did not answer in time"
            ))
        })??;
    let me = *swarm.local_peer_id();
    let (spake, message) = Spake2::<Ed25519Group>::start_a(
        &Password::new(code.password()),
        &Identity::new(&me.to_bytes()),
        &Identity::new(&inviter.to_bytes()),
    );
    let start = pair::Request::Start {
        nameplate: code.nameplate(),
        spake: pair::b64(&message),
    };
    let pair::Response::Spake { spake: theirs } = ask(&mut swarm, inviter, &start).await? else {
        return Err(unexpected());
    };
    let key = pair::unb64(&theirs, 64)
        .and_then(|t| spake.finish(&t).ok())
        .ok_or_else(|| unreachable("the inviting device sent a malformed SPAKE2 message".into()))?;
    let key = zeroize::Zeroizing::new(key);
    let confirm = pair::Request::Confirm {
        mac: pair::b64(&pair::proof(&key, pair::JOINER)),
    };
    let pair::Response::Account { jid, genesis, mac } = ask(&mut swarm, inviter, &confirm).await?
    else {
        return Err(unexpected());
    };
    if !pair::unb64(&mac, 32).is_some_and(|m| pair::proves(&key, pair::INVITER, &m)) {
        return Err(Error::new(
            ErrorKind::Refused,
            "the device that answered could not prove it holds the code: not joining it",
        )
        .into());
    }
    let jid = BareJid::parse(&jid)
        .map_err(|_| unreachable("the inviting device sent an invalid account".into()))?;
    let genesis: [u8; 32] = pair::unb64(&genesis, 32)
        .and_then(|g| g.try_into().ok())
        .ok_or_else(|| unreachable("the inviting device sent an invalid genesis".into()))?;
    let ox = DeviceKey::generate(&jid, wall_now())
        .map_err(|e| Error::new(ErrorKind::Store, e.to_string()))?;
    let entry = Entry {
        device: joiner.device,
        cert: ox::cert_to_bytes(&ox.cert()),
        name: name.to_owned(),
        role,
        revoked: false,
    };
    let join = pair::Request::Join {
        entry: pair::b64(&entry.encode()),
    };
    let pair::Response::Welcome {
        roster,
        addrs,
        device,
        name,
    } = ask(&mut swarm, inviter, &join).await?
    else {
        return Err(unexpected());
    };
    Ok(Joined {
        inviter: device,
        name,
        jid,
        genesis,
        ox,
        roster,
        addrs,
    })
}

/// Makes `dir` (mode 0700) if it is missing, and checks a file can be written in it.
fn writable(dir: &Path) -> Result<(), Error> {
    let cannot = |e: std::io::Error| {
        Error::new(
            ErrorKind::Store,
            format!("cannot write in {}: {e}", dir.display()),
        )
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(cannot)?;
    let probe = dir.join(".kith-join-probe");
    std::fs::write(&probe, b"").map_err(cannot)?;
    std::fs::remove_file(&probe).map_err(cannot)
}

/// Joins the roster of the device that printed `code` as a device of `role`,
/// creating the device in `dir` (which must not hold one). Without addresses in the
/// code, the inviter is looked for as `find` says. Returns the new device.
pub async fn join(
    dir: &Path,
    code: &str,
    name: &str,
    role: Role,
    key_files: crate::store::KeyFiles,
    find: &Find,
) -> Result<Device, Error> {
    let code = Code::parse(code).map_err(|e| Error::new(ErrorKind::Input, e.to_string()))?;
    crate::device::check_name(name).map_err(|e| Error::new(ErrorKind::Input, e.to_string()))?;
    // Before anything reaches the inviting device: this directory must be new.
    Device::check_new(dir).map_err(|e| match e {
        crate::device::Error::Store(e) => e.into(),
        other => Error::new(ErrorKind::Store, other.to_string()),
    })?;
    // Before anything reaches the inviting device: the directory can be made (a
    // join the inviter took, then not stored here, would leave a device nobody
    // holds in its roster).
    writable(dir)?;
    let candidates = if !code.addrs.is_empty() {
        code.addrs.clone()
    } else if find.mdns {
        crate::discovery::find_invitation(&find.interfaces, &code.nameplate(), FIND_TIMEOUT)
            .await
            .map_err(|e| Error::new(ErrorKind::Input, e.to_string()))?
    } else {
        return Err(Error::new(
            ErrorKind::Input,
            "with mDNS off, give the code with the addresses `kith pair invite` printed \
             after its @",
        ));
    };
    if candidates.is_empty() {
        return Err(unreachable(format!(
            "no device on this network is inviting with the code {} (looked on mDNS for {} s). \
             Is the inviting device's node running, on this network? From another network, \
             give the code with the addresses `kith pair invite` printed after its @",
            code.short(),
            FIND_TIMEOUT.as_secs()
        )));
    }
    let secret: [u8; 32] = rand::rng().random();
    let joiner = Joiner {
        secret,
        device: DeviceId(SigningKey::from_bytes(&secret).verifying_key().to_bytes()),
    };
    // Every address in turn (the code's, or every device advertising the
    // nameplate: two inviters may share one). What one refused is said over what
    // could not be reached.
    let mut joined = None;
    let mut failure: Option<Error> = None;
    for addr in &candidates {
        match attempt(&joiner, addr, &code, name, role).await {
            Ok(j) => {
                joined = Some((j, addr));
                break;
            }
            Err(Failed::NoSuchCode) => {}
            Err(Failed::Error(e)) => {
                if failure
                    .as_ref()
                    .is_none_or(|f| f.kind == ErrorKind::Unreachable)
                {
                    failure = Some(e);
                }
            }
        }
    }
    let Some((joined, reached_at)) = joined else {
        return Err(failure.unwrap_or_else(|| {
            Error::new(
                ErrorKind::Refused,
                format!("the inviting device refused: {}", Refusal::NoSuchCode),
            )
        }));
    };
    // Signed roster records only; the engine checks their authors when it starts.
    let records: Vec<Record> = joined
        .roster
        .iter()
        .filter_map(|r| pair::unb64(r, MAX_PAIR_BYTES))
        .filter_map(|b| Record::decode(&b).ok())
        .filter(|r| r.space == Space::Roster && r.verify().is_ok())
        .collect();
    let mut device = Device::create(
        dir,
        Account {
            jid: joined.jid.to_string(),
            genesis: joined.genesis,
            name: joined.name.clone(),
        },
        joiner.secret,
        Some(joined.ox),
        &records,
        key_files,
    )
    .map_err(|e| Error::new(ErrorKind::Store, e.to_string()))?;
    if let Some(inviter) =
        pair::unb64(&joined.inviter, 32).and_then(|d| <[u8; 32]>::try_from(d).ok())
    {
        // As identify's would be, reached for the invitation at `reached_at`
        // (the pairing port: only its IP address counts).
        let listen: Vec<Multiaddr> = joined
            .addrs
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .collect();
        let remembered = crate::node::invited(&listen, reached_at);
        if remembered.all().next().is_some() {
            device.remember_addrs(&inviter, &remembered.line())?;
        }
    }
    Ok(device)
}
