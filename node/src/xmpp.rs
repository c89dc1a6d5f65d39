//! The XEP-0174 XML stream server on the advertised SRV port.
//!
//! A link-local XMPP client that finds this device's `_presence._tcp` advertisement
//! can open a stream to it. The node answers the stream header with its own and
//! `<stream:features/>` carrying its disco#info (XEP-0174 §5's recommended
//! shortcut), answers `disco#info` queries, and answers every other stanza with
//! `service-unavailable`: the contact list itself travels only over libp2p to roster
//! devices, never over this unauthenticated, unencrypted stream. `</stream:stream>`
//! is answered in kind and the connection closed.
//!
//! Limits: [`MAX_CONNECTIONS`] streams from the network and [`MAX_LOCAL_CONNECTIONS`]
//! from this machine, at most [`MAX_PER_ADDRESS`] from one address, a newcomer at a
//! cap taking the place of the oldest stream from the busiest address (see
//! [`crate::admission`]); [`MAX_PENDING_BYTES`] of unparsed input, [`IDLE_SECS`]
//! without input, [`WRITE_SECS`] for any write to complete (a client that does not
//! read is dropped), [`MAX_STREAM_SECS`] for a whole stream, [`MAX_STANZA_DEPTH`]
//! nesting.

use std::time::Duration;

use kith_protocol::xml::{self, Element};
use quick_xml::events::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::admission::{Admission, Limits};

/// Most streams from other machines served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Most streams from this machine (loopback) served at once.
pub const MAX_LOCAL_CONNECTIONS: usize = 16;
/// Most streams from one network address.
pub const MAX_PER_ADDRESS: usize = 4;
/// Seconds a write may take (the client must read).
pub const WRITE_SECS: u64 = 10;
/// Seconds a stream may last in all.
pub const MAX_STREAM_SECS: u64 = 3600;
/// Most unparsed bytes kept per stream.
pub const MAX_PENDING_BYTES: usize = 64 * 1024;
/// Seconds a stream may stay silent.
pub const IDLE_SECS: u64 = 60;
/// Deepest element nesting accepted.
pub const MAX_STANZA_DEPTH: usize = 32;

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// The features in disco#info: XEP-0510's node, OX for pubsub, and the XEP-0060
/// features of the nodes kith replicates.
pub const FEATURES: &[&str] = &[
    DISCO_INFO,
    "urn:xmpp:contacts:0",
    "urn:xmpp:openpgp:pubsub:0",
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#multi-items",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#retract-items",
];

/// The disco#info `<query/>`.
pub fn disco_info() -> Element {
    let mut q = Element::new(DISCO_INFO, "query");
    let mut identity = Element::new(DISCO_INFO, "identity");
    identity.set_attr("category", "pubsub");
    identity.set_attr("type", "pep");
    identity.set_attr("name", "kith");
    q.push(identity);
    for f in FEATURES {
        let mut feature = Element::new(DISCO_INFO, "feature");
        feature.set_attr("var", *f);
        q.push(feature);
    }
    q
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// Serves streams on `listener` as `instance` (`label@machine`) until the task is
/// dropped.
pub async fn serve(listener: TcpListener, instance: String) {
    let network = Admission::new(Limits {
        total: MAX_CONNECTIONS,
        per_key: MAX_PER_ADDRESS,
    });
    let local = Admission::new(Limits {
        total: MAX_LOCAL_CONNECTIONS,
        per_key: MAX_LOCAL_CONNECTIONS,
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                // Out of file descriptors, say: let the others finish first.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = peer.ip();
        let pool = if ip.is_loopback() { &local } else { &network };
        let Some(mut ticket) = pool.admit(ip) else {
            drop(stream);
            continue;
        };
        let instance = instance.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = handle(stream, &instance) => {}
                _ = &mut ticket.evicted => {}
                _ = tokio::time::sleep(Duration::from_secs(MAX_STREAM_SECS)) => {}
            }
            drop(ticket);
        });
    }
}

