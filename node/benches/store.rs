//! Benchmarks of the store's hot paths. Run in release:
//! `cargo bench -p kith-node --bench store`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use kith_node::store::Store;
use kith_protocol::clock::Hlc;
use kith_protocol::record::{Body, ItemId, Record, Space};
use kith_protocol::seal::Sealed;

/// Records in one frame of a new device's sync.
const FRAME: usize = 1_256;

/// Contacts the store holds before the measured frames.
const HELD: usize = 10_000;

/// `n` sealed contacts (about the size of the bench's), items `from..from + n`.
fn contacts(key: &SigningKey, from: usize, n: usize) -> Vec<Record> {
    (from..from + n)
        .map(|i| {
            // Item ids in no particular order, as random ids are.
            let mut item = [0; 16];
            item[..8]
                .copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
            Record::sign(
                Space::Contacts,
                ItemId(item),
                Hlc {
                    wall_ms: 1_700_000_000_000 + i as u64,
                    counter: 0,
                },
                Body::Sealed(Sealed {
                    key: "k1".into(),
                    data: vec![i as u8; 330],
                }),
                key,
            )
        })
        .collect()
}

fn persist(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let held = tempfile::tempdir().expect("a temporary directory");
    {
        let mut store = Store::open(held.path()).expect("a new store");
        store.persist(&contacts(&key, 0, HELD)).expect("stored");
    }
    let frame = contacts(&key, HELD, FRAME);
    c.bench_function(
        "a frame of 1256 new contacts stored durably among 10000",
        |b| {
            b.iter_batched(
                || {
                    // The same store each time: a copy of the one holding 10,000.
                    let dir = tempfile::tempdir().expect("a temporary directory");
                    std::fs::copy(held.path().join("kith.db"), dir.path().join("kith.db"))
                        .expect("copied");
                    let store = Store::open(dir.path()).expect("the copy opens");
                    (dir, store)
                },
                |(dir, mut store)| {
                    store.persist(black_box(&frame)).expect("stored");
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = persist
}
criterion_main!(benches);
