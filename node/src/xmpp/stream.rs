//! XEP-0174 XML stream framing, without I/O: bytes in, the stream header, whole
//! stanzas (parsed under [`STANZA_LIMITS`]), the closing tag, or a stream error out.
//!
//! Bounds: at most [`MAX_PENDING_BYTES`] of input that does not complete a stanza
//! (`policy-violation` past it), [`STANZA_LIMITS`] on each stanza's nesting and size
//! (`policy-violation`), and `not-well-formed` for anything that is not XML.

use kith_protocol::xml::{self, Element};
use quick_xml::events::Event;

/// Most unparsed bytes kept per stream: the largest stanza accepted.
pub const MAX_PENDING_BYTES: usize = 64 * 1024;
/// Deepest element nesting accepted in a stanza.
pub const MAX_STANZA_DEPTH: usize = 16;
/// Limits one stanza is parsed under.
pub const STANZA_LIMITS: xml::Limits = xml::Limits {
    max_bytes: MAX_PENDING_BYTES,
    max_depth: MAX_STANZA_DEPTH,
    max_elements: 2048,
};

/// Namespace of stream errors (RFC 6120 §4.9).
pub const STREAMS_NS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// A stream error condition (RFC 6120 §4.9.3); the stream ends after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// Not XML, or not a stream.
    NotWellFormed,
    /// A stanza over the size or nesting limits.
    PolicyViolation,
    /// The stream header names another instance.
    HostUnknown,
    /// The client fell too far behind on notifications.
    ResourceConstraint,
    /// The node is stopping.
    SystemShutdown,
}

impl StreamError {
    /// The condition's element name.
    pub fn condition(self) -> &'static str {
        match self {
            Self::NotWellFormed => "not-well-formed",
            Self::PolicyViolation => "policy-violation",
            Self::HostUnknown => "host-unknown",
            Self::ResourceConstraint => "resource-constraint",
            Self::SystemShutdown => "system-shutdown",
        }
    }

    /// `<stream:error/>` followed by the closing tag.
    pub fn to_xml(self) -> String {
        format!(
            "<stream:error><{} xmlns='{STREAMS_NS}'/></stream:error></stream:stream>",
            self.condition()
        )
    }
}

/// What the framer found next.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The initiator's stream header, with its `from` and `to`.
    Header {
        /// `from`, as sent.
        from: Option<String>,
        /// `to`, as sent.
        to: Option<String>,
    },
    /// One stanza.
    Stanza(Element),
    /// `</stream:stream>`: answer in kind and close.
    Close,
    /// The stream is broken: send this error and close.
    Error(StreamError),
}

/// Cuts a byte stream into [`Frame`]s.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    in_stream: bool,
    done: bool,
    /// How far the pending input has been read: each whole event is parsed once,
    /// however the input is cut (an event still arriving is scanned again).
    scan: Scan,
}

/// Where reading the pending input stopped.
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    /// Offset after the last whole event read.
    pos: usize,
    /// Element depth there.
    depth: usize,
    /// Where the stanza being read starts.
    start: Option<usize>,
}

/// What the parser found at the front of the pending input.
enum Piece {
    Incomplete,
    Malformed,
    TooDeep,
    Header(Option<String>, Option<String>, usize),
    Stanza(usize, usize),
    Close(usize),
    Skip(usize),
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    e.try_get_attribute(name).ok().flatten().and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.into_owned())
    })
}

/// Whether a parse error at `at` (error position) only says that the input ended
/// early: an unclosed construct, or a character cut in two at the end. A reference
/// or `<!` that may still be completed counts only near the end of the input.
fn ended_early(e: &quick_xml::Error, buf: &[u8], from: usize, at: usize) -> bool {
    use quick_xml::errors::{IllFormedError, SyntaxError as S};
    match e {
        quick_xml::Error::Syntax(
            S::UnclosedPI
            | S::UnclosedXmlDecl
            | S::UnclosedComment
            | S::UnclosedDoctype
            | S::UnclosedCData
            | S::UnclosedTag
            | S::UnclosedSingleQuotedAttributeValue
            | S::UnclosedDoubleQuotedAttributeValue,
        ) => true,
        quick_xml::Error::Syntax(S::InvalidBangMarkup)
        | quick_xml::Error::IllFormed(IllFormedError::UnclosedReference) => {
            buf.len().saturating_sub(at) < 64
        }
        quick_xml::Error::Encoding(_) => std::str::from_utf8(&buf[from..])
            .err()
            .is_some_and(|e| e.error_len().is_none()),
        _ => false,
    }
}