/// Writes all of `bytes` within [`WRITE_SECS`].
async fn send(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(Duration::from_secs(WRITE_SECS), stream.write_all(bytes))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// What the parser found at the front of the pending input.
enum Piece {
    /// More input is needed.
    Incomplete,
    /// Not XML.
    Malformed,
    /// The stream header (`from`), and its length.
    Header(Option<String>, usize),
    /// A complete stanza's text and length.
    Stanza(String, usize),
    /// `</stream:stream>`, and its length.
    Close(usize),
    /// Whitespace or a declaration, and its length.
    Skip(usize),
}

fn next_piece(buf: &[u8], in_stream: bool) -> Piece {
    let mut reader = quick_xml::Reader::from_reader(buf);
    let cfg = reader.config_mut();
    cfg.check_end_names = false;
    cfg.allow_unmatched_ends = true;
    let mut depth = 0usize;
    let mut start = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(_) if buf.last() != Some(&b'>') => return Piece::Incomplete,
            Err(_) => return Piece::Malformed,
        };
        let end = reader.buffer_position() as usize;
        match event {
            Event::Eof => return Piece::Incomplete,
            Event::Start(e) if !in_stream && depth == 0 => {
                if e.name().into_inner() != "stream:stream" {
                    return Piece::Malformed;
                }
                let from = e
                    .try_get_attribute("from")
                    .ok()
                    .flatten()
                    .map(|a| a.value.into_owned());
                return Piece::Header(from, end);
            }
            Event::Start(_) => {
                start.get_or_insert(before);
                depth += 1;
                if depth > MAX_STANZA_DEPTH {
                    return Piece::Malformed;
                }
            }
            Event::Empty(_) if depth == 0 => {
                return Piece::Stanza(String::from_utf8_lossy(&buf[before..end]).into(), end);
            }
            Event::End(_) if depth == 0 => return Piece::Close(end),
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    let s = start.unwrap_or(0);
                    return Piece::Stanza(String::from_utf8_lossy(&buf[s..end]).into(), end);
                }
            }
            Event::Text(_) | Event::Decl(_) | Event::Comment(_) | Event::PI(_) if depth == 0 => {
                return Piece::Skip(end);
            }
            _ => {}
        }
    }
}

/// The answer to one stanza, if any.
fn answer(stanza: &str, me: &str) -> Option<String> {
    let el = Element::parse(stanza, xml::Limits::ITEM).ok()?;
    let kind = el.attr("type").unwrap_or("");
    let id = el.attr("id").unwrap_or("").to_owned();
    let from = el.attr("from").map(str::to_owned);
    let mut reply = Element::new("", el.name.as_ref());
    if !id.is_empty() {
        reply.set_attr("id", id);
    }
    reply.set_attr("from", me);
    if let Some(from) = from {
        reply.set_attr("to", from);
    }
    match (el.name.as_ref(), kind) {
        ("iq", "get")
            if el
                .elements()
                .any(|c| c.ns.as_ref() == DISCO_INFO && c.name.as_ref() == "query") =>
        {
            reply.set_attr("type", "result");
            reply.push(disco_info());
        }
        ("iq", "get" | "set") | ("message", "" | "normal" | "chat" | "headline") => {
            reply.set_attr("type", "error");
            let mut error = Element::new("", "error");
            error.set_attr("type", "cancel");
            error.push(Element::new(STANZAS, "service-unavailable"));
            reply.push(error);
        }
        _ => return None,
    }
    Some(reply.to_xml())
}

/// One stream's parser and answers, without I/O: bytes in, what to write out.
#[derive(Debug)]
pub struct Session {
    me: String,
    buf: Vec<u8>,
    in_stream: bool,
    done: bool,
}

