//! Property: any set of records, delivered in any order, with duplicates, to any
//! number of replicas, gives identical record sets and identical contact views.

mod common;

use common::*;
use kith_protocol::clock::WallTime;
use kith_protocol::contacts::{Book, Command, ContactEdit, View};
use kith_protocol::item::{Contact, Identity, Payload};
use kith_protocol::record::{Body, Record};
use kith_protocol::seal::Opener;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

const JIDS: [&str; 6] = [
    "a@x.lit", "b@x.lit", "c@y.lit", "d@y.lit", "E@x.lit", "f@z.lit",
];
const NAMES: [&str; 3] = ["Ann", "Bob", "Cy"];
const GROUPS: [&str; 3] = ["Family", "Work", "Club"];
const DEVICES: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Add {
        dev: usize,
        j: usize,
        name: Option<usize>,
        group: Option<usize>,
    },
    Rename {
        dev: usize,
        j: usize,
        name: usize,
    },
    Join {
        dev: usize,
        j: usize,
        group: usize,
    },
    Leave {
        dev: usize,
        j: usize,
        group: usize,
    },
    Remove {
        dev: usize,
        j: usize,
    },
    RenameGroup {
        dev: usize,
        g: usize,
        to: usize,
    },
    RemoveGroup {
        dev: usize,
        g: usize,
    },
    Link {
        dev: usize,
        j1: usize,
        j2: usize,
    },
    Sync {
        from: usize,
        to: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let dev = 0..DEVICES;
    let j = 0..JIDS.len();
    prop_oneof![
        3 => (dev.clone(), j.clone(), proptest::option::of(0..NAMES.len()), proptest::option::of(0..GROUPS.len()))
            .prop_map(|(dev, j, name, group)| Op::Add { dev, j, name, group }),
        2 => (dev.clone(), j.clone(), 0..NAMES.len()).prop_map(|(dev, j, name)| Op::Rename { dev, j, name }),
        1 => (dev.clone(), j.clone(), 0..GROUPS.len()).prop_map(|(dev, j, group)| Op::Join { dev, j, group }),
        1 => (dev.clone(), j.clone(), 0..GROUPS.len()).prop_map(|(dev, j, group)| Op::Leave { dev, j, group }),
        1 => (dev.clone(), j.clone()).prop_map(|(dev, j)| Op::Remove { dev, j }),
        1 => (dev.clone(), 0..GROUPS.len(), 0..GROUPS.len()).prop_map(|(dev, g, to)| Op::RenameGroup { dev, g, to }),
        1 => (dev.clone(), 0..GROUPS.len()).prop_map(|(dev, g)| Op::RemoveGroup { dev, g }),
        1 => (dev.clone(), j.clone(), j).prop_map(|(dev, j1, j2)| Op::Link { dev, j1, j2 }),
        2 => (0..DEVICES, 0..DEVICES).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

fn edit(j: usize, edit: ContactEdit) -> Command {
    Command::EditContact {
        jid: jid(JIDS[j]),
        edit,
    }
}

fn command(op: &Op) -> Option<(usize, Command)> {
    Some(match *op {
        Op::Add {
            dev,
            j,
            name,
            group,
        } => (
            dev,
            Command::AddContact {
                jid: jid(JIDS[j]),
                name: name.map(|n| NAMES[n].to_owned()),
                groups: group.map(|g| GROUPS[g].to_owned()).into_iter().collect(),
            },
        ),
        Op::Rename { dev, j, name } => (
            dev,
            edit(
                j,
                ContactEdit {
                    name: Some(Some(NAMES[name].into())),
                    ..ContactEdit::default()
                },
            ),
        ),
        Op::Join { dev, j, group } => (
            dev,
            edit(
                j,
                ContactEdit {
                    add_groups: vec![GROUPS[group].into()],
                    ..ContactEdit::default()
                },
            ),
        ),
        Op::Leave { dev, j, group } => (
            dev,
            edit(
                j,
                ContactEdit {
                    remove_groups: vec![GROUPS[group].into()],
                    ..ContactEdit::default()
                },
            ),
        ),
        Op::Remove { dev, j } => (dev, Command::RemoveContact { jid: jid(JIDS[j]) }),
        Op::RenameGroup { dev, g, to } => (
            dev,
            Command::RenameGroup {
                name: GROUPS[g].into(),
                new_name: format!("{}2", GROUPS[to]),
            },
        ),
        Op::RemoveGroup { dev, g } => (
            dev,
            Command::RemoveGroup {
                name: GROUPS[g].into(),
            },
        ),
        Op::Link { dev, j1, j2 } => (
            dev,
            Command::Import {
                contacts: vec![Contact {
                    identities: vec![
                        Identity::new("jid", JIDS[j1]).ok()?,
                        Identity::new("jid", JIDS[j2]).ok()?,
                    ],
                    ..Contact::default()
                }],
                replace: false,
            },
        ),
        Op::Sync { .. } => return None,
    })
}

fn small_fleet(seed: u64) -> Fleet {
    let mut f = Fleet::new(DEVICES, seed);
    for b in &mut f.books {
        // Small padding buckets keep the record count, and so the test, small.
        b.editor_mut().count_bucket = 4;
    }
    f
}

/// Runs the ops; returns every record ever produced.
fn run(f: &mut Fleet, ops: &[Op]) -> Vec<Record> {
    let mut pool = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let now = WallTime(T0.0 + 10 * i as u64);
        match command(op) {
            Some((dev, cmd)) => {
                // Commands that do not apply (contact missing, group exists) are refused; fine.
                if let Ok(records) = f.books[dev].execute(cmd, now, &mut f.rngs[dev]) {
                    pool.extend(records);
                }
            }
            None => {
                if let Op::Sync { from, to } = *op
                    && from != to
                {
                    f.sync(from, to, now);
                }
            }
        }
    }
    pool
}

fn deliver(
    book: &mut Book,
    pool: &[Record],
    roster: &std::collections::BTreeSet<kith_protocol::record::DeviceId>,
    seed: u64,
) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..pool.len()).collect();
    // Fisher–Yates, then duplicate roughly one record in four.
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let dups: Vec<usize> = order
        .iter()
        .copied()
        .filter(|_| rng.next_u32() % 4 == 0)
        .collect();
    order.extend(dups);
    let now = WallTime(T0.0 + 1_000_000);
    for (n, i) in order.into_iter().enumerate() {
        book.receive(pool[i].clone(), roster, now)
            .expect("every record is by a roster device");
        // Look at the view now and then, so that it is kept up step by step.
        if rng.next_u32() % 3 == 0 || n == 0 {
            book.view();
        }
    }
}

