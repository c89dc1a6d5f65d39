//! XEP-0174 link-local discovery with mdns-sd: this device's `_presence._tcp`
//! advertisement, and browsing for the advertisements of its own devices.
//!
//! * Everything an advertisement shows that could name the device is its *guise*
//!   ([`Guise`]): the instance `<label>@<host>`, the host name of the SRV target and
//!   the A records, `kith.tag`, and (by default) both ports. All are HMAC-SHA-256
//!   values keyed with a roster secret over the day number (UTC) and the device id,
//!   so they change together every day and with every rotation of the secrets, and
//!   to anyone without the secret the guises of two days are unrelated random
//!   values. The machine's own host name and the JID are never published.
//! * TXT: `txtvers=1` first, `status=avail`, `port.p2pj` equal to the SRV port (the
//!   XEP-0174 XML stream port), then kith's keys: `kith.tag` and `kith.p2p` (the
//!   libp2p TCP port); XEP-0115 `hash`, `node` and `ver` of the stream port's
//!   disco#info (XEP-0174 §6.2). `1st`, `last`, `jid` are never published. While
//!   an invitation is open (and an hour after it ended), `kith.pair` (the pairing
//!   listener's port) and `kith.invite` (the nameplates: two random symbols each, the
//!   only part of a code that is public) too, so a joining device finds its inviter;
//!   [`find_invitation`] is that search.
//! * Own devices recognise a tag by trying the secrets they hold for each roster
//!   device, for yesterday, today and tomorrow, and can compute the ports a device
//!   listens on that day (to dial an address they remember).
//! * Only the interfaces asked for are used (all of them when none is named). IPv6
//!   is not used: link-local IPv6 addresses need a scope id that TCP multiaddrs
//!   cannot carry portably, and every LAN this serves has IPv4; resolved IPv6
//!   addresses are ignored on purpose.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use kith_protocol::record::DeviceId;
use libp2p::Multiaddr;
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use sha2::Sha256;
use tokio::sync::mpsc;

/// The XEP-0174 service type.
pub const SERVICE: &str = "_presence._tcp.local.";

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
#[error("mDNS: {0}")]
pub struct Error(String);

/// One device's tag for day `day` under `key`.
pub fn tag(key: &[u8], day: u64, device: &DeviceId) -> String {
    hex(&mac(key, b"kith mdns tag\0", day, device)[..8])
}

fn mac(key: &[u8], domain: &[u8], day: u64, device: &DeviceId) -> [u8; 32] {
    // Invariant: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(domain);
    mac.update(&day.to_be_bytes());
    mac.update(&device.0);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    kith_protocol::hex::encode(bytes)
}

/// The first port a guise may choose: the IANA dynamic range.
pub const FIRST_PORT: u16 = 49_152;

/// What a device shows on the LAN during one day under one key. Every field is
/// derived from the same key, day and device, so they all change together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guise {
    /// The instance label (before `@`): 8 hex digits.
    pub label: String,
    /// The advertised host name (without `.local.`): `h` and 10 hex digits.
    pub host: String,
    /// The `kith.tag` ([`tag`]).
    pub tag: String,
    /// The libp2p port it listens on when no address is configured.
    pub p2p_port: u16,
    /// The XEP-0174 stream port it listens on when none is configured.
    pub stream_port: u16,
}

impl Guise {
    /// The guise of `device` for day `day` under `key`.
    pub fn of(key: &[u8], day: u64, device: &DeviceId) -> Self {
        let m = mac(key, b"kith mdns guise\0", day, device);
        let port = |a: u8, b: u8| FIRST_PORT + u16::from_be_bytes([a, b]) % (u16::MAX - FIRST_PORT);
        let mut stream_port = port(m[13], m[14]);
        let p2p_port = port(m[11], m[12]);
        if stream_port == p2p_port {
            stream_port = FIRST_PORT + (stream_port - FIRST_PORT + 1) % (u16::MAX - FIRST_PORT);
        }
        Self {
            label: hex(&m[..4]),
            host: format!("h{}", hex(&m[4..9])),
            tag: tag(key, day, device),
            p2p_port,
            stream_port,
        }
    }

