//! What mDNS showed of other kith devices: where each roster device was last seen,
//! and the advertisements not recognised when they came, kept to be tried again.
//! Bookkeeping only, with the time given: the node recognises (it holds the tags'
//! keys) and dials ([`super::discover`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

use crate::discovery::Seen;

/// Most advertisements kept unrecognised (other accounts' devices on the LAN among
/// them), the oldest dropped first.
const MAX_UNRECOGNISED: usize = 64;
/// How long an advertisement is kept unrecognised.
pub(super) const UNRECOGNISED_FOR: Duration = Duration::from_secs(600);

/// What recognising advertisements was last tried with: the roster devices
/// allowed, how many secrets were held (a keyring only grows: a rotation adds one)
/// and the day. The same again recognises nothing new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recognition {
    pub(super) devices: BTreeSet<PeerId>,
    pub(super) secrets: usize,
    pub(super) day: u64,
}

/// Where mDNS last showed a roster device, and when.
#[derive(Debug, Clone)]
pub(super) struct Sighting {
    /// When it was first seen.
    first: Instant,
    /// When the advertisement these addresses are from was received.
    at: Instant,
    /// The addresses it advertised.
    pub(super) addrs: Vec<Multiaddr>,
    /// The full name of the advertisement they are from.
    fullname: String,
}

/// A roster device sighted anew: where, and since when it has been seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sighted {
    pub(super) peer: PeerId,
    pub(super) addrs: Vec<Multiaddr>,
    pub(super) first: Instant,
}

/// The sightings of roster devices and the advertisements kept unrecognised.
#[derive(Debug, Default)]
pub(super) struct Sightings {
    seen: BTreeMap<PeerId, Sighting>,
    /// Newest last; at most [`MAX_UNRECOGNISED`].
    unrecognised: Vec<(Instant, Seen)>,
    recognition: Option<Recognition>,
}

impl Sightings {
    /// An advertisement received at `at`. What was kept of one of the same name is
    /// stale either way and goes. Recognised (`recognise` names its device), it is
    /// a sighting ([`Sightings::sight`]); otherwise it is kept, the oldest kept
    /// going past [`MAX_UNRECOGNISED`].
    pub(super) fn advertised(
        &mut self,
        seen: Seen,
        at: Instant,
        recognise: impl Fn(&Seen) -> Option<PeerId>,
    ) -> Option<Sighted> {
        self.unrecognised
            .retain(|(_, s)| s.fullname != seen.fullname);
        match recognise(&seen) {
            Some(peer) => self.sight(peer, seen, at),
            None => {
                if self.unrecognised.len() >= MAX_UNRECOGNISED {
                    self.unrecognised.remove(0);
                }
                self.unrecognised.push((at, seen));
                None
            }
        }
    }

    /// `peer` shown at `seen`'s addresses by an advertisement received `at`. One
    /// older than the advertisement its present addresses are from (kept
    /// unrecognised, from before the device's guise moved) changes nothing: `None`.
    fn sight(&mut self, peer: PeerId, seen: Seen, at: Instant) -> Option<Sighted> {
        let before = self.seen.get(&peer);
        if before.is_some_and(|s| s.at > at) {
            return None;
        }
        let first = before.map_or(at, |s| s.first);
        let Seen {
            fullname, addrs, ..
        } = seen;
        self.seen.insert(
            peer,
            Sighting {
                first,
                at,
                addrs: addrs.clone(),
                fullname,
            },
        );
        Some(Sighted { peer, addrs, first })
    }

