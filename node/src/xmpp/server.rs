//! The stream listener and one task per stream.
//!
//! Limits: [`MAX_CONNECTIONS`] streams from the network and [`MAX_LOCAL_CONNECTIONS`]
//! from this machine, at most [`MAX_PER_ADDRESS`] from one address, a newcomer at a
//! cap taking the place of the oldest stream from the busiest address (see
//! [`crate::admission`]); the framing limits of [`super::stream`]; [`IDLE_SECS`]
//! without input, [`WRITE_SECS`] for any write to complete (a client that does not
//! read is dropped), [`MAX_STREAM_SECS`] for a whole stream; a stream that falls
//! [`super::NOTICE_QUEUE`] notifications behind is closed with
//! `resource-constraint` (it reconnects and retrieves the items again).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kith_protocol::item::NodeKind;
use kith_protocol::xml::Element;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::peer::Peer;
use super::stanza::{self, Incoming, Query, Refusal};
use super::stream::{self, Frame, Framer, StreamError};
use super::{Call, Context, Notice};
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
pub const MAX_STREAM_SECS: u64 = 24 * 3600;
/// Seconds a stream may stay silent (a client keeps it open with whitespace).
pub const IDLE_SECS: u64 = 300;
/// Seconds the node's task may take to answer one request.
const CALL_SECS: u64 = 60;

/// Serves streams on `listener`, and on each listener `moves` brings in its place
/// (streams already open stay), until the task is dropped.
pub async fn serve(
    mut listener: TcpListener,
    mut moves: mpsc::Receiver<TcpListener>,
    ctx: Context,
) {
    let ctx = Arc::new(ctx);
    let network = Admission::new(Limits {
        total: MAX_CONNECTIONS,
        per_key: MAX_PER_ADDRESS,
    });
    let local = Admission::new(Limits {
        total: MAX_LOCAL_CONNECTIONS,
        per_key: MAX_LOCAL_CONNECTIONS,
    });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(next) = moves.recv() => {
                listener = next;
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(_) => {
                // Out of file descriptors, say: let the others finish first.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(here) = stream.local_addr() else {
            continue;
        };
        // The local pool is for this machine's addresses; whose process it is is
        // read in the stream's own task (a file read), and another user's streams
        // go to the network pool there, so they cannot crowd out the owner's.
        let is_here = Peer::is_here(peer, here);
        let pool = if is_here { &local } else { &network };
        let Some(mut ticket) = pool.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        let network = network.clone();
        tokio::spawn(async move {
            let who = if is_here {
                tokio::task::spawn_blocking(move || Peer::of(peer, here))
                    .await
                    .unwrap_or(Peer::OtherUser)
            } else {
                Peer::Network
            };
            if who == Peer::OtherUser {
                match network.admit(peer.ip()) {
                    Some(t) => ticket = t,
                    None => return,
                }
            }
            tokio::select! {
                _ = handle(stream, who, &ctx) => {}
                _ = &mut ticket.evicted => {}
                _ = tokio::time::sleep(Duration::from_secs(MAX_STREAM_SECS)) => {}
            }
            drop(ticket);
        });
    }
}