    /// The instance name: `label@host`.
    pub fn instance(&self) -> String {
        format!("{}@{}", self.label, self.host)
    }
}

/// The day number of a Unix time in milliseconds.
pub fn day(unix_ms: u64) -> u64 {
    unix_ms / 86_400_000
}

/// Where discovery reads the day from: the system clock, or a time set by hand (for
/// tests: a day passes without waiting one). Clones share the time set.
#[derive(Debug, Clone, Default)]
pub struct Calendar(Option<Arc<AtomicU64>>);

impl Calendar {
    /// A calendar that reads `unix_ms` until [`Calendar::set`] moves it.
    pub fn manual(unix_ms: u64) -> Self {
        Self(Some(Arc::new(AtomicU64::new(unix_ms))))
    }

    /// Moves a manual calendar (and its clones) to `unix_ms`; a system one ignores it.
    pub fn set(&self, unix_ms: u64) {
        if let Some(t) = &self.0 {
            t.store(unix_ms, Ordering::Relaxed);
        }
    }

    /// The day number now.
    pub fn today(&self) -> u64 {
        day(match &self.0 {
            Some(t) => t.load(Ordering::Relaxed),
            None => crate::device::wall_now().0,
        })
    }
}

/// An mDNS daemon on `interfaces` only (every interface when empty), IPv4 only.
fn daemon(interfaces: &[String]) -> Result<ServiceDaemon, Error> {
    // A name that is no interface here is a mistake to report, not a silence.
    for name in interfaces {
        let known = std::ffi::CString::new(name.as_str())
            // SAFETY: if_nametoindex reads a NUL-terminated string we own.
            .map(|c| unsafe { libc::if_nametoindex(c.as_ptr()) } != 0)
            .unwrap_or(false);
        if !known {
            return Err(Error(format!("no network interface is named {name:?}")));
        }
    }
    let daemon = ServiceDaemon::new().map_err(|e| Error(e.to_string()))?;
    let err = |e: mdns_sd::Error| Error(e.to_string());
    // Commands are handled in order: nothing is sent before the selection
    // applies.
    if !interfaces.is_empty() {
        daemon.disable_interface(IfKind::All).map_err(err)?;
        for name in interfaces {
            daemon
                .enable_interface(IfKind::Name(name.clone()))
                .map_err(err)?;
        }
    }
    daemon.disable_interface(IfKind::IPv6).map_err(err)?;
    Ok(daemon)
}

/// The IPv4 addresses an advertisement resolved to (IPv6 is not used, see above).
fn ipv4_of(info: &mdns_sd::ResolvedService) -> BTreeSet<IpAddr> {
    info.addresses
        .iter()
        .map(|a| a.to_ip_addr())
        .filter(IpAddr::is_ipv4)
        .collect()
}

/// Looks on mDNS for devices advertising an open invitation with `nameplate`
/// (`kith.invite`), for at most `wait`, and a second more once one is found (two
/// inviters may share a nameplate); returns their pairing listeners' addresses
/// (IPv4 and `kith.pair`), or none.
pub async fn find_invitation(
    interfaces: &[String],
    nameplate: &str,
    wait: std::time::Duration,
) -> Result<Vec<Multiaddr>, Error> {
    let daemon = daemon(interfaces)?;
    let events = daemon.browse(SERVICE).map_err(|e| Error(e.to_string()))?;
    let mut deadline = tokio::time::Instant::now() + wait;
    let mut found: Vec<Multiaddr> = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.recv_async()).await {
        let ServiceEvent::ServiceResolved(info) = event else {
            continue;
        };
        let txt = &info.txt_properties;
        let inviting = txt
            .get_property_val_str("kith.invite")
            .is_some_and(|list| list.split(',').any(|n| n == nameplate));
        let port = txt
            .get_property_val_str("kith.pair")
            .and_then(|p| p.parse::<u16>().ok());
        let (true, Some(port)) = (inviting, port) else {
            continue;
        };
        for ip in ipv4_of(&info) {
            let addr = Multiaddr::from(ip).with(libp2p::multiaddr::Protocol::Tcp(port));
            if !found.contains(&addr) && found.len() < 16 {
                if found.is_empty() {
                    deadline = deadline
                        .min(tokio::time::Instant::now() + std::time::Duration::from_secs(1));
                }
                found.push(addr);
            }
        }
    }
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_async().await;
    }
    Ok(found)
}