fn snapshot(book: &mut Book) -> (Vec<Record>, View) {
    (
        book.replica().records().cloned().collect(),
        book.view().clone(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_whatever_the_delivery(
        ops in prop::collection::vec(op(), 1..30),
        orders in prop::collection::vec(any::<u64>(), 2..5),
        seed in 0u64..1000,
    ) {
        let mut f = small_fleet(seed);
        let pool = run(&mut f, &ops);
        let keyring = f.books[0].keyring().clone();
        let mut expected = None;
        // The fresh books share records and reads the way the simulator's devices
        // do; the fleet's books below do not, and must come out the same.
        let reads = kith_protocol::contacts::Reads::default();
        let verified = kith_protocol::record::Verified::interning(1 << 16);
        for (k, order) in orders.iter().enumerate() {
            let key = ed25519_dalek::SigningKey::from_bytes(&[100 + k as u8; 32]);
            let mut fresh = Book::new(key, keyring.clone());
            fresh.share_reads(reads.clone());
            fresh.share_verified(verified.clone());
            deliver(&mut fresh, &pool, &f.roster, *order);
            let snap = snapshot(&mut fresh);
            match &expected {
                None => expected = Some(snap),
                Some(e) => prop_assert_eq!(e, &snap),
            }
        }
        let expected = expected.expect("at least two orders");
        for d in 0..DEVICES {
            let roster = f.roster.clone();
            deliver(&mut f.books[d], &pool, &roster, d as u64);
            prop_assert_eq!(&expected, &snapshot(&mut f.books[d]));
        }
        // The view is a function of the payloads, not of their order.
        let view = &expected.1;
        for c in view.contacts() {
            prop_assert_eq!(c.id, c.members().map(|m| m.0).min().expect("members"));
        }
        // The view kept up step by step is the view built from scratch.
        for d in 0..DEVICES {
            let book = &mut f.books[d];
            let built = View::build(book.replica(), &book.keyring().clone(), &mut Opener::new());
            prop_assert_eq!(&built, book.view());
        }
    }

    #[test]
    fn view_does_not_depend_on_payload_order(ops in prop::collection::vec(op(), 1..20), shuffle in any::<u64>()) {
        let mut f = small_fleet(shuffle % 7);
        run(&mut f, &ops);
        f.sync_all(WallTime(T0.0 + 1_000_000));
        let view = f.books[0].view().clone();
        let mut opener = Opener::new();
        let keyring = f.books[0].keyring().clone();
        let mut payloads: Vec<_> = f.books[0].replica().records().filter_map(|r| {
            let Body::Sealed(sealed) = &r.body else { return None };
            let text = opener.open(sealed, &keyring).ok()?;
            let node = r.space.node().expect("sealed records belong to a node");
            Some((node, r.item, r.version, Payload::parse(&text).ok()?))
        }).collect();
        let mut rng = ChaCha20Rng::seed_from_u64(shuffle);
        for i in (1..payloads.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            payloads.swap(i, j);
        }
        let rebuilt = View::from_payloads(payloads);
        prop_assert!(view.contacts().eq(rebuilt.contacts()));
        prop_assert_eq!(view.groups(), rebuilt.groups());
    }
}

/// Found by the property above: two devices add the same JID apart; one merges the
/// two items into one under the smaller contact id, the other rewrites its own item
/// (an edit that changes nothing), and the first deletes the contact. The rewrite
/// carries an id only the merged item remembered (as an alias): the deletion names
/// it, so every replica, whatever it saw first, agrees that the contact is gone.
#[test]
fn a_rewrite_of_an_item_merged_under_another_id_stays_deleted() {
    let ops = vec![
        Op::Add {
            dev: 2,
            j: 3,
            name: None,
            group: None,
        },
        Op::Add {
            dev: 0,
            j: 3,
            name: None,
            group: Some(1),
        },
        Op::Sync { from: 0, to: 2 },
        Op::RemoveGroup { dev: 2, g: 1 },
        Op::Add {
            dev: 0,
            j: 0,
            name: None,
            group: Some(2),
        },
        Op::Leave {
            dev: 0,
            j: 3,
            group: 2,
        },
        Op::Remove { dev: 2, j: 3 },
    ];
    let mut f = small_fleet(342);
    let pool = run(&mut f, &ops);
    let keyring = f.books[0].keyring().clone();
    let mut fresh = Book::new(ed25519_dalek::SigningKey::from_bytes(&[100; 32]), keyring);
    deliver(&mut fresh, &pool, &f.roster, 0);
    let expected = snapshot(&mut fresh);
    let jid = kith_protocol::jid::BareJid::parse(JIDS[3]).expect("a JID");
    assert!(
        expected.1.contact_by_jid(&jid).is_none(),
        "the deleted contact is back"
    );
    for d in 0..DEVICES {
        let roster = f.roster.clone();
        deliver(&mut f.books[d], &pool, &roster, d as u64);
        assert_eq!(expected, snapshot(&mut f.books[d]), "device {d}");
    }
}
