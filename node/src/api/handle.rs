//! Talking to a running node from inside the process: [`Handle`] sends a
//! [`Call`] to the node's task and waits for its [`Reply`] lines. The control
//! socket ([`super::socket`]) forwards its clients' requests the same way.

use tokio::sync::mpsc;

use super::{Answer, Error, ErrorKind, Reply, Request};

/// A request to the node task, with where to send the replies.
#[derive(Debug)]
pub struct Call {
    /// The request.
    pub request: Request,
    /// Progress lines, then exactly one final line.
    pub reply: mpsc::Sender<Reply>,
}

/// Talks to a running node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    calls: mpsc::Sender<Call>,
}

impl Handle {
    /// A handle sending its calls on `calls` (the node task reads the other end).
    pub fn new(calls: mpsc::Sender<Call>) -> Self {
        Self { calls }
    }

    /// Sends a request; progress lines go to `progress`; returns the answer.
    pub async fn request(
        &self,
        request: Request,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Answer, Error> {
        let (tx, mut rx) = mpsc::channel(64);
        let gone = || Error::new(ErrorKind::NotRunning, "the node stopped");
        self.calls
            .send(Call { request, reply: tx })
            .await
            .map_err(|_| gone())?;
        while let Some(reply) = rx.recv().await {
            match reply {
                Reply::Progress { done, total } => progress(done, total),
                Reply::Ok(v) => return Ok(v),
                Reply::Error(e) => return Err(e),
            }
        }
        Err(gone())
    }

    /// [`Handle::request`] for an answer of type `T`.
    pub async fn ask<T: super::Payload>(&self, request: Request) -> Result<T, Error> {
        Ok(T::try_from(self.request(request, |_, _| {}).await?)?)
    }

    pub(crate) fn sender(&self) -> mpsc::Sender<Call> {
        self.calls.clone()
    }
}