/// An advertisement of another kith device, seen by browsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The instance's full name.
    pub fullname: String,
    /// Its `kith.tag`.
    pub tag: String,
    /// Where its libp2p node listens (IPv4 addresses and `kith.p2p`).
    pub addrs: Vec<Multiaddr>,
}

/// What browsing tells of other kith advertisements.
#[derive(Debug, Clone)]
pub enum Event {
    /// An advertisement seen, new or changed.
    Seen(Seen),
    /// An advertisement withdrawn or expired, by its full name: the device left,
    /// or moved to another guise (then seen again under it).
    Gone(String),
}

/// What this device advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Instance label (before `@`).
    pub label: String,
    /// Host name of the SRV target and the address records (without `.local.`).
    pub host: String,
    /// XEP-0174 stream port (the SRV port).
    pub srv_port: u16,
    /// libp2p TCP port.
    pub p2p_port: u16,
    /// The rotating tag.
    pub tag: String,
    /// The pairing listener's TCP port and the nameplates of the open invitations
    /// (`kith.pair`, `kith.invite`), while there are any.
    pub pairing: Option<(u16, Vec<String>)>,
}

/// The running mDNS daemon.
pub struct Discovery {
    daemon: ServiceDaemon,
    fullname: Option<String>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Starts the daemon on `interfaces` (every interface when empty) and browses;
    /// advertisements of others arrive on the returned channel.
    pub fn start(interfaces: &[String]) -> Result<(Self, mpsc::Receiver<Event>), Error> {
        let daemon = daemon(interfaces)?;
        let err = |e: mdns_sd::Error| Error(e.to_string());
        let events = daemon.browse(SERVICE).map_err(err)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Ok(event) = events.recv_async().await {
                let info = match event {
                    ServiceEvent::ServiceResolved(info) => info,
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        if tx.send(Event::Gone(fullname)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    _ => continue,
                };
                let Some(tag) = info.txt_properties.get_property_val_str("kith.tag") else {
                    continue;
                };
                let Some(port) = info
                    .txt_properties
                    .get_property_val_str("kith.p2p")
                    .and_then(|p| p.parse::<u16>().ok())
                else {
                    continue;
                };
                let addrs = ipv4_of(&info)
                    .into_iter()
                    .map(|ip| Multiaddr::from(ip).with(libp2p::multiaddr::Protocol::Tcp(port)))
                    .collect();
                let seen = Seen {
                    fullname: info.fullname.clone(),
                    tag: tag.chars().take(64).collect(),
                    addrs,
                };
                if tx.send(Event::Seen(seen)).await.is_err() {
                    break;
                }
            }
        });
        Ok((
            Self {
                daemon,
                fullname: None,
            },
            rx,
        ))
    }

    /// This device's own instance name, once advertised.
    pub fn fullname(&self) -> Option<&str> {
        self.fullname.as_deref()
    }

    /// Advertises (or re-advertises with a new guise: the previous instance is
    /// withdrawn first, with an mDNS goodbye).
    pub fn advertise(&mut self, advert: &Advert) -> Result<(), Error> {
        let instance = format!("{}@{}", advert.label, advert.host);
        let srv = advert.srv_port.to_string();
        let p2p = advert.p2p_port.to_string();
        let ver = crate::xmpp::stanza::caps_ver();
        let pairing = advert
            .pairing
            .as_ref()
            .map(|(port, plates)| (port.to_string(), plates.join(",")));
        let mut txt: Vec<(&str, &str)> = vec![
            ("txtvers", "1"),
            ("status", "avail"),
            ("port.p2pj", &srv),
            ("hash", "sha-1"),
            ("node", crate::xmpp::stanza::CAPS_NODE),
            ("ver", &ver),
            ("kith.tag", &advert.tag),
            ("kith.p2p", &p2p),
        ];
        if let Some((port, plates)) = &pairing {
            txt.push(("kith.pair", port));
            txt.push(("kith.invite", plates));
        }
        let info = ServiceInfo::new(
            SERVICE,
            &instance,
            &format!("{}.local.", advert.host),
            "",
            advert.srv_port,
            &txt[..],
        )
        .map_err(|e| Error(e.to_string()))?
        .enable_addr_auto();
        let fullname = info.get_fullname().to_owned();
        if let Some(old) = self.fullname.take()
            && old != fullname
        {
            // The goodbye is sent by the daemon's own thread; no need to wait.
            let _ = self.daemon.unregister(&old);
        }
        self.fullname = Some(fullname);
        self.daemon.register(info).map_err(|e| Error(e.to_string()))
    }

    /// Withdraws the advertisement (an mDNS goodbye) and stops the daemon.
    pub fn stop(self) {
        if let Some(name) = &self.fullname
            && let Ok(done) = self.daemon.unregister(name)
        {
            let _ = done.recv_timeout(std::time::Duration::from_secs(1));
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(std::time::Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_change_with_day_device_and_key() {
        let d = DeviceId([1; 32]);
        let t = tag(b"secret", 20_000, &d);
        assert_eq!(t.len(), 16);
        assert_eq!(t, tag(b"secret", 20_000, &d));
        assert_ne!(t, tag(b"secret", 20_001, &d));
        assert_ne!(t, tag(b"other", 20_000, &d));
        assert_ne!(t, tag(b"secret", 20_000, &DeviceId([2; 32])));
    }

    /// Every value of one guise, as an observer would write them down.
    fn shown(g: &Guise) -> Vec<String> {
        vec![
            g.label.clone(),
            g.host.clone(),
            g.tag.clone(),
            g.instance(),
            g.p2p_port.to_string(),
            g.stream_port.to_string(),
        ]
    }

    #[test]
    fn a_guise_is_stable_for_a_day_and_shares_nothing_with_the_next_or_another_key() {
        let d = DeviceId([1; 32]);
        let today = Guise::of(b"secret", 20_000, &d);
        assert_eq!(today, Guise::of(b"secret", 20_000, &d));
        assert_eq!(today.tag, tag(b"secret", 20_000, &d));
        for other in [
            Guise::of(b"secret", 20_001, &d),
            Guise::of(b"rotated", 20_000, &d),
            Guise::of(b"secret", 20_000, &DeviceId([2; 32])),
        ] {
            for value in shown(&today) {
                assert!(
                    !shown(&other).contains(&value),
                    "{value} is shown by both {today:?} and {other:?}"
                );
            }
        }
    }

    #[test]
    fn guise_names_are_valid_dns_labels_and_ports_are_dynamic_and_distinct() {
        for n in 0..2_000u64 {
            let g = Guise::of(&n.to_be_bytes(), n, &DeviceId([n as u8; 32]));
            assert_eq!(g.label.len(), 8);
            assert!(g.host.len() == 11 && g.host.starts_with('h'));
            assert!(g.host.chars().all(|c| c.is_ascii_alphanumeric()));
            assert!(g.p2p_port >= FIRST_PORT && g.stream_port >= FIRST_PORT);
            assert_ne!(g.p2p_port, g.stream_port);
        }
    }
}
