//! Benchmarks of kith-protocol's hot paths. Run in release:
//! `cargo bench -p kith-protocol --bench protocol`.
#![allow(missing_docs)]

use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use kith_protocol::clock::WallTime;
use kith_protocol::contacts::{Book, Command, ContactEdit, View};
use kith_protocol::item::{Contact, Identity, NodeKind, Payload};
use kith_protocol::record::{Record, Space};
use kith_protocol::seal::{self, Keyring, Opener, Secret};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const CONTACT: &str = "<contact xmlns='urn:xmpp:contacts:0' name='Juliet Capulet'>\
    <identity type='jid'>juliet@capulet.lit</identity><group id='g-0011223344556677'/>\
    <group id='g-8899aabbccddeeff'/></contact>";

fn item(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let secret = Secret::generate(NodeKind::Contacts, WallTime(0), &mut rng);
    let mut keyring = Keyring::new();
    keyring.insert(secret.clone());
    let sealed = seal::seal(CONTACT, &secret, seal::DEFAULT_PAD_BUCKET, &mut rng);
    let mut opener = Opener::new();
    c.bench_function("seal one contact", |b| {
        b.iter(|| {
            seal::seal(
                black_box(CONTACT),
                &secret,
                seal::DEFAULT_PAD_BUCKET,
                &mut rng,
            )
        })
    });
    c.bench_function("open one contact", |b| {
        b.iter(|| opener.open(black_box(&sealed), &keyring))
    });
    c.bench_function("seal + open one contact", |b| {
        b.iter(|| {
            let s = seal::seal(
                black_box(CONTACT),
                &secret,
                seal::DEFAULT_PAD_BUCKET,
                &mut rng,
            );
            opener.open(&s, &keyring)
        })
    });
    c.bench_function("parse one contact", |b| {
        b.iter(|| Payload::parse(black_box(CONTACT)))
    });
    let payload = Payload::parse(CONTACT).expect("valid");
    c.bench_function("serialize one contact", |b| {
        b.iter(|| black_box(&payload).to_xml())
    });
    let key = SigningKey::from_bytes(&[7; 32]);
    let record = Record::sign(
        NodeKind::Contacts,
        kith_protocol::record::ItemId([1; 16]),
        kith_protocol::clock::Hlc {
            wall_ms: 1,
            counter: 0,
        },
        kith_protocol::record::Body::Sealed(sealed.clone()),
        &key,
    );
    c.bench_function("verify one record", |b| {
        b.iter(|| black_box(&record).verify())
    });
    let bytes = record.encode();
    c.bench_function("decode one record", |b| {
        b.iter(|| Record::decode(black_box(&bytes)))
    });
}