impl Session {
    /// A stream to `me` (`label@machine`), before its header.
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_owned(),
            buf: Vec::new(),
            in_stream: false,
            done: false,
        }
    }

    /// Whether the stream is over (closed, or ended by a stream error): nothing more
    /// is read from it.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Takes `bytes` and returns what to write, in order (empty when more input is
    /// needed). Once [`Session::is_done`], the connection is to be closed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            match next_piece(&self.buf, self.in_stream) {
                Piece::Incomplete => {
                    if self.buf.len() > MAX_PENDING_BYTES {
                        out.push(format!(
                            "<stream:error><policy-violation xmlns='{STREAMS}'/></stream:error></stream:stream>"
                        ));
                        self.done = true;
                    }
                    return out;
                }
                Piece::Malformed => {
                    let head = if self.in_stream {
                        String::new()
                    } else {
                        stream_header(&self.me, None)
                    };
                    out.push(format!(
                        "{head}<stream:error><not-well-formed xmlns='{STREAMS}'/></stream:error></stream:stream>"
                    ));
                    self.done = true;
                    return out;
                }
                Piece::Header(from, n) => {
                    self.buf.drain(..n);
                    self.in_stream = true;
                    let features = format!(
                        "<stream:features>{}</stream:features>",
                        disco_info().to_xml()
                    );
                    out.push(format!(
                        "{}{features}",
                        stream_header(&self.me, from.as_deref())
                    ));
                }
                Piece::Stanza(text, n) => {
                    self.buf.drain(..n);
                    if let Some(reply) = answer(&text, &self.me) {
                        out.push(reply);
                    }
                }
                Piece::Close(n) => {
                    self.buf.drain(..n);
                    out.push("</stream:stream>".to_owned());
                    self.done = true;
                    return out;
                }
                Piece::Skip(n) => {
                    self.buf.drain(..n);
                }
            }
        }
    }
}

async fn handle(mut stream: TcpStream, me: &str) -> std::io::Result<()> {
    let mut session = Session::new(me);
    let mut chunk = [0u8; 4096];
    while !session.is_done() {
        let n = tokio::time::timeout(Duration::from_secs(IDLE_SECS), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Ok(());
        }
        for line in session.feed(&chunk[..n]) {
            send(&mut stream, line.as_bytes()).await?;
        }
    }
    stream.shutdown().await
}

fn stream_header(me: &str, to: Option<&str>) -> String {
    let to = to
        .map(|t| format!(" to='{}'", escape(t)))
        .unwrap_or_default();
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' from='{}'{to} version='1.0'>",
        escape(me)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exchange(input: &[u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, "kith-1@host".into()));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(input).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        server.abort();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn a_stream_gets_features_disco_and_errors_then_closes() {
        let out = exchange(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
              xmlns:stream='http://etherx.jabber.org/streams' from='a@b' to='kith-1@host' version='1.0'>\
              <iq type='get' id='d1' from='a@b'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>\
              <iq type='get' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:contacts'/></pubsub></iq>\
              </stream:stream>",
        )
        .await;
        assert!(out.contains("to='a@b'"), "{out}");
        assert!(out.contains("<stream:features>"), "{out}");
        assert!(
            out.contains("category=\"pubsub\"") || out.contains("category='pubsub'"),
            "{out}"
        );
        assert!(out.contains("urn:xmpp:contacts:0") && out.contains("urn:xmpp:openpgp:pubsub:0"));
        assert!(
            out.contains("id=\"d1\"") || out.contains("id='d1'"),
            "{out}"
        );
        assert!(out.contains("service-unavailable"), "{out}");
        assert!(out.ends_with("</stream:stream>"), "{out}");
    }

    #[tokio::test]
    async fn garbage_gets_a_stream_error() {
        let out = exchange(b"GET / HTTP/1.1\r\n\r\n<>").await;
        assert!(out.contains("not-well-formed"), "{out}");
    }

    proptest::proptest! {
        /// Any bytes, in or out of a stream: no panic, and a stanza is answered only
        /// with a well-formed reply.
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), in_stream in proptest::bool::ANY) {
            if let Piece::Stanza(text, n) = next_piece(&bytes, in_stream) {
                proptest::prop_assert!(n <= bytes.len());
                if let Some(reply) = answer(&text, "me@host") {
                    proptest::prop_assert!(Element::parse(&reply, xml::Limits::ITEM).is_ok());
                }
            }
        }
    }
}