    /// The advertisement `fullname` was withdrawn or expired: no longer kept, and
    /// the device it showed no longer sighted there. Returns the devices forgotten.
    pub(super) fn gone(&mut self, fullname: &str) -> Vec<PeerId> {
        self.unrecognised.retain(|(_, s)| s.fullname != fullname);
        let gone: Vec<PeerId> = self
            .seen
            .iter()
            .filter(|(_, s)| s.fullname == fullname)
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            self.seen.remove(p);
        }
        gone
    }

    /// Forgets every advertisement kept unrecognised (a device that no longer
    /// dials: it was revoked).
    pub(super) fn forget_kept(&mut self) {
        self.unrecognised.clear();
    }

    /// At `now`, drops what was kept longer than [`UNRECOGNISED_FOR`], then tries
    /// the rest again if `recognition` differs from the last try (more secrets,
    /// other roster devices, another day): each recognised is sighted as of when it
    /// was received. Returns the devices sighted anew.
    pub(super) fn retry(
        &mut self,
        now: Instant,
        recognition: Recognition,
        recognise: impl Fn(&Seen) -> Option<PeerId>,
    ) -> Vec<Sighted> {
        self.unrecognised
            .retain(|(at, _)| now.saturating_duration_since(*at) < UNRECOGNISED_FOR);
        let mut sighted = Vec::new();
        if !self.unrecognised.is_empty() && self.recognition.as_ref() != Some(&recognition) {
            let mut kept = Vec::new();
            for (at, seen) in std::mem::take(&mut self.unrecognised) {
                match recognise(&seen) {
                    Some(peer) => sighted.extend(self.sight(peer, seen, at)),
                    None => kept.push((at, seen)),
                }
            }
            self.unrecognised = kept;
        }
        self.recognition = Some(recognition);
        sighted
    }

    /// The devices first seen at least `after` before `now` that `may_dial`
    /// allows, with their addresses.
    pub(super) fn due(
        &self,
        now: Instant,
        after: Duration,
        may_dial: impl Fn(&PeerId) -> bool,
    ) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.seen
            .iter()
            .filter(|(p, s)| now.saturating_duration_since(s.first) > after && may_dial(p))
            .map(|(p, s)| (*p, s.addrs.clone()))
            .collect()
    }

    /// Where `peer` was last seen.
    pub(super) fn get(&self, peer: &PeerId) -> Option<&Sighting> {
        self.seen.get(peer)
    }

    /// How many advertisements are kept unrecognised.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.unrecognised.len()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn ad(name: &str, tag: &str, port: u16) -> Seen {
        Seen {
            fullname: format!("{name}._presence._tcp.local."),
            tag: tag.to_owned(),
            addrs: vec![
                format!("/ip4/127.0.0.1/tcp/{port}")
                    .parse()
                    .expect("an address"),
            ],
        }
    }

    fn recognition(secrets: usize) -> Recognition {
        Recognition {
            devices: BTreeSet::new(),
            secrets,
            day: 1,
        }
    }

    /// Recognises the advertisements whose tag is one of `tags` as `peer`.
    fn knows<'a>(peer: PeerId, tags: &'a [&'a str]) -> impl Fn(&Seen) -> Option<PeerId> + 'a {
        move |s| tags.contains(&s.tag.as_str()).then_some(peer)
    }

    #[test]
    fn a_kept_advertisement_recognised_late_does_not_replace_a_newer_sighting() {
        let peer = PeerId::random();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let mut s = Sightings::default();
        // Its old guise, not recognised when it came...
        assert_eq!(s.advertised(ad("old", "t-old", 1000), t0, |_| None), None);
        assert_eq!(s.kept(), 1);
        // ...then its new guise, recognised.
        let new = s
            .advertised(ad("new", "t-new", 2000), t1, knows(peer, &["t-new"]))
            .expect("sighted");
        assert_eq!((new.peer, new.first), (peer, t1));
        // The secret that recognises the old one arrives: it is older, and changes
        // nothing.
        let again = s.retry(t1, recognition(2), knows(peer, &["t-old", "t-new"]));
        assert_eq!(again, Vec::new());
        assert_eq!(s.kept(), 0, "recognised, so no longer kept");
        let sighting = s.get(&peer).expect("still sighted");
        assert_eq!(sighting.addrs, ad("new", "", 2000).addrs);
        assert_eq!(sighting.at, t1);
    }

    #[test]
    fn a_kept_advertisement_recognised_later_is_sighted_as_of_when_it_came() {
        let peer = PeerId::random();
        let t0 = Instant::now();
        let mut s = Sightings::default();
        s.advertised(ad("a", "t", 1000), t0, |_| None);
        let later = t0 + Duration::from_secs(30);
        let sighted = s.retry(later, recognition(2), knows(peer, &["t"]));
        assert_eq!(
            sighted,
            vec![Sighted {
                peer,
                addrs: ad("a", "t", 1000).addrs,
                first: t0
            }]
        );
    }

    #[test]
    fn a_device_that_no_longer_dials_forgets_what_it_kept() {
        let peer = PeerId::random();
        let t0 = Instant::now();
        let mut s = Sightings::default();
        s.advertised(ad("a", "t", 1000), t0, |_| None);
        s.advertised(ad("b", "u", 1001), t0, |_| None);
        s.forget_kept();
        assert_eq!(s.kept(), 0);
        // What would have recognised them finds nothing left.
        assert_eq!(
            s.retry(t0, recognition(2), knows(peer, &["t", "u"])),
            Vec::new()
        );
        assert!(s.get(&peer).is_none());
    }

    #[test]
    fn a_withdrawn_advertisement_is_forgotten_and_the_others_stay() {
        let (p, q) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let mut s = Sightings::default();
        s.advertised(ad("p", "tp", 1000), t0, knows(p, &["tp"]));
        s.advertised(ad("q", "tq", 1001), t0, knows(q, &["tq"]));
        s.advertised(ad("kept", "tk", 1002), t0, |_| None);
        s.advertised(ad("kept2", "tk2", 1003), t0, |_| None);
        assert_eq!(s.gone(&ad("p", "", 0).fullname), vec![p]);
        assert_eq!(s.gone(&ad("kept", "", 0).fullname), Vec::<PeerId>::new());
        assert!(s.get(&p).is_none());
        assert!(s.get(&q).is_some());
        assert_eq!(s.kept(), 1);
    }

    #[test]
    fn at_most_so_many_are_kept_the_oldest_going_first_and_none_past_their_time() {
        let t0 = Instant::now();
        let mut s = Sightings::default();
        for i in 0..MAX_UNRECOGNISED + 3 {
            let at = t0 + Duration::from_secs(i as u64);
            s.advertised(ad(&format!("n{i}"), &format!("t{i}"), 1000), at, |_| None);
        }
        assert_eq!(s.kept(), MAX_UNRECOGNISED);
        // The three oldest went: the fourth is recognised, the first is not there.
        let peer = PeerId::random();
        let found = s.retry(t0, recognition(2), knows(peer, &["t0", "t3"]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].first, t0 + Duration::from_secs(3));
        // Past their time, all go.
        let late = t0 + UNRECOGNISED_FOR + Duration::from_secs(MAX_UNRECOGNISED as u64 + 3);
        s.retry(late, recognition(3), |_| None);
        assert_eq!(s.kept(), 0);
    }

    #[test]
    fn the_same_recognition_is_not_tried_twice_and_an_older_advertisement_of_a_name_is_replaced() {
        let tries = Cell::new(0);
        let counting = |_: &Seen| {
            tries.set(tries.get() + 1);
            None
        };
        let t0 = Instant::now();
        let mut s = Sightings::default();
        s.advertised(ad("a", "t1", 1000), t0, |_| None);
        // The same name advertised again, changed: only the newer is kept.
        s.advertised(ad("a", "t2", 1001), t0, |_| None);
        assert_eq!(s.kept(), 1);
        s.retry(t0, recognition(2), counting);
        assert_eq!(tries.get(), 1);
        s.retry(t0, recognition(2), counting);
        assert_eq!(tries.get(), 1, "nothing new to recognise with");
        s.retry(t0, recognition(3), counting);
        assert_eq!(tries.get(), 2);
    }

    #[test]
    fn devices_are_due_once_seen_long_enough_and_allowed() {
        let (p, q, r) = (PeerId::random(), PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let mut s = Sightings::default();
        s.advertised(ad("p", "tp", 1000), t0, knows(p, &["tp"]));
        s.advertised(ad("q", "tq", 1001), t0, knows(q, &["tq"]));
        let t1 = t0 + Duration::from_secs(5);
        s.advertised(ad("r", "tr", 1002), t1, knows(r, &["tr"]));
        // A newer advertisement of p keeps when it was first seen.
        let again = s
            .advertised(ad("p2", "tp", 1003), t1, knows(p, &["tp"]))
            .expect("sighted");
        assert_eq!(again.first, t0);
        let after = Duration::from_secs(8);
        let due = s.due(t0 + Duration::from_secs(9), after, |peer| *peer != q);
        assert_eq!(due, vec![(p, ad("p2", "", 1003).addrs)]);
    }
}