/// Reads on from `scan` (updated as whole events are read).
fn next_piece(buf: &[u8], in_stream: bool, scan: &mut Scan) -> Piece {
    let base = scan.pos;
    let mut reader = quick_xml::Reader::from_reader(&buf[base..]);
    let cfg = reader.config_mut();
    cfg.check_end_names = false;
    cfg.allow_unmatched_ends = true;
    loop {
        let before = base + reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                let at = base + reader.error_position() as usize;
                if ended_early(&e, buf, before, at) {
                    return Piece::Incomplete;
                }
                return Piece::Malformed;
            }
        };
        let end = base + reader.buffer_position() as usize;
        match event {
            Event::Eof => return Piece::Incomplete,
            Event::Start(e) if !in_stream && scan.depth == 0 => {
                if e.name().into_inner() != "stream:stream" {
                    return Piece::Malformed;
                }
                return Piece::Header(attr(&e, "from"), attr(&e, "to"), end);
            }
            Event::Start(_) => {
                scan.start.get_or_insert(before);
                scan.depth += 1;
                if scan.depth > MAX_STANZA_DEPTH {
                    return Piece::TooDeep;
                }
            }
            Event::Empty(_) if scan.depth == 0 && in_stream => return Piece::Stanza(before, end),
            Event::End(_) if scan.depth == 0 && in_stream => return Piece::Close(end),
            Event::Empty(_) | Event::End(_) if scan.depth == 0 => return Piece::Malformed,
            Event::End(_) => {
                scan.depth -= 1;
                if scan.depth == 0 {
                    return Piece::Stanza(scan.start.unwrap_or(0), end);
                }
            }
            // Between stanzas only whitespace (keepalives) may come.
            Event::Text(t) if scan.depth == 0 => {
                if !t.as_ref().bytes().all(|b| b.is_ascii_whitespace()) {
                    return Piece::Malformed;
                }
                return Piece::Skip(end);
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) if scan.depth == 0 => {
                return Piece::Skip(end);
            }
            Event::GeneralRef(_) | Event::CData(_) | Event::DocType(_) if scan.depth == 0 => {
                return Piece::Malformed;
            }
            _ => {}
        }
        // Inside a stanza every event read is whole (text cut by the end of the
        // input goes on in the next event): it is not read again.
        scan.pos = end;
    }
}

