//! A command on a stopped node loads only the items it touches (`Device::open_for`).
//! Differential check: the same random commands on two devices, one answering them
//! that way whenever it can and one always loading everything, give the same answers
//! and the same list; and the item index a device keeps says what a view built from
//! its records alone says.

use kith_node::Device;
use kith_node::api::Request;
use kith_node::service::NetInfo;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::Value;

fn pick<'a>(rng: &mut ChaCha20Rng, from: &[&'a str]) -> &'a str {
    from[(rng.next_u64() % from.len() as u64) as usize]
}

const JIDS: [&str; 8] = [
    "a@x.lit", "b@x.lit", "c@y.lit", "d@y.lit", "e@z.lit", "f@z.lit", "g@x.lit", "h@y.lit",
];
const GROUPS: [&str; 4] = ["Family", "Work", "Club", "Band"];

fn request(rng: &mut ChaCha20Rng) -> Request {
    let jid = pick(rng, &JIDS).to_owned();
    match rng.next_u64() % 9 {
        0 | 1 => Request::AddContact {
            jid,
            name: Some(format!("N{}", rng.next_u64() % 5)),
            groups: vec![pick(rng, &GROUPS).to_owned()],
        },
        2 => Request::EditContact {
            jid,
            name: Some(format!("E{}", rng.next_u64() % 5)),
            clear_name: false,
            add_groups: vec![pick(rng, &GROUPS).to_owned()],
            remove_groups: vec![],
            add_jids: vec![],
            remove_jids: vec![],
            merge: false,
        },
        3 => Request::EditContact {
            // Links two contacts into one.
            jid,
            name: None,
            clear_name: false,
            add_groups: vec![],
            remove_groups: vec![],
            add_jids: vec![pick(rng, &JIDS).to_owned()],
            remove_jids: vec![],
            merge: true,
        },
        4 => Request::RemoveContact { jid },
        5 => Request::AddGroup {
            name: pick(rng, &GROUPS).to_owned(),
            description: None,
        },
        6 => Request::RenameGroup {
            name: pick(rng, &GROUPS).to_owned(),
            new_name: pick(rng, &GROUPS).to_owned(),
        },
        7 => Request::Contact { jid },
        _ => Request::Status,
    }
}

/// What a list says, without what differs between two devices (item and group ids).
fn summary(list: &Value) -> Vec<(Vec<String>, String, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        let mut s: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect();
        s.sort();
        s
    };
    let mut out: Vec<_> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                strings(&c["jids"]),
                c["name"].to_string(),
                strings(&c["groups"]),
            )
        })
        .collect();
    out.sort();
    out
}

fn inner(a: &kith_node::api::Answer) -> Value {
    a.payload_json()
}

/// An answer without what differs between two devices.
fn answer(v: &Result<kith_node::api::Answer, kith_node::api::Error>) -> String {
    let v = v.as_ref().map(inner);
    match &v {
        Ok(v) if v.get("device").is_some() => format!("status {} {}", v["contacts"], v["groups"]),
        Ok(v) if v.get("jids").is_some() => {
            format!("{:?}", summary(&Value::Array(vec![v.clone()])))
        }
        // A changed contact, said back: its content, not its item id or time.
        Ok(v) if v.get("contact").is_some_and(Value::is_object) => {
            format!(
                "done {:?}",
                summary(&Value::Array(vec![v["contact"].clone()]))
            )
        }
        Ok(v) => v.to_string(),
        Err(e) => format!("{:?} {}", e.kind, e.message),
    }
}

#[test]
fn commands_on_a_stopped_node_load_only_what_they_touch_and_agree_with_a_full_load() {
    for seed in 0..6u64 {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [a.path(), b.path()] {
            Device::init(dir, "romeo@montague.lit", "laptop").unwrap();
        }
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut partial_used = 0;
        for step in 0..60 {
            let req = request(&mut rng);
            let mut lean = match Device::open_for(
                a.path(),
                &req,
                kith_node::store::KeyFiles::clear(),
            )
            .unwrap()
            {
                Some(d) => {
                    partial_used += 1;
                    d
                }
                None => Device::open(a.path()).unwrap(),
            };
            let got = lean.handle(req.clone(), &NetInfo::default(), &mut |_, _| {});
            drop(lean);
            let mut full = Device::open(b.path()).unwrap();
            let want = full.handle(req.clone(), &NetInfo::default(), &mut |_, _| {});
            drop(full);
            assert_eq!(
                answer(&got),
                answer(&want),
                "seed {seed}, step {step}: {req:?}"
            );
            if step % 10 == 9 {
                let d = Device::open(a.path()).unwrap();
                assert_eq!(d.index_repairs(), 0, "seed {seed}, step {step}: {req:?}");
            }
        }
        assert!(
            partial_used > 20,
            "seed {seed}: the lean way answered {partial_used}"
        );
        let list = |dir: &std::path::Path| {
            let mut d = Device::open(dir).unwrap();
            inner(
                &d.handle(Request::Contacts, &NetInfo::default(), &mut |_, _| {})
                    .unwrap(),
            )
        };
        assert_eq!(
            summary(&list(a.path())),
            summary(&list(b.path())),
            "seed {seed}"
        );
        // The index says what the records say.
        let mut d = Device::open(a.path()).unwrap();
        assert_eq!(d.index_repairs(), 0, "seed {seed}: the index was right");
        assert!(d.index_matches_records().unwrap(), "seed {seed}");
        drop(d);
        // A wait on the stopped node loads no contact, and still says how many
        // contacts the device holds, as a full load's status counts them.
        let wait = Request::Wait {
            after: 0,
            timeout_ms: 0,
        };
        let mut lean = Device::open_for(a.path(), &wait, kith_node::store::KeyFiles::clear())
            .unwrap()
            .expect("a wait loads only what it touches");
        let waited = inner(
            &lean
                .handle(wait, &NetInfo::default(), &mut |_, _| {})
                .unwrap(),
        );
        drop(lean);
        let mut full = Device::open(a.path()).unwrap();
        let status = inner(
            &full
                .handle(Request::Status, &NetInfo::default(), &mut |_, _| {})
                .unwrap(),
        );
        assert!(
            status["contacts"].as_u64() > Some(0),
            "seed {seed}: {status}"
        );
        assert_eq!(
            waited["contacts"], status["contacts"],
            "seed {seed}: {waited}"
        );
    }
}
