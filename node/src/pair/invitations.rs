//! The inviting device's invitations: which are open, how each ended, and the SPAKE2
//! exchanges under way with joining devices. Kept in the node's memory only: the
//! code is the password, and a password at rest on the disk is one a copy of the
//! disk could use.
//!
//! Limits: [`MAX_OPEN`] open invitations; [`MAX_SESSIONS`] exchanges at once, an
//! unproven one dropped when its connection closes, after [`UNPROVEN_MS`], or for a
//! newcomer when all are taken (the oldest unproven one goes); [`MAX_WRONG`] wrong
//! proofs before an invitation closes, and none taken for an invitation while a
//! device that proved its code is joining with it. An ended invitation is remembered
//! for [`REUSE_WINDOW_MS`] ([`MAX_ENDED`] at most), so a code used twice is told
//! apart from a code never given.

use std::collections::BTreeMap;

use kith_protocol::record::DeviceId;
use libp2p::PeerId;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use zeroize::Zeroizing;

use super::{Code, INVITER, JOINER, Refusal, proof, proves};

/// Most invitations open at once.
pub const MAX_OPEN: usize = 32;
/// Most SPAKE2 exchanges under way at once.
pub const MAX_SESSIONS: usize = 16;
/// Most ended invitations remembered (the oldest is forgotten first).
pub const MAX_ENDED: usize = 32;
/// How long an exchange may stay unproven, ms.
pub const UNPROVEN_MS: u64 = 10_000;
/// Wrong proofs an invitation takes before it closes.
pub const MAX_WRONG: u8 = 3;
/// How long an ended or expired invitation is remembered, ms.
pub const REUSE_WINDOW_MS: u64 = 3_600_000;
/// How long an exchange may take from start to join, ms.
const SESSION_MS: u64 = 60_000;

/// How an invitation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A device may still join with it.
    Open,
    /// Its time ran out.
    Expired,
    /// A device joined with it.
    Joined {
        /// The device.
        device: DeviceId,
        /// Its name.
        name: String,
    },
    /// It was cancelled.
    Cancelled,
    /// It closed after [`MAX_WRONG`] wrong codes.
    Closed,
}

/// One invitation.
#[derive(Clone)]
pub struct Invitation {
    code: Code,
    /// When it was opened, Unix ms.
    pub created_ms: u64,
    /// When it expires, Unix ms.
    pub expires_ms: u64,
    /// Wrong proofs so far.
    pub wrong: u8,
    /// Whether it is for a relay device (a device joining with it must ask to be
    /// one), or for a full device.
    pub relay: bool,
    ended: Option<(State, u64)>,
}

impl Invitation {
    /// Its nameplate.
    pub fn nameplate(&self) -> String {
        self.code.nameplate()
    }

    /// How it stands at `now_ms`.
    pub fn state(&self, now_ms: u64) -> State {
        match &self.ended {
            Some((s, _)) => s.clone(),
            None if self.expires_ms <= now_ms => State::Expired,
            None => State::Open,
        }
    }

    /// When it stopped being open, Unix ms (for an expired one, its expiry).
    fn ended_ms(&self, now_ms: u64) -> Option<u64> {
        match &self.ended {
            Some((_, at)) => Some(*at),
            None => (self.expires_ms <= now_ms).then_some(self.expires_ms),
        }
    }

    /// Whether it is open, or ended less than [`REUSE_WINDOW_MS`] ago.
    fn remembered(&self, now_ms: u64) -> bool {
        self.ended_ms(now_ms)
            .is_none_or(|at| now_ms < at.saturating_add(REUSE_WINDOW_MS))
    }

    fn refusal(&self, now_ms: u64) -> Option<Refusal> {
        match self.state(now_ms) {
            State::Open => None,
            State::Expired => Some(Refusal::Expired),
            State::Joined { .. } => Some(Refusal::Used),
            State::Cancelled => Some(Refusal::Cancelled),
            State::Closed => Some(Refusal::Closed),
        }
    }
}

struct Session {
    nameplate: String,
    key: Zeroizing<Vec<u8>>,
    confirmed: bool,
    started_ms: u64,
}

