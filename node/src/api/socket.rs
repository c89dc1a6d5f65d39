//! The control socket: a Unix domain socket (mode 0600) in the data directory that
//! carries [`super`] JSON lines between the CLI and the node, and the
//! client side the CLI uses.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::admission::{Admission, Limits, Ticket};

use super::{Call, Handle};
use super::{Error, ErrorKind, MAX_REQUEST_BYTES, Reply, Request};

/// Most CLI connections served at once.
pub const MAX_CLIENTS: usize = 16;
/// Seconds a client has to send its whole request line once connected.
pub const REQUEST_SECS: u64 = 30;
/// Seconds a reply line may take to be written (the client must read).
pub const WRITE_SECS: u64 = 10;

/// Listens on `path` (replacing a stale socket; the caller holds the data
/// directory's lock) and forwards requests to the node. A client that has not sent
/// its request yet gives its place to a newcomer when all are taken (see
/// [`crate::admission`]; it is told the node is busy, so the CLI tries again), and is
/// dropped after [`REQUEST_SECS`] anyway; clients whose requests are being answered
/// keep theirs, and past [`MAX_CLIENTS`] of them a newcomer is told the node is busy.
pub fn serve(path: &Path, handle: Handle) -> io::Result<Server> {
    let _ = std::fs::remove_file(path);
    let listener = short_path(path, |p| UnixListener::bind(p))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let admission = Admission::new(Limits {
        total: MAX_CLIENTS,
        per_key: MAX_CLIENTS,
    });
    let (answering, answered) = mpsc::channel(1);
    let accepting = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: let the others finish first.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Some(ticket) = admission.admit(()) else {
                tokio::spawn(async move {
                    let e = Error::new(ErrorKind::Busy, "the node is busy: try again");
                    let _ = write_line(&mut stream, &Reply::Error(e)).await;
                });
                continue;
            };
            let calls = handle.sender();
            // Held (upgraded) only once the request is read: a client that never
            // sends one does not hold a stopping node up.
            let answering = answering.downgrade();
            tokio::spawn(async move {
                let _ = client(stream, calls, ticket, answering).await;
            });
        }
    });
    Ok(Server {
        accepting,
        answered,
    })
}

/// The running control socket: its accepting task, and how to know when every
/// client whose request was read has had its answer written.
#[derive(Debug)]
pub struct Server {
    accepting: tokio::task::JoinHandle<()>,
    /// Ends (yields `None`) once every client holding a clone of its sender is done.
    answered: mpsc::Receiver<()>,
}

impl Server {
    /// Stops accepting, then waits (at most [`WRITE_SECS`]) until every client whose
    /// request was read has been written its answer: a node stopping on an error
    /// still tells the CLI that asked why, before the process exits.
    pub async fn close(mut self) {
        self.accepting.abort();
        // The aborted task drops its sender; the clients still answering hold theirs.
        let _ = (&mut self.accepting).await;
        let _ = tokio::time::timeout(Duration::from_secs(WRITE_SECS), self.answered.recv()).await;
    }
}

/// Runs `f` with a path to `path` short enough for a Unix socket address (about 100
/// bytes): `path` itself, or, for a data directory deep in the tree, the same file
/// through `/proc/self/fd` of its directory, held open meanwhile.
fn short_path<T>(path: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    const MAX: usize = 100;
    if path.as_os_str().len() < MAX {
        return f(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return f(path);
    };
    let dir = std::fs::File::open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(std::os::fd::AsRawFd::as_raw_fd(&dir).to_string())
        .join(name);
    f(&short)
}

async fn write_line(stream: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(io::Error::other)?;
    line.push(b'\n');
    tokio::time::timeout(Duration::from_secs(WRITE_SECS), stream.write_all(&line))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Serves one client: reads its request line (giving its place up, with a `busy`
/// answer, if a newcomer needs it first), then, the request read, holds its place
/// until the answer is written: a request handed to the node is always answered.
async fn client(
    stream: UnixStream,
    calls: mpsc::Sender<Call>,
    mut ticket: Ticket<()>,
    answering: mpsc::WeakSender<()>,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1));
    let mut line = Vec::new();
    let reading = tokio::time::timeout(
        Duration::from_secs(REQUEST_SECS),
        reader.read_until(b'\n', &mut line),
    );
    tokio::select! {
        read = reading => {
            read.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        }
        _ = &mut ticket.evicted => {
            let e = Error::new(ErrorKind::Busy, "the node is busy: try again");
            return write_line(&mut write, &Reply::Error(e)).await;
        }
    }
    // A whole request: this client keeps its place until it is answered, and a
    // stopping node waits for its answer to be written (see `Server::close`).
    ticket.prove();
    let _answering = answering.upgrade();
    if line.len() > MAX_REQUEST_BYTES {
        let e = Error::new(ErrorKind::Input, "request too large");
        return write_line(&mut write, &Reply::Error(e)).await;
    }
    let request: Request = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => {
            // The CLI of this version writes only requests that read back: one that
            // does not is from a kith of another version.
            let e = Error::new(
                ErrorKind::Mismatch,
                format!("the node cannot read this request (a kith of another version?): {e}"),
            );
            return write_line(&mut write, &Reply::Error(e)).await;
        }
    };
    let (tx, mut rx) = mpsc::channel(64);
    if calls.send(Call { request, reply: tx }).await.is_err() {
        let e = Error::new(ErrorKind::NotRunning, "the node is stopping");
        return write_line(&mut write, &Reply::Error(e)).await;
    }
    while let Some(reply) = rx.recv().await {
        let last = !matches!(reply, Reply::Progress { .. });
        write_line(&mut write, &reply).await?;
        if last {
            break;
        }
    }
    write.shutdown().await
}

/// Sends `request` to the node listening on `path`; `progress` hears progress lines.
/// `Ok(None)` when no node listens there.
pub async fn request(
    path: &Path,
    request: &Request,
    mut progress: impl FnMut(u64, u64),
) -> Result<Option<super::Answer>, Error> {
    let connecting = short_path(path, |p| {
        // A blocking connect on a local socket: it does not wait for the peer.
        std::os::unix::net::UnixStream::connect(p)
    });
    let Ok(mut stream) = connecting
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(UnixStream::from_std)
    else {
        return Ok(None);
    };
    let mut line =
        serde_json::to_vec(request).map_err(|e| Error::new(ErrorKind::Input, e.to_string()))?;
    line.push(b'\n');
    let broken = |e: io::Error| Error::new(ErrorKind::NotRunning, format!("control socket: {e}"));
    stream.write_all(&line).await.map_err(|e| match e.kind() {
        // The node hung up before reading the whole request: it gave this client's
        // place to another (see `serve`), so nothing of it was done: try again.
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Error::new(
            ErrorKind::Busy,
            format!("the node is busy (control socket: {e}): try again"),
        ),
        _ => broken(e),
    })?;
    let mut lines = BufReader::new(stream).lines();
    while let Some(line) = lines.next_line().await.map_err(broken)? {
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Progress { done, total }) => progress(done, total),
            Ok(Reply::Ok(v)) => return Ok(Some(v)),
            Ok(Reply::Error(e)) => return Err(e),
            // A line this version cannot read: a node of another version.
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Mismatch,
                    format!(
                        "the node answered what this kith cannot read (a node of another version?): {e}"
                    ),
                ));
            }
        }
    }
    Err(Error::new(
        ErrorKind::NotRunning,
        "the node closed the control socket",
    ))
}
