//! The floors `kith bench` measures in the same run, so that each figure is also a
//! ratio to what no implementation on this machine can beat: a durable SQLite
//! commit, one Ed25519 signature and one verification of a record, a contact's
//! payload sealed and opened (XEP-0473: every item is sealed, and read to be
//! merged), a record stored durably among many, a loopback TCP round trip; and,
//! from them, the least processor time a contact of a large sync takes
//! ([`Floors::chain_us`], [`Floors::new_device_us`]) and the least time the sync can
//! take on this machine's cores ([`Floors::chain`], [`Floors::new_device`]).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use ed25519_dalek::SigningKey;
use kith_protocol::clock::{Hlc, WallTime};
use kith_protocol::contacts::{Book, Command};
use kith_protocol::item::{NodeKind, Payload};
use kith_protocol::jid::BareJid;
use kith_protocol::record::{Body, ItemId, Record, Space, Verified};
use kith_protocol::seal::{self, Keyring, Opener, Sealed, Secret};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

/// Medians of the floors, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Floors {
    /// One row inserted and committed in SQLite (WAL, `synchronous=FULL`, as the
    /// store): the price of "durable".
    pub(crate) durable_commit_us: f64,
    /// One record's Ed25519 signature checked alone (a contact-sized record), as
    /// a record received by gossip is.
    pub(crate) verify_us: f64,
    /// One record's signature checked in a batch of [`BATCH`] by one author
    /// (`Verified::verify_all`), as the records of a large frame are.
    pub(crate) verify_batched_us: f64,
    /// One byte to a loopback TCP peer and back (`TCP_NODELAY`).
    pub(crate) loopback_round_trip_us: f64,
    /// One record signed (Ed25519, a contact-sized record), as every written record
    /// is.
    pub(crate) sign_us: f64,
    /// One contact-sized record stored among [`BULK`] in one durable transaction
    /// (a table with a unique key, as the store's records): the least a device
    /// pays to keep a record it received or wrote in bulk.
    pub(crate) stored_record_us: f64,
    /// One contact's payload written out and sealed (XEP-0473, as kith seals it:
    /// padded, one SHA-256 S2K, AES-256), as a device writing a contact does.
    pub(crate) seal_us: f64,
    /// One sealed contact opened and its payload parsed, as a device receiving it
    /// does before it can merge it.
    pub(crate) open_us: f64,
    /// The processor cores the work can spread over.
    pub(crate) cores: usize,
}

/// Records stored per transaction by the bulk floor.
pub(crate) const BULK: usize = 2_000;

impl Floors {
    /// The lower of each floor in `self` and `other` (two measures of the same
    /// machine: what it can do at best, when nothing else slowed it).
    pub(crate) fn lower(self, other: Floors) -> Floors {
        Floors {
            durable_commit_us: self.durable_commit_us.min(other.durable_commit_us),
            verify_us: self.verify_us.min(other.verify_us),
            verify_batched_us: self.verify_batched_us.min(other.verify_batched_us),
            loopback_round_trip_us: self
                .loopback_round_trip_us
                .min(other.loopback_round_trip_us),
            sign_us: self.sign_us.min(other.sign_us),
            stored_record_us: self.stored_record_us.min(other.stored_record_us),
            seal_us: self.seal_us.min(other.seal_us),
            open_us: self.open_us.min(other.open_us),
            cores: self.cores,
        }
    }

    /// The processor time, in µs, that one contact written on one device and
    /// received by two others takes at least: sealed and signed once, checked and
    /// opened on both receivers, stored on all three (merging, indexing, the
    /// history and the network cost nothing here).
    pub(crate) fn chain_us(&self) -> f64 {
        self.seal_us
            + self.sign_us
            + 2.0 * (self.verify_batched_us + self.open_us)
            + 3.0 * self.stored_record_us
    }

    /// The least time, in ms, in which `n` contacts written on one device can reach
    /// two others on these cores: [`Floors::chain_us`] each, spread perfectly over
    /// the cores.
    pub(crate) fn chain(&self, n: usize) -> f64 {
        n as f64 * self.chain_us() / self.cores.max(1) as f64 / 1000.0
    }

    /// The processor time, in µs, that a new device takes at least for one
    /// contact: checked, opened and stored.
    pub(crate) fn new_device_us(&self) -> f64 {
        self.verify_batched_us + self.open_us + self.stored_record_us
    }

    /// The least time, in ms, in which a new device can take in `n` contacts on
    /// these cores: [`Floors::new_device_us`] each, spread perfectly over the cores.
    pub(crate) fn new_device(&self, n: usize) -> f64 {
        n as f64 * self.new_device_us() / self.cores.max(1) as f64 / 1000.0
    }
}

