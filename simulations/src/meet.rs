//! Offline-first meshes: devices that are online now and then, with or without one
//! relay device that is always on. [`run`] plays a [`Meetings`] and measures, for
//! each edit (a contact added), how long until every full device shows it.
//!
//! Each full device alternates sessions online of [`Meetings::session_ms`] with
//! gaps offline whose mean makes it online [`Meetings::online`] of the time (each
//! gap uniform in ½–1½ of that mean, so devices drift apart). An edit is made by a
//! device that is online, one at a time: the next comes only once every device
//! holds the last one (or [`Meetings::limit_ms`] passed), at a random moment within
//! one cycle after that. Without a relay an edit
//! spreads only when two devices happen to be online together; with one, every
//! device picks it up at its next session.

use kith_protocol::contacts::Command;
use kith_protocol::jid::BareJid;

use crate::world::World;

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Meetings {
    /// Full devices.
    pub nodes: usize,
    /// Whether one relay device, always online, is added.
    pub relay: bool,
    /// Share of the time each full device is online (0 < online ≤ 1).
    pub online: f64,
    /// Length of one session online, virtual ms.
    pub session_ms: u64,
    /// Edits, one after another.
    pub edits: usize,
    /// How long one edit may take to reach every device, virtual ms.
    pub limit_ms: u64,
    /// One-way latency, ms.
    pub latency_ms: u64,
    /// Seed of everything random.
    pub seed: u64,
}

impl Default for Meetings {
    fn default() -> Self {
        Self {
            nodes: 6,
            relay: true,
            online: 0.1,
            session_ms: 60_000,
            edits: 20,
            limit_ms: 48 * 3_600_000,
            latency_ms: 50,
            seed: 1,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The run's settings.
    pub online: f64,
    /// Whether a relay was on.
    pub relay: bool,
    /// For each edit that reached every device, virtual ms from the edit until then.
    pub spread_ms: Vec<u64>,
    /// Edits that had not reached every device within the limit.
    pub unfinished: usize,
}

impl Report {
    /// The median of [`Report::spread_ms`] (0 when empty).
    pub fn median_ms(&self) -> u64 {
        let mut v = self.spread_ms.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }

    /// The largest of [`Report::spread_ms`].
    pub fn worst_ms(&self) -> u64 {
        self.spread_ms.iter().copied().max().unwrap_or(0)
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"online\":{},\"relay\":{},\"edits\":{},\"unfinished\":{},\"median_ms\":{},\"worst_ms\":{}}}",
            self.online,
            self.relay,
            self.spread_ms.len() + self.unfinished,
            self.unfinished,
            self.median_ms(),
            self.worst_ms()
        )
    }
}

/// When each full device next changes state, and to what.
struct Schedule {
    next_ms: Vec<u64>,
}

/// Plays `m`.
pub fn run(m: &Meetings) -> Report {
    let online = m.online.clamp(0.001, 1.0);
    let full = m.nodes.max(2);
    let n = full + usize::from(m.relay);
    let faults = crate::scenario::faults(m.latency_ms, 0.0, 0.0);
    let config = crate::scenario::engine_config();
    let mut w = World::new(n, usize::from(m.relay), 0, faults, config, m.seed, false, n);
    // Everyone starts together (a household pairing its devices), then goes its way.
    w.run_until(10_000);
    let mean_off = (m.session_ms as f64 * (1.0 - online) / online) as u64;
    let mut schedule = Schedule {
        next_ms: vec![0; full],
    };
    let gap = |w: &mut World| mean_off / 2 + w.random(mean_off.max(1));
    for i in 0..full {
        // Every device starts somewhere in its cycle.
        if online < 1.0 && w.random(1_000) as f64 >= online * 1_000.0 {
            w.set_online(i, false);
            schedule.next_ms[i] = w.now_ms + gap(&mut w);
        } else {
            schedule.next_ms[i] = w.now_ms + w.random(m.session_ms.max(1));
        }
    }
    let step = |w: &mut World, schedule: &mut Schedule, until: u64| {
        while w.now_ms < until {
            let next = schedule
                .next_ms
                .iter()
                .copied()
                .min()
                .unwrap_or(until)
                .min(until)
                .max(w.now_ms + 1);
            w.run_until(next);
            for i in 0..full {
                if schedule.next_ms[i] <= w.now_ms && online < 1.0 {
                    let was = w.nodes[i].online;
                    w.set_online(i, !was);
                    schedule.next_ms[i] = w.now_ms + if was { gap(w) } else { m.session_ms };
                }
            }
        }
    };
    let mut report = Report {
        online,
        relay: m.relay,
        spread_ms: Vec::new(),
        unfinished: 0,
    };
    // A device's whole cycle (a session and a gap, on average).
    let cycle = (m.session_ms as f64 / online) as u64;
    for k in 0..m.edits {
        // Edits come at random moments of the devices' cycles, not back to back
        // (one edit right after another would find the same devices online).
        let pause = w.now_ms + w.random(cycle.max(1));
        step(&mut w, &mut schedule, pause);
        // The next edit, on a device that is online (waiting for one if need be).
        let deadline = w.now_ms + m.limit_ms;
        let by = loop {
            let up: Vec<usize> = (0..full).filter(|&i| w.nodes[i].online).collect();
            if !up.is_empty() {
                break Some(up[w.random(up.len() as u64) as usize]);
            }
            if w.now_ms >= deadline {
                break None;
            }
            let t = w.now_ms + 1_000;
            step(&mut w, &mut schedule, t);
        };
        let Some(by) = by else {
            report.unfinished += 1;
            continue;
        };
        let jid = BareJid::parse(&format!("m{k}@sim.lit")).expect("simulated JIDs are valid");
        let at = w.now_ms;
        w.command(
            by,
            Command::AddContact {
                jid: jid.clone(),
                name: None,
                groups: vec![],
            },
        );
        let everywhere = |w: &World| (0..full).all(|i| w.shows(i, &jid));
        let deadline = at + m.limit_ms;
        let mut done = false;
        while w.now_ms < deadline {
            let t = w.now_ms + 1_000;
            step(&mut w, &mut schedule, t);
            if everywhere(&w) {
                done = true;
                break;
            }
        }
        if done {
            report.spread_ms.push(w.now_ms - at);
        } else {
            report.unfinished += 1;
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_a_relay_every_edit_reaches_every_rarely_online_device() {
        let m = Meetings {
            nodes: 4,
            online: 0.1,
            edits: 4,
            session_ms: 30_000,
            ..Meetings::default()
        };
        let with = run(&m);
        assert_eq!(with.unfinished, 0, "{with:?}");
        assert_eq!(with.spread_ms.len(), 4);
        // Without the relay the same devices meet less often: no edit spreads
        // faster in the median.
        let without = run(&Meetings { relay: false, ..m });
        assert!(
            without.unfinished > 0 || without.median_ms() >= with.median_ms(),
            "{with:?} {without:?}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_figures() {
        let m = Meetings {
            nodes: 3,
            edits: 2,
            ..Meetings::default()
        };
        assert_eq!(run(&m), run(&m));
    }
}