impl Framer {
    /// A framer before the stream header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the stream ended (closed or broken): nothing more is read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Takes more input; call [`Framer::next_frame`] until it gives `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.done {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        while !self.done {
            let piece = next_piece(&self.buf, self.in_stream, &mut self.scan);
            let (frame, used) = match piece {
                Piece::Incomplete => {
                    if self.buf.len() > MAX_PENDING_BYTES {
                        return Some(self.end(StreamError::PolicyViolation));
                    }
                    return None;
                }
                Piece::Malformed => return Some(self.end(StreamError::NotWellFormed)),
                Piece::TooDeep => return Some(self.end(StreamError::PolicyViolation)),
                Piece::Header(from, to, n) => {
                    self.in_stream = true;
                    (Some(Frame::Header { from, to }), n)
                }
                Piece::Stanza(start, end) => {
                    let text = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
                    match Element::parse(&text, STANZA_LIMITS) {
                        Ok(el) => (Some(Frame::Stanza(el)), end),
                        Err(
                            xml::Error::TooLarge { .. }
                            | xml::Error::TooDeep { .. }
                            | xml::Error::TooManyElements { .. },
                        ) => {
                            return Some(self.end(StreamError::PolicyViolation));
                        }
                        Err(_) => return Some(self.end(StreamError::NotWellFormed)),
                    }
                }
                Piece::Close(n) => {
                    self.done = true;
                    (Some(Frame::Close), n)
                }
                Piece::Skip(n) => (None, n),
            };
            self.buf.drain(..used);
            self.scan = Scan::default();
            if frame.is_some() {
                return frame;
            }
        }
        None
    }

    fn end(&mut self, e: StreamError) -> Frame {
        self.done = true;
        self.buf.clear();
        Frame::Error(e)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The responder's stream header, from `me` (the advertised instance) to `to`.
pub fn header(me: &str, to: Option<&str>) -> String {
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

    fn frames(input: &[u8]) -> Vec<Frame> {
        let mut f = Framer::new();
        f.push(input);
        std::iter::from_fn(|| f.next_frame()).collect()
    }

    #[test]
    fn a_stream_is_cut_into_header_stanzas_and_close() {
        let got = frames(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
              xmlns:stream='http://etherx.jabber.org/streams' from='a@b' to='kith-1@host'>\
              <iq type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq> \
              <presence/></stream:stream>",
        );
        assert_eq!(
            got[0],
            Frame::Header {
                from: Some("a@b".into()),
                to: Some("kith-1@host".into())
            }
        );
        assert!(matches!(&got[1], Frame::Stanza(e) if e.name == "iq"));
        assert!(matches!(&got[2], Frame::Stanza(e) if e.name == "presence"));
        assert_eq!(got[3], Frame::Close);
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn garbage_deep_nesting_and_floods_end_the_stream() {
        assert_eq!(
            frames(b"GET / HTTP/1.1\r\n\r\n<>"),
            vec![Frame::Error(StreamError::NotWellFormed)]
        );
        let mut deep = b"<stream:stream>".to_vec();
        deep.extend(std::iter::repeat_n(&b"<a>"[..], 40).flatten());
        assert_eq!(
            frames(&deep).last(),
            Some(&Frame::Error(StreamError::PolicyViolation))
        );
        for bad in [
            "<stream:stream><![CDATA[x]]>".to_owned(),
            "<stream:stream>&amp;".to_owned(),
            format!(
                "<stream:stream><message>&x<body/>{}</message>",
                " ".repeat(100)
            ),
        ] {
            assert_eq!(
                frames(bad.as_bytes()).last(),
                Some(&Frame::Error(StreamError::NotWellFormed)),
                "{bad}"
            );
        }
        let mut big = b"<stream:stream><message><body>".to_vec();
        big.resize(MAX_PENDING_BYTES + 100, b'x');
        assert_eq!(
            frames(&big).last(),
            Some(&Frame::Error(StreamError::PolicyViolation))
        );
    }

    #[test]
    fn the_same_frames_whatever_the_cuts() {
        let input = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
              xmlns:stream='http://etherx.jabber.org/streams'> <!-- a > b -->\
              <iq type='get' id='1' a='x&gt;y'><query xmlns='urn:x'><![CDATA[ > ]]>t&gt;ext</query></iq>\
              <presence/><message><body>&lt;&gt; Jüliet 💌 тест</body></message></stream:stream>"
            .as_bytes();
        let whole = frames(input);
        assert_eq!(whole.len(), 5, "{whole:?}");
        let mut f = Framer::new();
        let mut cut = Vec::new();
        for (i, b) in input.iter().enumerate() {
            f.push(std::slice::from_ref(b));
            cut.extend(std::iter::from_fn(|| f.next_frame()));
            assert!(
                !cut.contains(&Frame::Error(StreamError::NotWellFormed)),
                "after {:?}",
                String::from_utf8_lossy(&input[..=i])
            );
        }
        assert_eq!(cut, whole);
    }

    proptest::proptest! {
        /// Any bytes, in any two chunks: no panic, and nothing after the end.
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), cut in 0usize..512) {
            let mut f = Framer::new();
            let at = cut.min(bytes.len());
            for chunk in [&bytes[..at], &bytes[at..]] {
                f.push(chunk);
                while let Some(frame) = f.next_frame() {
                    if matches!(frame, Frame::Close | Frame::Error(_)) {
                        proptest::prop_assert!(f.is_done());
                    }
                }
            }
        }
    }
}