/// Writes all of `text` within [`WRITE_SECS`].
async fn send<W: AsyncWrite + Unpin>(w: &mut W, text: &str) -> std::io::Result<()> {
    tokio::time::timeout(
        Duration::from_secs(WRITE_SECS),
        w.write_all(text.as_bytes()),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Asks the node's task; `internal-server-error` if it does not answer in time (a
/// write may then still land: the client retrieves to know).
async fn ask(ctx: &Context, query: Query) -> Result<Option<Element>, Refusal> {
    let (tx, rx) = oneshot::channel();
    let gone = || Refusal::internal().with_text("the node is stopping");
    ctx.calls
        .send(Call { query, reply: tx })
        .await
        .map_err(|_| gone())?;
    match tokio::time::timeout(Duration::from_secs(CALL_SECS), rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(Refusal::internal()
            .with_text("the node did not answer in time; retrieve the item to know its state")),
    }
}

/// One stream's state.
struct Conn<'a> {
    ctx: &'a Context,
    /// Who is at the other end.
    who: Peer,
    /// Whether pubsub is served to this peer.
    allowed: bool,
    /// The client's address (the stream's `from`).
    client: Option<String>,
    /// Nodes subscribed to explicitly on this stream.
    subscribed: BTreeSet<NodeKind>,
    /// Nodes whose `+notify` the client's caps list.
    notify: BTreeSet<NodeKind>,
    /// Notifications, from the moment the stream first wants some.
    notices: Option<broadcast::Receiver<Arc<Notice>>>,
    /// The client's caps, as last announced.
    caps: Option<stanza::Caps>,
    /// The id of the caps query in flight.
    caps_query: Option<String>,
    next_id: u64,
}

impl Conn<'_> {
    /// Starts listening for notifications once the stream wants any.
    fn follow(&mut self) {
        // From the caps presence on: changes made while its caps are asked about
        // are kept too.
        let wants =
            !self.subscribed.is_empty() || !self.notify.is_empty() || self.caps_query.is_some();
        if wants && self.notices.is_none() {
            self.notices = Some(self.ctx.notices.subscribe());
        }
    }

    /// The answers to one stanza.
    async fn on_stanza(&mut self, el: &Element) -> Vec<Element> {
        let instance = self.ctx.instance();
        let me = el.attr("to").unwrap_or(&instance).to_owned();
        let to = el
            .attr("from")
            .map(str::to_owned)
            .or_else(|| self.client.clone());
        let to = to.as_deref();
        let out = match stanza::read(el) {
            Incoming::Iq { id, query } => {
                let reply = match query {
                    Err(r) => Err(r),
                    Ok(q) => self.query(q).await,
                };
                vec![match reply {
                    Ok(payload) => stanza::result(&id, &me, to, payload),
                    Err(r) => stanza::error("iq", Some(&id), &me, to, &r),
                }]
            }
            Incoming::Response { id, features } => {
                if self.caps_query.as_deref() == Some(id.as_str()) {
                    self.caps_query = None;
                    self.notify = NodeKind::ALL
                        .into_iter()
                        .filter(|n| features.contains(&format!("{}+notify", n.node_name())))
                        .collect();
                }
                Vec::new()
            }
            Incoming::Presence(caps) => match caps {
                // The same caps again: what they mean is known already.
                Some(caps) if self.caps.as_ref() == Some(&caps) => Vec::new(),
                Some(caps) if self.allowed => {
                    self.caps = Some(caps.clone());
                    self.next_id += 1;
                    let id = format!("kith-caps-{}", self.next_id);
                    self.caps_query = Some(id.clone());
                    vec![stanza::caps_query(&id, &me, to, &caps)]
                }
                Some(_) => Vec::new(),
                None => {
                    self.caps = None;
                    self.notify.clear();
                    Vec::new()
                }
            },
            Incoming::Message => vec![stanza::error(
                "message",
                el.attr("id"),
                &me,
                to,
                &Refusal::service_unavailable(),
            )],
            Incoming::Ignored => Vec::new(),
        };
        self.follow();
        out
    }

    async fn query(&mut self, q: Query) -> Result<Option<Element>, Refusal> {
        match q {
            Query::DiscoInfo { node } => stanza::disco_info(node.as_deref()).map(Some),
            Query::DiscoItems { node } => {
                stanza::disco_items(node.as_deref(), &self.ctx.instance()).map(Some)
            }
            _ if !self.allowed => Err(Refusal::forbidden().with_text(match self.who {
                Peer::OtherUser => {
                    "pubsub is served to the node's own user on this machine \
                     (kith run --xmpp-lan serves everyone)"
                }
                _ => "pubsub is served to this machine only (kith run --xmpp-lan serves the LAN)",
            })),
            Query::Subscribe { node, jid } => {
                self.subscribed.insert(node);
                Ok(Some(stanza::subscription(node, &jid, true)))
            }
            Query::Unsubscribe { node, jid } => {
                self.subscribed.remove(&node);
                Ok(Some(stanza::subscription(node, &jid, false)))
            }
            Query::Publish { ref options, .. } => {
                stanza::check_options(options)?;
                ask(self.ctx, q).await
            }
            Query::Retract { .. } if self.who != Peer::Owner => Err(Refusal::forbidden()
                .with_text(
                    "retract is served to the node's own user on this machine; \
                     publish a sealed <reserved/> item to delete instead",
                )),
            q => ask(self.ctx, q).await,
        }
    }

    /// The message a notice makes for this stream, if it wants it.
    fn on_notice(&self, n: &Notice) -> Option<Element> {
        let wanted = self.subscribed.contains(&n.node) || self.notify.contains(&n.node);
        wanted.then(|| {
            stanza::event(
                &self.ctx.account,
                self.client.as_deref(),
                n.node,
                &n.id,
                n.sealed.as_ref(),
            )
        })
    }

    fn secrets_message(&self, openpgp: &Element) -> Element {
        let mut m = Element::new("", "message").with_attr("from", self.ctx.account.clone());
        if let Some(c) = &self.client {
            m.set_attr("to", c.clone());
        }
        m.push(openpgp.clone());
        m.push(Element::new(stanza::HINTS_NS, "store"));
        m
    }
}

