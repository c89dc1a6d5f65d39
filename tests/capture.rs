//! What a passive observer of the LAN sees (issue 11): two devices in network
//! namespaces of their own, paired and syncing over a veth pair, with `tcpdump`
//! capturing everything on it. The capture must hold no account, name, group,
//! address, item id or device id in clear, and the frames the edits travel in must
//! look alike whatever the edit. Needs root and tcpdump (`.ci/run` installs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::netns::Net;
use crate::nodes::{DEADLINE, Device};

/// `tcpdump` writing everything on one interface of a namespace to a file; stopped
/// by pid on drop, also when the test fails.
struct Capture {
    child: Option<Child>,
    file: PathBuf,
    log: PathBuf,
}

impl Capture {
    fn start(ns: &str, interface: &str, dir: &Path) -> Self {
        let file = dir.join("capture.pcap");
        let log = dir.join("tcpdump.log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-i", interface, "-n", "-U"])
            .args(["-s", "0", "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("tcpdump log"))
            .spawn()
            .expect("tcpdump starts (apt-get install tcpdump)");
        let capture = Self {
            child: Some(child),
            file,
            log,
        };
        let start = Instant::now();
        while !std::fs::read_to_string(&capture.log)
            .unwrap_or_default()
            .contains("listening on")
        {
            assert!(
                start.elapsed() < DEADLINE,
                "tcpdump did not start: {}",
                std::fs::read_to_string(&capture.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        capture
    }

    /// Stops the capture (SIGTERM: tcpdump writes what it holds) and reads it.
    fn finish(&mut self) -> Vec<u8> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling a process this test started, by pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let _ = child.wait();
        }
        std::fs::read(&self.file).expect("the capture file")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One captured packet: when (µs since the epoch) and its Ethernet frame.
struct Packet {
    at_us: u64,
    data: Vec<u8>,
}

/// The packets of a pcap file (classic format, microseconds, little-endian, as
/// tcpdump writes it).
fn packets(pcap: &[u8]) -> Vec<Packet> {
    assert!(pcap.len() >= 24, "a pcap file");
    assert_eq!(
        &pcap[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian pcap, µs"
    );
    let u32_at = |i: usize| u32::from_le_bytes(pcap[i..i + 4].try_into().expect("4 bytes"));
    assert_eq!(u32_at(20), 1, "Ethernet frames");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let secs = u64::from(u32_at(at));
        let micros = u64::from(u32_at(at + 4));
        let len = u32_at(at + 8) as usize;
        let Some(data) = pcap.get(at + 16..at + 16 + len) else {
            break;
        };
        out.push(Packet {
            at_us: secs * 1_000_000 + micros,
            data: data.to_vec(),
        });
        at += 16 + len;
    }
    out
}

/// A TCP segment over IPv4: (source, destination) as `ip:port`, sequence number,
/// payload.
type Segment = ((String, String), u32, Vec<u8>, u64);

fn tcp(p: &Packet) -> Option<Segment> {
    let d = &p.data;
    if d.len() < 14 + 20 || d[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &d[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[9] != 6 || total > ip.len() || ihl + 20 > total {
        return None;
    }
    let addr = |b: &[u8]| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
    let t = &ip[ihl..total];
    let port = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let offset = usize::from(t[12] >> 4) * 4;
    let syn = t[13] & 0x02 != 0;
    let from = format!("{}:{}", addr(&ip[12..16]), port(0));
    let to = format!("{}:{}", addr(&ip[16..20]), port(2));
    // A SYN takes one sequence number: the data starts after it.
    let seq = if syn { seq.wrapping_add(1) } else { seq };
    Some(((from, to), seq, t.get(offset..)?.to_vec(), p.at_us))
}

/// Each direction of each TCP connection as one byte stream, with the time each
/// byte arrived.
fn streams(packets: &[Packet]) -> BTreeMap<(String, String), (Vec<u8>, Vec<u64>)> {
    let mut next: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut out: BTreeMap<(String, String), (Vec<u8>, Vec<u64>)> = BTreeMap::new();
    for p in packets {
        let Some((key, seq, payload, at)) = tcp(p) else {
            continue;
        };
        let expected = *next.entry(key.clone()).or_insert(seq);
        // Bytes already seen (a retransmission) are skipped; a gap ends what can be
        // followed of this direction.
        let skip = expected.wrapping_sub(seq) as usize;
        if seq != expected && skip > payload.len() {
            continue;
        }
        let fresh = &payload[skip.min(payload.len())..];
        let (bytes, times) = out.entry(key.clone()).or_default();
        bytes.extend_from_slice(fresh);
        times.extend(std::iter::repeat_n(at, fresh.len()));
        next.insert(key, expected.wrapping_add(fresh.len() as u32));
    }
    out
}

/// The Noise frames of a libp2p TCP stream: past multistream-select's
/// negotiation (varint-prefixed lines starting with `/`), 2-byte big-endian lengths.
/// Each as (when its first byte arrived, length).
fn noise_frames(bytes: &[u8], times: &[u64]) -> Vec<(u64, usize)> {
    let mut at = 0;
    loop {
        let Some(&len) = bytes.get(at) else {
            return Vec::new();
        };
        let len = usize::from(len);
        match bytes.get(at + 1..at + 1 + len) {
            Some(line) if len < 0x80 && line.first() == Some(&b'/') && line.ends_with(b"\n") => {
                at += 1 + len;
            }
            _ => break,
        }
    }
    let mut frames = Vec::new();
    while at + 2 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        frames.push((times[at], len));
        at += 2 + len;
    }
    frames
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn a_lan_observer_sees_no_identifier_and_edits_that_look_alike() {
    let Some(net) = Net::or_skip(4) else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut capture = Capture::start(&net.ns[0], &net.veth[0], tmp.path());
    let fixed = |i: usize| format!("/ip4/{}/tcp/{}", net.ip[i], 40_101 + i);
    let mut a = Device::new().with_prefix(&net.prefix(0));
    let mut b = Device::new().with_prefix(&net.prefix(1));
    a.ok(&[
        "init",
        "--jid",
        "romeo@montague.lit",
        "--name",
        "orchard-laptop",
    ]);
    a.start_with(&fixed(0), &["--mdns-interface", &net.veth[0]]);
    b.join(&a, "balcony-phone");
    b.start_with(&fixed(1), &["--mdns-interface", &net.veth[1]]);
    b.wait("the secrets", |b| {
        let s = b.status();
        s["waiting_for_secret"] == 0 && s["records"]["keys"].as_u64().unwrap_or(0) > 0
    });
    b.wait("a connection", |b| b.status()["connected_peers"] == 1);

    // The first contact and the first group fill their node up to its first bucket
    // of items (reserved ones): a bulk write, once per account.
    a.ok(&["contact", "add", "warm@up.lit"]);
    a.ok(&["group", "add", "Warmup"]);
    b.wait("the first writes", |b| {
        b.jids().len() == 1 && b.ok(&["group", "list"]).contains("Warmup")
    });
    std::thread::sleep(Duration::from_millis(1500));

    // One-item operations, each alone in a window of the capture.
    let mut windows: Vec<(&str, u64, u64)> = Vec::new();
    let mut step = |name: &'static str, args: &[&str], done: &dyn Fn(&Device) -> bool| {
        let start = now_us();
        a.ok(args);
        b.wait(name, |b| done(b));
        // Whatever the operation sets off (gossip, its acknowledgement) is over
        // well within a second on a veth pair.
        std::thread::sleep(Duration::from_millis(1500));
        windows.push((name, start, now_us()));
    };
    let named = |n: &'static str| move |b: &Device| b.list().iter().any(|(_, m, _)| m.contains(n));
    step(
        "add",
        &["contact", "add", "juliet@capulet.lit", "--name", "Juliet"],
        &named("Juliet"),
    );
    step(
        "rename",
        &["contact", "edit", "juliet@capulet.lit", "--name", "Jules"],
        &named("Jules"),
    );
    step(
        "contact's groups",
        &[
            "contact",
            "edit",
            "juliet@capulet.lit",
            "--add-group",
            "Warmup",
        ],
        &|b: &Device| b.list().iter().any(|(_, _, g)| g.contains("Warmup")),
    );
    step("group", &["group", "add", "Verona"], &|b: &Device| {
        b.ok(&["group", "list"]).contains("Verona")
    });
    step(
        "delete",
        &["contact", "rm", "juliet@capulet.lit"],
        &|b: &Device| b.jids().len() == 1,
    );
    let ids: Vec<String> = [&a, &b]
        .iter()
        .map(|d| d.status()["device"]["id"].as_str().expect("id").to_owned())
        .collect();
    let peer_ids: Vec<String> = [&a, &b]
        .iter()
        .map(|d| {
            d.status()["device"]["peer_id"]
                .as_str()
                .expect("a peer id")
                .to_owned()
        })
        .collect();
    a.stop();
    b.stop();
    let pcap = capture.finish();
    let packets = packets(&pcap);
    assert!(packets.len() > 50, "{} packets captured", packets.len());
    // mDNS (UDP 5353) is in it: the advertisements are looked at too.
    let mdns = packets
        .iter()
        .filter(|p| {
            let d = &p.data;
            d.len() > 14 + 28
                && d[12..14] == [0x08, 0x00]
                && d[14 + 9] == 17
                && d[14 + 22..14 + 24] == 5353u16.to_be_bytes()
        })
        .count();
    assert!(mdns > 0, "no mDNS packet captured");

    // Nothing that names the account, a contact, a group, a device or an item.
    let mut needles: Vec<(String, Vec<u8>)> = [
        "romeo@montague.lit",
        "montague",
        "juliet",
        "Juliet",
        "Jules",
        "capulet",
        "Verona",
        "orchard-laptop",
        "balcony-phone",
    ]
    .iter()
    .map(|s| ((*s).to_owned(), s.as_bytes().to_vec()))
    .collect();
    for p in &peer_ids {
        needles.push((format!("PeerId {p}"), p.as_bytes().to_vec()));
    }
    for id in &ids {
        needles.push((format!("device id {id}"), id.as_bytes().to_vec()));
        needles.push((format!("device id {id} (bytes)"), hex_bytes(id)));
    }
    for (what, needle) in &needles {
        let hit = packets
            .iter()
            .any(|p| p.data.windows(needle.len()).any(|w| w == needle.as_slice()));
        assert!(!hit, "the capture shows {what}");
    }

    // The frames of the libp2p connection between the two listen ports.
    let ports = [":40101", ":40102"];
    let mut frames: Vec<(u64, usize)> = Vec::new();
    for ((from, to), (bytes, times)) in streams(&packets) {
        if ports.iter().any(|p| from.ends_with(p)) || ports.iter().any(|p| to.ends_with(p)) {
            frames.extend(noise_frames(&bytes, &times));
        }
    }
    frames.sort_unstable();
    assert!(frames.len() > 20, "the connection's frames: {frames:?}");
    // Each one-item operation travels as the same frames (one gossip frame, padded).
    let in_window = |start: u64, end: u64| -> Vec<usize> {
        // Data frames only: the stream multiplexer's window updates and gossip's
        // control come and go with timing, not with the edit.
        let mut v: Vec<usize> = frames
            .iter()
            .filter(|(t, l)| (start..end).contains(t) && *l > 256)
            .map(|(_, l)| *l)
            .collect();
        v.sort_unstable();
        v
    };
    let (first, start, end) = windows[0];
    let reference = in_window(start, end);
    assert!(
        reference.iter().any(|l| *l > 2048),
        "{first} travelled as {reference:?}"
    );
    for (name, start, end) in &windows[1..] {
        assert_eq!(
            in_window(*start, *end),
            reference,
            "{name} does not look like {first}"
        );
    }
    // Every frame is either small (the stream multiplexer's and gossip's own
    // control; identify, whose list of protocols, relay and hole punching among
    // them, passes 256 bytes, once per connection) or a padded sync frame: a power
    // of two of at least 2 KiB plus the envelope (yamux, Noise's tag, gossip's
    // fields). Unpadded, an edit was 819 bytes and a deletion 682.
    for (_, len) in &frames {
        let padded = (11..=16).any(|k| (28..=28 + 192).contains(&len.wrapping_sub(1 << k)));
        assert!(
            *len <= 512 || padded || *len == 65_535,
            "a {len}-byte frame is neither control nor padded: {frames:?}"
        );
    }
}
