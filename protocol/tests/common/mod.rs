//! Shared fixtures for kith-protocol's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use kith_protocol::clock::WallTime;
use kith_protocol::contacts::{Book, Command, ContactEdit};
use kith_protocol::item::NodeKind;
use kith_protocol::jid::BareJid;
use kith_protocol::record::DeviceId;
use kith_protocol::seal::{Keyring, Secret};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub const T0: WallTime = WallTime(1_780_000_000_000);

pub fn jid(s: &str) -> BareJid {
    BareJid::parse(s).expect("valid test JID")
}

pub fn keyring(seed: u64) -> Keyring {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut k = Keyring::new();
    for node in NodeKind::ALL {
        k.insert(Secret::generate(node, T0, &mut rng));
    }
    k
}

pub struct Fleet {
    pub books: Vec<Book>,
    pub rngs: Vec<ChaCha20Rng>,
    pub roster: BTreeSet<DeviceId>,
}

impl Fleet {
    pub fn new(n: usize, seed: u64) -> Self {
        let ring = keyring(seed);
        let books: Vec<Book> = (0..n)
            .map(|i| Book::new(SigningKey::from_bytes(&[i as u8 + 1; 32]), ring.clone()))
            .collect();
        let roster = books.iter().map(Book::device).collect();
        let rngs = (0..n)
            .map(|i| ChaCha20Rng::seed_from_u64(seed * 100 + i as u64))
            .collect();
        Self {
            books,
            rngs,
            roster,
        }
    }

    pub fn exec(
        &mut self,
        device: usize,
        cmd: Command,
        now: WallTime,
    ) -> Vec<kith_protocol::record::Record> {
        self.books[device]
            .execute(cmd, now, &mut self.rngs[device])
            .expect("command succeeds")
    }

    /// Sends every record of `from` to `to`.
    pub fn sync(&mut self, from: usize, to: usize, now: WallTime) {
        let records: Vec<_> = self.books[from].replica().records().cloned().collect();
        for r in records {
            self.books[to]
                .receive(r, &self.roster, now)
                .expect("trusted record");
        }
    }

    pub fn sync_all(&mut self, now: WallTime) {
        for a in 0..self.books.len() {
            for b in 0..self.books.len() {
                if a != b {
                    self.sync(a, b, now);
                }
            }
        }
    }
}

pub fn add(jid_: &str, name: Option<&str>, groups: &[&str]) -> Command {
    Command::AddContact {
        jid: jid(jid_),
        name: name.map(str::to_owned),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

pub fn edit_name(jid_: &str, name: &str) -> Command {
    Command::EditContact {
        jid: jid(jid_),
        edit: ContactEdit {
            name: Some(Some(name.to_owned())),
            ..ContactEdit::default()
        },
    }
}
