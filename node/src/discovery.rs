//! XEP-0174 link-local discovery with mdns-sd: this device's `_presence._tcp`
//! advertisement, and browsing for the advertisements of its own devices.
//!
//! * Instance `<label>@<machine>`: the label is random per device, never the JID.
//! * TXT: `txtvers=1` first, `status=avail`, `port.p2pj` equal to the SRV port (the
//!   XEP-0174 XML stream port), then kith's keys: `kith.tag` (the rotating device
//!   tag) and `kith.p2p` (the libp2p TCP port); XEP-0115 `hash`, `node` and `ver`
//!   of the stream port's disco#info (XEP-0174 §6.2). `1st`, `last`, `jid` are
//!   never published.
//! * The tag is 16 hex digits of HMAC-SHA-256 keyed with a roster secret, over the
//!   day number (UTC) and the device id. Own devices recognise it by trying the
//!   secrets they hold for each roster device, for yesterday, today and tomorrow;
//!   to anyone else it is a random value that changes every day and with every
//!   rotation of the secrets.
//! * Only the interfaces asked for are used (all of them when none is named). IPv6
//!   is not used: link-local IPv6 addresses need a scope id that TCP multiaddrs
//!   cannot carry portably, and every LAN this serves has IPv4; resolved IPv6
//!   addresses are ignored on purpose.

use std::collections::BTreeSet;
use std::net::IpAddr;

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
    // Invariant: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"kith mdns tag\0");
    mac.update(&day.to_be_bytes());
    mac.update(&device.0);
    let d = mac.finalize().into_bytes();
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The day number of a Unix time in milliseconds.
pub fn day(unix_ms: u64) -> u64 {
    unix_ms / 86_400_000
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

/// What this device advertises.
#[derive(Debug, Clone)]
pub struct Advert {
    /// Instance label (before `@`).
    pub label: String,
    /// XEP-0174 stream port (the SRV port).
    pub srv_port: u16,
    /// libp2p TCP port.
    pub p2p_port: u16,
    /// The rotating tag.
    pub tag: String,
}

/// The running mDNS daemon.
pub struct Discovery {
    daemon: ServiceDaemon,
    fullname: Option<String>,
    machine: String,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

pub(crate) fn machine_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    // The machine part must be US-ASCII (XEP-0174 §3).
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(63)
        .collect();
    if clean.is_empty() {
        "kith".into()
    } else {
        clean
    }
}

impl Discovery {
    /// Starts the daemon on `interfaces` (every interface when empty) and browses;
    /// advertisements of others arrive on the returned channel.
    pub fn start(interfaces: &[String]) -> Result<(Self, mpsc::Receiver<Seen>), Error> {
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
        let events = daemon.browse(SERVICE).map_err(err)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Ok(event) = events.recv_async().await {
                let ServiceEvent::ServiceResolved(info) = event else {
                    continue;
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
                let ips: BTreeSet<IpAddr> = info
                    .addresses
                    .iter()
                    .map(|a| a.to_ip_addr())
                    .filter(IpAddr::is_ipv4)
                    .collect();
                let addrs = ips
                    .into_iter()
                    .map(|ip| Multiaddr::from(ip).with(libp2p::multiaddr::Protocol::Tcp(port)))
                    .collect();
                let seen = Seen {
                    fullname: info.fullname.clone(),
                    tag: tag.chars().take(64).collect(),
                    addrs,
                };
                if tx.send(seen).await.is_err() {
                    break;
                }
            }
        });
        Ok((
            Self {
                daemon,
                fullname: None,
                machine: machine_name(),
            },
            rx,
        ))
    }

    /// This device's own instance name, once advertised.
    pub fn fullname(&self) -> Option<&str> {
        self.fullname.as_deref()
    }

    /// Advertises (or re-advertises with a new tag).
    pub fn advertise(&mut self, advert: &Advert) -> Result<(), Error> {
        let instance = format!("{}@{}", advert.label, self.machine);
        let srv = advert.srv_port.to_string();
        let p2p = advert.p2p_port.to_string();
        let ver = crate::xmpp::stanza::caps_ver();
        let txt: Vec<(&str, &str)> = vec![
            ("txtvers", "1"),
            ("status", "avail"),
            ("port.p2pj", &srv),
            ("hash", "sha-1"),
            ("node", crate::xmpp::stanza::CAPS_NODE),
            ("ver", &ver),
            ("kith.tag", &advert.tag),
            ("kith.p2p", &p2p),
        ];
        let info = ServiceInfo::new(
            SERVICE,
            &instance,
            &format!("{}.local.", self.machine),
            "",
            advert.srv_port,
            &txt[..],
        )
        .map_err(|e| Error(e.to_string()))?
        .enable_addr_auto();
        self.fullname = Some(info.get_fullname().to_owned());
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
}