fn view(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut keyring = Keyring::new();
    for node in NodeKind::ALL {
        keyring.insert(Secret::generate(node, WallTime(0), &mut rng));
    }
    let mut book = Book::new(SigningKey::from_bytes(&[3; 32]), keyring.clone());
    // 10,000 contacts in 20 groups, a tenth of them duplicated under a second item.
    let contacts: Vec<Contact> = (0..9_000)
        .map(|i| Contact {
            name: Some(format!("Contact {i}")),
            identities: vec![Identity::new("jid", &format!("user{i}@example.org")).expect("valid")],
            groups: vec![kith_protocol::item::GroupRef {
                id: format!("Group {}", i % 20),
                extra: Default::default(),
            }],
            ..Contact::default()
        })
        .collect();
    book.execute(
        Command::Import {
            contacts,
            replace: false,
        },
        WallTime(1),
        &mut rng,
    )
    .expect("import");
    let mut other = Book::new(SigningKey::from_bytes(&[4; 32]), keyring.clone());
    let dups: Vec<Contact> = (0..1_000)
        .map(|i| Contact {
            identities: vec![
                Identity::new("jid", &format!("user{}@example.org", i * 9)).expect("valid"),
            ],
            ..Contact::default()
        })
        .collect();
    let extra = other
        .execute(
            Command::Import {
                contacts: dups,
                replace: false,
            },
            WallTime(2),
            &mut rng,
        )
        .expect("import");
    let roster: BTreeSet<_> = [book.device(), other.device()].into_iter().collect();
    for r in extra {
        book.receive(r, &roster, WallTime(3)).expect("trusted");
    }
    let replica = book.replica().clone();
    let contact_records = replica.space(NodeKind::Contacts).count();
    eprintln!(
        "view benchmark: {} records ({contact_records} on the contacts node)",
        replica.len()
    );
    let mut group = c.benchmark_group("merged view");
    group.sample_size(10);
    group.bench_function("10k records, opening every item", |b| {
        b.iter(|| View::build(black_box(&replica), &keyring, &mut Opener::new()))
    });
    let view = View::build(&replica, &keyring, &mut Opener::new());
    assert_eq!(view.contact_count(), 9_000);
    // A new device receiving them as the node does: in frames of 1,256 records,
    // checked and opened beforehand (on other threads there), the view brought up
    // to date after each frame. What is left is the device thread's apply and merge.
    let mut records: Vec<Record> = replica.records().cloned().collect();
    // In the order a peer sends them: the roster, the secrets, the groups, then the
    // contacts (`sync::engine`'s send order).
    let rank = |s: Space| {
        [Space::Roster, Space::Keys, Space::Groups, Space::Contacts]
            .iter()
            .position(|o| *o == s)
    };
    records.sort_by_key(|r| rank(r.space));
    let verified = kith_protocol::record::Verified::new();
    assert!(verified.verify_all(&records).iter().all(Result::is_ok));
    let mut opener = Opener::new();
    // Each record's payload (for those with one), in the records' order.
    let opened: Vec<Option<kith_protocol::contacts::Opened>> = records
        .iter()
        .map(|r| {
            let (Some(node), kith_protocol::record::Body::Sealed(sealed)) =
                (r.space.node(), &r.body)
            else {
                return None;
            };
            let payload = Payload::parse(&opener.open(sealed, &keyring).ok()?).ok()?;
            payload.check_node(node).ok()?;
            Some(kith_protocol::contacts::Opened {
                item: r.item,
                version: r.version,
                signature: r.signature,
                payload,
            })
        })
        .collect();
    group.bench_function(
        "10k records received in frames, checked and opened before",
        |b| {
            b.iter_batched(
                || (records.clone(), opened.clone()),
                |(records, opened)| {
                    let mut new = Book::new(SigningKey::from_bytes(&[5; 32]), keyring.clone());
                    new.share_verified(verified.clone());
                    let (mut records, mut opened) = (records.into_iter(), opened.into_iter());
                    while records.len() > 0 {
                        new.offer(opened.by_ref().take(1_256).flatten().collect());
                        for r in records.by_ref().take(1_256) {
                            new.receive(r, &roster, WallTime(4)).expect("trusted");
                        }
                        black_box(new.view().contact_count());
                    }
                    assert_eq!(new.view().contact_count(), 9_000);
                },
                criterion::BatchSize::LargeInput,
            )
        },
    );
    // One edit on a list of 9,000 contacts: the command, then the view kept up.
    book.view();
    let jid = kith_protocol::jid::BareJid::parse("user18@example.org").expect("valid");
    let mut n = 0u64;
    group.bench_function("one edit on 9k contacts, view kept up", |b| {
        b.iter(|| {
            n += 1;
            let edit = ContactEdit {
                name: Some(Some(format!("name {n}"))),
                ..ContactEdit::default()
            };
            book.execute(
                Command::EditContact {
                    jid: jid.clone(),
                    edit,
                },
                WallTime(10 + n),
                &mut rng,
            )
            .expect("edit");
            black_box(book.view().contact_count())
        })
    });
    group.finish();
}

criterion_group!(benches, item, view);
criterion_main!(benches);