pub(crate) fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times
        .get(times.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Measures the floors (a second or so), with a scratch database in `dir`.
pub(crate) fn measure(dir: &Path) -> Result<Floors> {
    let mut sealed = Sealing::new()?;
    Ok(Floors {
        durable_commit_us: durable_commit(dir, 200)?,
        verify_us: verify(2_000)?,
        verify_batched_us: verify_batched(8)?,
        loopback_round_trip_us: round_trip(2_000)?,
        sign_us: sign(2_000),
        stored_record_us: stored_record(dir, 5)?,
        seal_us: sealed.seal(2_000)?,
        open_us: sealed.open(2_000)?,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

fn durable_commit(dir: &Path, n: usize) -> Result<f64> {
    let mut commits = Commits::open(dir)?;
    let times = (0..n).map(|_| commits.one()).collect::<Result<Vec<_>>>()?;
    Ok(median(times))
}

/// A scratch database committed to one row at a time, as [`Floors`] measures a
/// durable commit (also after a pause: `kith bench`'s paced edits).
pub(crate) struct Commits {
    conn: rusqlite::Connection,
    row: Vec<u8>,
    next: i64,
}

impl Commits {
    /// Creates the database in `dir` (a second open takes the next file).
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut path = dir.join("floor.db");
        let mut n = 0;
        while path.exists() {
            n += 1;
            path = dir.join(format!("floor{n}.db"));
        }
        let conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")?;
        Ok(Self {
            conn,
            row: vec![7u8; 600],
            next: 0,
        })
    }

    /// One row inserted and committed: how long it took.
    pub(crate) fn one(&mut self) -> Result<Duration> {
        let start = Instant::now();
        self.conn.execute(
            "INSERT INTO t (k, v) VALUES (?1, ?2)",
            (self.next, &self.row),
        )?;
        self.next += 1;
        Ok(start.elapsed())
    }
}

/// A contact-sized record, signed.
fn record(key: &SigningKey) -> Record {
    record_at(key, 1)
}

/// A contact-sized record by `key`, stamped `wall_ms` (records of distinct stamps
/// are distinct records).
fn record_at(key: &SigningKey, wall_ms: u64) -> Record {
    Record::sign(
        Space::Contacts,
        ItemId([1; 16]),
        Hlc {
            wall_ms,
            counter: 0,
        },
        Body::Data(vec![5; 300]),
        key,
    )
}

fn sign(n: usize) -> f64 {
    let key = SigningKey::from_bytes(&[9; 32]);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        std::hint::black_box(record(&key));
        times.push(start.elapsed());
    }
    median(times)
}

/// The median over `batches` of [`BULK`] records inserted in one transaction and
/// committed durably, per record.
fn stored_record(dir: &Path, batches: usize) -> Result<f64> {
    std::fs::create_dir_all(dir)?;
    let conn = rusqlite::Connection::open(dir.join("bulk.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE r (k INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, v BLOB NOT NULL)",
    )?;
    let key = SigningKey::from_bytes(&[9; 32]);
    let bytes = record(&key).encode();
    let mut times = Vec::with_capacity(batches);
    let mut next: u64 = 0;
    for _ in 0..batches {
        let start = Instant::now();
        let tx = conn.unchecked_transaction()?;
        {
            let mut put = tx.prepare_cached("INSERT INTO r (key, v) VALUES (?1, ?2)")?;
            for _ in 0..BULK {
                // Keys in no particular order, as item ids are.
                next += 1;
                let k = next.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
                put.execute((&k[..], &bytes))?;
            }
        }
        tx.commit()?;
        times.push(start.elapsed() / BULK as u32);
    }
    Ok(median(times))
}

/// A contact as `kith bench` imports them (a name, a JID, a group), written by a
/// device with its stamps, and the secret its node's items are sealed with.
struct Sealing {
    payload: Payload,
    sealed: Sealed,
    keyring: Keyring,
    rng: ChaCha20Rng,
}

impl Sealing {
    fn new() -> Result<Self> {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let now = WallTime(1_700_000_000_000);
        let mut keyring = Keyring::new();
        for node in NodeKind::ALL {
            keyring.insert(Secret::generate(node, now, &mut rng));
        }
        let mut book = Book::new(SigningKey::from_bytes(&[9; 32]), keyring.clone());
        let records = book.execute(
            Command::AddContact {
                jid: BareJid::parse("c1-s0@example.org")?,
                name: Some("Contact 1".into()),
                groups: vec!["G1".into()],
            },
            now,
            &mut rng,
        )?;
        // The contact itself, not the placeholders its node is padded with.
        let mut opener = Opener::new();
        let (sealed, payload) = records
            .iter()
            .filter(|r| r.space == Space::Contacts)
            .find_map(|r| {
                let Body::Sealed(s) = &r.body else {
                    return None;
                };
                let text = opener.open(s, &keyring).ok()?;
                match Payload::parse(&text).ok()? {
                    p @ Payload::Contact(_) => Some((s.clone(), p)),
                    _ => None,
                }
            })
            .ok_or_else(|| anyhow::anyhow!("adding a contact wrote no sealed contact"))?;
        Ok(Self {
            payload,
            sealed,
            keyring,
            rng,
        })
    }

    /// The median time of the payload written out and sealed.
    fn seal(&mut self, n: usize) -> Result<f64> {
        let secret = self
            .keyring
            .current(NodeKind::Contacts)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no secret for contacts"))?;
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            std::hint::black_box(seal::seal(
                &self.payload.to_xml(),
                &secret,
                seal::DEFAULT_PAD_BUCKET,
                &mut self.rng,
            ));
            times.push(start.elapsed());
        }
        Ok(median(times))
    }

    /// The median time of the sealed contact opened and its payload parsed.
    fn open(&self, n: usize) -> Result<f64> {
        let mut opener = Opener::new();
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            let text = opener.open(&self.sealed, &self.keyring)?;
            std::hint::black_box(Payload::parse(&text)?);
            times.push(start.elapsed());
        }
        Ok(median(times))
    }
}

fn verify(n: usize) -> Result<f64> {
    let key = SigningKey::from_bytes(&[9; 32]);
    let record = record(&key);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        record.verify()?;
        times.push(start.elapsed());
    }
    Ok(median(times))
}