/// Why an invitation could not be opened or cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// [`MAX_OPEN`] are open.
    #[error("{MAX_OPEN} invitations are open already: cancel some (`kith pair cancel`)")]
    TooMany,
    /// Nothing matches.
    #[error("no open invitation has the code {0}")]
    NoSuch(String),
    /// What names the invitation is not a code.
    #[error(transparent)]
    Code(#[from] super::code::Error),
}

/// The invitations of one device.
#[derive(Default)]
pub struct Invitations {
    list: BTreeMap<String, Invitation>,
    sessions: BTreeMap<PeerId, Session>,
}

impl std::fmt::Debug for Invitations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitations")
            .field("nameplates", &self.list.keys().collect::<Vec<_>>())
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl Invitations {
    /// Forgets what ended more than [`REUSE_WINDOW_MS`] ago (and the oldest ended
    /// beyond [`MAX_ENDED`]), and exchanges that took too long.
    pub fn prune(&mut self, now_ms: u64) {
        self.list.retain(|_, i| i.remembered(now_ms));
        let mut ended: Vec<(u64, String)> = self
            .list
            .iter()
            .filter_map(|(p, i)| i.ended_ms(now_ms).map(|at| (at, p.clone())))
            .collect();
        if ended.len() > MAX_ENDED {
            ended.sort();
            for (_, plate) in &ended[..ended.len() - MAX_ENDED] {
                self.list.remove(plate);
            }
        }
        self.sessions.retain(|_, s| {
            let limit = if s.confirmed { SESSION_MS } else { UNPROVEN_MS };
            now_ms < s.started_ms.saturating_add(limit)
        });
    }

    /// Forgets `peer`'s exchange (its connection closed).
    pub fn forget(&mut self, peer: &PeerId) {
        self.sessions.remove(peer);
    }

    /// Opens an invitation valid until `expires_ms`; returns its code.
    pub fn open(
        &mut self,
        now_ms: u64,
        expires_ms: u64,
        rng: &mut impl rand::Rng,
    ) -> Result<Code, Error> {
        self.open_for(now_ms, expires_ms, false, rng)
    }

    /// [`Invitations::open`], for a relay device when `relay`.
    pub fn open_for(
        &mut self,
        now_ms: u64,
        expires_ms: u64,
        relay: bool,
        rng: &mut impl rand::Rng,
    ) -> Result<Code, Error> {
        self.prune(now_ms);
        let open = self
            .list
            .values()
            .filter(|i| i.state(now_ms) == State::Open)
            .count();
        if open >= MAX_OPEN {
            return Err(Error::TooMany);
        }
        // A nameplate no remembered invitation has: at most 64 of 1024 are taken,
        // so a few draws; bounded all the same.
        let code = (0..1024)
            .map(|_| Code::random(rng))
            .find(|c| !self.list.contains_key(&c.nameplate()))
            .ok_or(Error::TooMany)?;
        self.list.insert(
            code.nameplate(),
            Invitation {
                code: code.clone(),
                created_ms: now_ms,
                expires_ms,
                wrong: 0,
                relay,
                ended: None,
            },
        );
        Ok(code)
    }

    /// Every remembered invitation, by nameplate.
    pub fn list(&self) -> impl Iterator<Item = &Invitation> {
        self.list.values()
    }

    /// Nameplates to advertise and answer for: open ones, and those ended less than
    /// [`REUSE_WINDOW_MS`] ago (so a second use is told it was used).
    pub fn nameplates(&self, now_ms: u64) -> Vec<String> {
        self.list
            .values()
            .filter(|i| i.remembered(now_ms))
            .map(Invitation::nameplate)
            .collect()
    }

    /// Cancels the open invitation whose code (or nameplate) is `which`, or every
    /// open one when `which` is `None`. Returns the nameplates cancelled.
    pub fn cancel(&mut self, which: Option<&str>, now_ms: u64) -> Result<Vec<String>, Error> {
        let wanted = which
            .map(|w| super::code::nameplate_of(w).map_err(Error::Code))
            .transpose()?;
        let mut done = Vec::new();
        for (plate, i) in &mut self.list {
            if wanted.as_ref().is_none_or(|w| w == plate) && i.state(now_ms) == State::Open {
                i.ended = Some((State::Cancelled, now_ms));
                done.push(plate.clone());
            }
        }
        if done.is_empty()
            && let Some(w) = which
        {
            return Err(Error::NoSuch(w.trim().to_owned()));
        }
        Ok(done)
    }

    /// Step 1: the joiner `peer` starts SPAKE2 for `nameplate` with its message;
    /// `me` is this device's peer id. Returns this side's message.
    pub fn start(
        &mut self,
        peer: PeerId,
        me: PeerId,
        nameplate: &str,
        message: &[u8],
        now_ms: u64,
    ) -> Result<Vec<u8>, Refusal> {
        self.prune(now_ms);
        let invitation = self.list.get(nameplate).ok_or(Refusal::NoSuchCode)?;
        if let Some(no) = invitation.refusal(now_ms) {
            return Err(no);
        }
        // A device that proved the code is joining: nobody else may try (and burn
        // the invitation's tries under it) meanwhile.
        if self
            .sessions
            .iter()
            .any(|(p, s)| p != &peer && s.confirmed && s.nameplate == nameplate)
        {
            return Err(Refusal::Joining);
        }
        let (state, ours) = Spake2::<Ed25519Group>::start_b(
            &Password::new(invitation.code.password()),
            &Identity::new(&peer.to_bytes()),
            &Identity::new(&me.to_bytes()),
        );
        let key = state.finish(message).map_err(|_| Refusal::Malformed)?;
        if !self.sessions.contains_key(&peer) && self.sessions.len() >= MAX_SESSIONS {
            // The oldest unproven exchange makes room: a stranger holding slots
            // loses them to whoever comes next.
            let oldest = self
                .sessions
                .iter()
                .filter(|(_, s)| !s.confirmed)
                .min_by_key(|(_, s)| s.started_ms)
                .map(|(p, _)| *p)
                .ok_or(Refusal::Busy)?;
            self.sessions.remove(&oldest);
        }
        self.sessions.insert(
            peer,
            Session {
                nameplate: nameplate.to_owned(),
                key: Zeroizing::new(key),
                confirmed: false,
                started_ms: now_ms,
            },
        );
        Ok(ours)
    }

    /// Step 2: the joiner's proof. A wrong one costs a try; the last try closes the
    /// invitation. Returns this side's proof.
    pub fn confirm(&mut self, peer: &PeerId, mac: &[u8], now_ms: u64) -> Result<[u8; 32], Refusal> {
        let session = self.sessions.get(peer).ok_or(Refusal::Malformed)?;
        if session.confirmed {
            return Err(Refusal::Malformed);
        }
        let invitation = self
            .list
            .get_mut(&session.nameplate)
            .ok_or(Refusal::NoSuchCode)?;
        if let Some(no) = invitation.refusal(now_ms) {
            self.sessions.remove(peer);
            return Err(no);
        }
        if !proves(&session.key, JOINER, mac) {
            self.sessions.remove(peer);
            invitation.wrong = invitation.wrong.saturating_add(1);
            if invitation.wrong >= MAX_WRONG {
                invitation.ended = Some((State::Closed, now_ms));
                return Err(Refusal::Closed);
            }
            return Err(Refusal::WrongCode(MAX_WRONG - invitation.wrong));
        }
        let ours = proof(&session.key, INVITER);
        if let Some(s) = self.sessions.get_mut(peer) {
            s.confirmed = true;
        }
        Ok(ours)
    }

    /// Whether the invitation `peer` proved it holds is for a relay device.
    pub fn for_relay(&self, peer: &PeerId) -> bool {
        self.sessions
            .get(peer)
            .and_then(|s| self.list.get(&s.nameplate))
            .is_some_and(|i| i.relay)
    }

    /// Step 3, before the roster changes: the nameplate of `peer`'s confirmed
    /// exchange, if its invitation is still open.
    pub fn may_join(&self, peer: &PeerId, now_ms: u64) -> Result<String, Refusal> {
        let session = self
            .sessions
            .get(peer)
            .filter(|s| s.confirmed)
            .ok_or(Refusal::Malformed)?;
        let invitation = self
            .list
            .get(&session.nameplate)
            .ok_or(Refusal::NoSuchCode)?;
        match invitation.refusal(now_ms) {
            Some(no) => Err(no),
            None => Ok(session.nameplate.clone()),
        }
    }

    /// Step 3, once the roster took the device: the invitation ends. Other
    /// exchanges for it stay until they end, each told at its next step that the
    /// code was used.
    pub fn joined(&mut self, peer: &PeerId, device: DeviceId, name: &str, now_ms: u64) {
        if let Some(s) = self.sessions.remove(peer)
            && let Some(i) = self.list.get_mut(&s.nameplate)
        {
            i.ended = Some((
                State::Joined {
                    device,
                    name: name.to_owned(),
                },
                now_ms,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    struct Joiner {
        peer: PeerId,
        state: Option<Spake2<Ed25519Group>>,
        message: Vec<u8>,
    }

    fn joiner(code: &Code, inviter: PeerId) -> Joiner {
        let peer = PeerId::random();
        let (state, message) = Spake2::<Ed25519Group>::start_a(
            &Password::new(code.password()),
            &Identity::new(&peer.to_bytes()),
            &Identity::new(&inviter.to_bytes()),
        );
        Joiner {
            peer,
            state: Some(state),
            message,
        }
    }

    fn setup() -> (Invitations, Code, PeerId) {
        let mut inv = Invitations::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let code = inv.open(1_000, 100_000, &mut rng).unwrap();
        (inv, code, PeerId::random())
    }

    #[test]
    fn the_right_code_joins_once() {
        let (mut inv, code, me) = setup();
        let mut j = joiner(&code, me);
        let theirs = inv
            .start(j.peer, me, &code.nameplate(), &j.message, 2_000)
            .unwrap();
        let key = j.state.take().unwrap().finish(&theirs).unwrap();
        let mac = inv.confirm(&j.peer, &proof(&key, JOINER), 2_000).unwrap();
        assert!(
            proves(&key, INVITER, &mac),
            "the joiner can check the inviter"
        );
        assert_eq!(inv.may_join(&j.peer, 2_000), Ok(code.nameplate()));
        let device = DeviceId([9; 32]);
        inv.joined(&j.peer, device, "phone", 2_500);
        assert!(matches!(
            inv.list().next().unwrap().state(3_000),
            State::Joined { .. }
        ));
        // A second device with the same code is told it was used.
        let k = joiner(&code, me);
        assert_eq!(
            inv.start(k.peer, me, &code.nameplate(), &k.message, 3_000),
            Err(Refusal::Used)
        );
        // Still told so for the reuse window, then forgotten.
        assert_eq!(inv.nameplates(2_500 + REUSE_WINDOW_MS - 1).len(), 1);
        inv.prune(2_500 + REUSE_WINDOW_MS);
        assert!(inv.nameplates(2_500 + REUSE_WINDOW_MS).is_empty());
    }

    #[test]
    fn wrong_codes_cost_tries_then_close_the_invitation() {
        let (mut inv, code, me) = setup();
        let wrong = Code::random(&mut rand_chacha::ChaCha8Rng::seed_from_u64(99));
        for left in (0..MAX_WRONG).rev() {
            let mut j = joiner(&wrong, me);
            let theirs = inv
                .start(j.peer, me, &code.nameplate(), &j.message, 2_000)
                .unwrap();
            let key = j.state.take().unwrap().finish(&theirs).unwrap();
            let got = inv.confirm(&j.peer, &proof(&key, JOINER), 2_000);
            if left == 0 {
                assert_eq!(got, Err(Refusal::Closed));
            } else {
                assert_eq!(got, Err(Refusal::WrongCode(left)));
            }
            assert_eq!(inv.may_join(&j.peer, 2_000), Err(Refusal::Malformed));
        }
        // Now even the right code is refused.
        let j = joiner(&code, me);
        assert_eq!(
            inv.start(j.peer, me, &code.nameplate(), &j.message, 2_000),
            Err(Refusal::Closed)
        );
    }

    #[test]
    fn a_device_in_the_middle_gets_another_key() {
        // The joiner ran SPAKE2 naming the inviter it thinks it talks to; the
        // inviter sees another peer id (the one in the middle): the proofs differ.
        let (mut inv, code, me) = setup();
        let mut j = joiner(&code, me);
        let middle = PeerId::random();
        let theirs = inv
            .start(middle, me, &code.nameplate(), &j.message, 2_000)
            .unwrap();
        let key = j.state.take().unwrap().finish(&theirs).unwrap();
        assert_eq!(
            inv.confirm(&middle, &proof(&key, JOINER), 2_000),
            Err(Refusal::WrongCode(MAX_WRONG - 1))
        );
    }

    #[test]
    fn out_of_order_steps_expiry_and_cancel_are_refused() {
        let (mut inv, code, me) = setup();
        let j = joiner(&code, me);
        assert_eq!(
            inv.confirm(&j.peer, &[0; 32], 2_000),
            Err(Refusal::Malformed)
        );
        assert_eq!(inv.may_join(&j.peer, 2_000), Err(Refusal::Malformed));
        assert_eq!(
            inv.start(j.peer, me, "ZZ", &j.message, 2_000),
            Err(Refusal::NoSuchCode)
        );
        assert_eq!(
            inv.start(j.peer, me, &code.nameplate(), b"junk", 2_000),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            inv.start(j.peer, me, &code.nameplate(), &j.message, 100_000),
            Err(Refusal::Expired)
        );
        let other = if code.nameplate() == "QQ" { "ZZ" } else { "QQ" };
        assert_eq!(
            inv.cancel(Some(other), 2_000),
            Err(Error::NoSuch(other.into()))
        );
        assert!(matches!(inv.cancel(Some("Q"), 2_000), Err(Error::Code(_))));
        assert_eq!(
            inv.cancel(Some(&code.short()), 2_000),
            Ok(vec![code.nameplate()])
        );
        assert_eq!(
            inv.start(j.peer, me, &code.nameplate(), &j.message, 2_000),
            Err(Refusal::Cancelled)
        );
    }

    #[test]
    fn a_proven_joiner_is_not_raced_and_strangers_make_room() {
        let (mut inv, code, me) = setup();
        let mut j = joiner(&code, me);
        let theirs = inv
            .start(j.peer, me, &code.nameplate(), &j.message, 2_000)
            .unwrap();
        let key = j.state.take().unwrap().finish(&theirs).unwrap();
        inv.confirm(&j.peer, &proof(&key, JOINER), 2_000).unwrap();
        // Another device cannot start (nor burn tries) while the proven one joins.
        let k = joiner(&code, me);
        assert_eq!(
            inv.start(k.peer, me, &code.nameplate(), &k.message, 2_000),
            Err(Refusal::Joining)
        );
        // Strangers filling every slot lose the oldest unproven one to a newcomer;
        // the proven exchange stays.
        let (mut inv2, code2, _) = setup();
        let mut first = None;
        for n in 0..MAX_SESSIONS as u64 + 4 {
            let s = joiner(&code2, me);
            first.get_or_insert(s.peer);
            assert!(
                inv2.start(s.peer, me, &code2.nameplate(), &s.message, 2_000 + n)
                    .is_ok()
            );
        }
        assert_eq!(
            inv2.confirm(&first.unwrap(), &[0; 32], 2_100),
            Err(Refusal::Malformed),
            "the oldest stranger was dropped"
        );
        // Unproven exchanges end after UNPROVEN_MS; a closed connection ends one.
        inv.prune(2_000 + UNPROVEN_MS + 1);
        assert_eq!(
            inv.may_join(&j.peer, 2_000 + UNPROVEN_MS + 1),
            Ok(code.nameplate())
        );
        inv.forget(&j.peer);
        assert_eq!(inv.may_join(&j.peer, 2_000), Err(Refusal::Malformed));
    }

    #[test]
    fn remembered_invitations_are_bounded() {
        let mut inv = Invitations::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for round in 0..5u64 {
            for _ in 0..MAX_OPEN {
                inv.open(round, 1_000_000, &mut rng).unwrap();
            }
            inv.cancel(None, round).unwrap();
        }
        inv.prune(10);
        assert_eq!(inv.list().count(), MAX_ENDED);
        assert!(inv.nameplates(10).len() <= MAX_ENDED + MAX_OPEN);
    }

    #[test]
    fn open_invitations_are_bounded() {
        let mut inv = Invitations::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..MAX_OPEN {
            inv.open(0, 10, &mut rng).unwrap();
        }
        assert_eq!(inv.open(0, 10, &mut rng).map(|_| ()), Err(Error::TooMany));
        assert_eq!(inv.cancel(None, 1).unwrap().len(), MAX_OPEN);
        assert!(inv.open(1, 10, &mut rng).is_ok());
    }
}