/// The next notification, or never when the stream follows none.
async fn next_notice(
    rx: &mut Option<broadcast::Receiver<Arc<Notice>>>,
) -> Result<Arc<Notice>, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Serves one stream from `who` until it ends.
async fn handle<S: AsyncRead + AsyncWrite>(
    stream: S,
    who: Peer,
    ctx: &Context,
) -> std::io::Result<()> {
    let allowed = who == Peer::Owner || ctx.lan;
    let mut secrets = ctx.secrets.clone();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = Framer::new();
    let mut conn = Conn {
        ctx,
        who,
        allowed,
        client: None,
        subscribed: BTreeSet::new(),
        notify: BTreeSet::new(),
        notices: None,
        caps: None,
        caps_query: None,
        next_id: 0,
    };
    let mut open = false;
    let mut chunk = vec![0u8; 8192];
    let idle = Duration::from_secs(IDLE_SECS);
    let mut deadline = tokio::time::Instant::now() + idle;
    loop {
        tokio::select! {
            read = rd.read(&mut chunk) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                deadline = tokio::time::Instant::now() + idle;
                framer.push(&chunk[..n]);
                while let Some(frame) = framer.next_frame() {
                    match frame {
                        Frame::Header { from, to } => {
                            if open {
                                send(&mut wr, &StreamError::NotWellFormed.to_xml()).await?;
                                return wr.shutdown().await;
                            }
                            open = true;
                            let instance = ctx.instance();
                            let head = stream::header(&instance, from.as_deref());
                            if to.as_deref().is_some_and(|t| !ctx.answers_to(t)) {
                                send(&mut wr, &format!("{head}{}", StreamError::HostUnknown.to_xml())).await?;
                                return wr.shutdown().await;
                            }
                            conn.client = from;
                            let mut features = Element::new("", "stream:features");
                            let mut info = stanza::service_info();
                            info.set_attr("node", stanza::caps_node());
                            features.push(info);
                            send(&mut wr, &format!("{head}{}", features.to_xml())).await?;
                            if allowed {
                                let current = secrets.borrow_and_update().clone();
                                if let Some(openpgp) = current {
                                    send(&mut wr, &conn.secrets_message(&openpgp).to_xml()).await?;
                                }
                            }
                        }
                        Frame::Stanza(el) => {
                            for out in conn.on_stanza(&el).await {
                                send(&mut wr, &out.to_xml()).await?;
                            }
                        }
                        Frame::Close => {
                            send(&mut wr, "</stream:stream>").await?;
                            return wr.shutdown().await;
                        }
                        Frame::Error(e) => {
                            let head = if open { String::new() } else { stream::header(&ctx.instance(), None) };
                            send(&mut wr, &format!("{head}{}", e.to_xml())).await?;
                            return wr.shutdown().await;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
            }
            changed = secrets.changed(), if open && allowed => {
                if changed.is_err() {
                    send(&mut wr, &StreamError::SystemShutdown.to_xml()).await?;
                    return wr.shutdown().await;
                }
                let current = secrets.borrow_and_update().clone();
                if let Some(openpgp) = current {
                    send(&mut wr, &conn.secrets_message(&openpgp).to_xml()).await?;
                }
            }
            notice = next_notice(&mut conn.notices) => match notice {
                Ok(n) => {
                    if let Some(el) = conn.on_notice(&n) {
                        send(&mut wr, &el.to_xml()).await?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    send(&mut wr, &StreamError::ResourceConstraint.to_xml()).await?;
                    return wr.shutdown().await;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    send(&mut wr, &StreamError::SystemShutdown.to_xml()).await?;
                    return wr.shutdown().await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;
    use tokio::sync::mpsc;

    const HEADER: &str = "<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' from='c@client' to='kith-1@host' version='1.0'>";

    /// A stream from `peer` to a service whose node answers every query with an
    /// empty result; returns the client's end.
    fn stream_from(who: Peer, lan: bool) -> DuplexStream {
        let (calls, mut rx) = mpsc::channel::<Call>(4);
        let (notices, _) = broadcast::channel(4);
        let (_secrets_tx, secrets) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            let _keep = _secrets_tx;
            while let Some(call) = rx.recv().await {
                let _ = call.reply.send(Ok(None));
            }
        });
        let ctx = Context {
            instance: tokio::sync::watch::channel(crate::xmpp::Names {
                now: "kith-1@host".to_owned(),
                before: None,
            })
            .1,
            account: "romeo@montague.lit".into(),
            lan,
            calls,
            notices,
            secrets,
        };
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move { handle(server, who, &ctx).await });
        client
    }

    async fn exchange(mut c: DuplexStream, input: &str) -> String {
        c.write_all(input.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
            .await
            .expect("the stream ends")
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    const ITEMS: &str = "<iq type='get' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
        <items node='urn:xmpp:contacts'/></pubsub></iq>";
    const DISCO: &str =
        "<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";

    #[tokio::test]
    async fn the_lan_gets_disco_but_pubsub_is_forbidden() {
        let input = format!("{HEADER}{DISCO}{ITEMS}</stream:stream>");
        let refused = "type='error' id='p1'><error type='auth'><forbidden";
        for who in [Peer::Network, Peer::OtherUser] {
            let out = exchange(stream_from(who, false), &input).await;
            assert!(
                out.contains("type='result' id='d1'><query"),
                "disco is open: {out}"
            );
            assert!(out.contains(refused), "{who:?}: {out}");
            assert!(out.ends_with("</stream:stream>"), "{out}");
        }
        let out = exchange(stream_from(Peer::Owner, false), &input).await;
        assert!(out.contains("type='result' id='p1'"), "the owner: {out}");

        let out = exchange(stream_from(Peer::Network, true), &input).await;
        assert!(out.contains("type='result' id='p1'"), "opted in: {out}");

        // Retract: the owner only, --xmpp-lan or not.
        let retract = format!(
            "{HEADER}<iq type='set' id='r1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <retract node='urn:xmpp:contacts'><item id='a'/></retract></pubsub></iq></stream:stream>"
        );
        let out = exchange(stream_from(Peer::Network, true), &retract).await;
        assert!(
            out.contains("type='error' id='r1'><error type='auth'><forbidden"),
            "{out}"
        );
        let out = exchange(stream_from(Peer::Owner, false), &retract).await;
        assert!(out.contains("type='result' id='r1'"), "{out}");
    }

    #[tokio::test]
    async fn a_stream_to_another_instance_or_of_garbage_ends_with_a_stream_error() {
        let other = HEADER.replace("kith-1@host", "kith-2@elsewhere");
        let out = exchange(stream_from(Peer::Owner, false), &other).await;
        assert!(out.contains("host-unknown"), "{out}");
        let account = HEADER.replace("kith-1@host", "romeo@montague.lit");
        let out = exchange(stream_from(Peer::Network, false), &account).await;
        assert!(out.contains("host-unknown"), "no JID to probe: {out}");
        let out = exchange(stream_from(Peer::Owner, false), "GET / HTTP/1.1\r\n\r\n<>").await;
        assert!(out.contains("not-well-formed"), "{out}");
        let deep = format!("{HEADER}{}", "<a>".repeat(64));
        let out = exchange(stream_from(Peer::Owner, false), &deep).await;
        assert!(out.contains("policy-violation"), "{out}");
    }
}