/// Records checked together by the batched verification floor: about what a
/// checking thread is given of a large frame.
pub(crate) const BATCH: usize = 512;

/// The median over `rounds` of [`BATCH`] distinct records by one author checked
/// together, per record.
fn verify_batched(rounds: usize) -> Result<f64> {
    let key = SigningKey::from_bytes(&[9; 32]);
    let records: Vec<Record> = (0..BATCH as u64).map(|i| record_at(&key, 1 + i)).collect();
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // A new set each round: a remembered signature is not checked again.
        let verified = Verified::new();
        let start = Instant::now();
        let answers = verified.verify_all(&records);
        times.push(start.elapsed() / BATCH as u32);
        if let Some(Err(e)) = answers.into_iter().find(Result::is_err) {
            return Err(e.into());
        }
    }
    Ok(median(times))
}

fn round_trip(n: usize) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut b = [1u8; 1];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
        times.push(start.elapsed());
    }
    drop(s);
    // The echo thread ends when the stream closes.
    let _ = echo.join();
    Ok(median(times))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sealing floor times the real thing: a contact as kith writes it, whose
    /// sealed form opens to the same payload, and which sealing again changes (a
    /// fresh salt and IV each time).
    #[test]
    fn the_sealing_floor_seals_and_opens_a_real_contact() {
        let mut s = Sealing::new().expect("a contact written");
        let Payload::Contact(c) = &s.payload else {
            panic!("not a contact: {:?}", s.payload);
        };
        assert_eq!(c.name.as_deref(), Some("Contact 1"));
        let text = Opener::new().open(&s.sealed, &s.keyring).expect("it opens");
        assert_eq!(Payload::parse(&text).expect("it reads"), s.payload);
        let secret = s
            .keyring
            .current(NodeKind::Contacts)
            .cloned()
            .expect("a contacts secret");
        let again = seal::seal(
            &s.payload.to_xml(),
            &secret,
            seal::DEFAULT_PAD_BUCKET,
            &mut s.rng,
        );
        assert_ne!(again.data, s.sealed.data);
        let text = Opener::new().open(&again, &s.keyring).expect("it opens");
        assert_eq!(Payload::parse(&text).expect("it reads"), s.payload);
        assert!(s.seal(3).expect("sealed") > 0.0);
        assert!(s.open(3).expect("opened") > 0.0);
    }

    /// A large row's floor is each step of the work once per device that does it.
    #[test]
    fn a_rows_floor_counts_each_step_on_each_device() {
        let f = Floors {
            durable_commit_us: 100.0,
            verify_us: 40.0,
            verify_batched_us: 10.0,
            loopback_round_trip_us: 10.0,
            sign_us: 20.0,
            stored_record_us: 2.0,
            seal_us: 1.0,
            open_us: 3.0,
            cores: 2,
        };
        assert_eq!(f.chain_us(), 1.0 + 20.0 + 2.0 * (10.0 + 3.0) + 3.0 * 2.0);
        assert_eq!(f.chain(1000), 1000.0 * f.chain_us() / 2.0 / 1000.0);
        assert_eq!(f.new_device_us(), 10.0 + 3.0 + 2.0);
        assert_eq!(f.new_device(10), 10.0 * 15.0 / 2.0 / 1000.0);
        let lower = f.lower(Floors {
            open_us: 2.0,
            seal_us: 5.0,
            ..f
        });
        assert_eq!((lower.open_us, lower.seal_us), (2.0, 1.0));
    }
}
