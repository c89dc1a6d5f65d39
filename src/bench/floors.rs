//! The floors `kith bench` measures in the same run, so that each figure is also a
//! ratio to what no implementation on this machine can beat: a durable SQLite
//! commit, one Ed25519 signature and one verification of a record, a record stored
//! durably among many, a loopback TCP round trip; and, from them, the least
//! processor time a large sync can take on this machine's cores ([`Floors::chain`],
//! [`Floors::new_device`]).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use ed25519_dalek::SigningKey;
use kith_protocol::clock::Hlc;
use kith_protocol::record::{Body, ItemId, Record, Space};
use serde::Serialize;

/// Medians of the floors, in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Floors {
    /// One row inserted and committed in SQLite (WAL, `synchronous=FULL`, as the
    /// store): the price of "durable".
    pub(crate) durable_commit_us: f64,
    /// One record's Ed25519 signature checked (`verify_strict`, a contact-sized
    /// record), as every received record is.
    pub(crate) verify_us: f64,
    /// One byte to a loopback TCP peer and back (`TCP_NODELAY`).
    pub(crate) loopback_round_trip_us: f64,
    /// One record signed (Ed25519, a contact-sized record), as every written record
    /// is.
    pub(crate) sign_us: f64,
    /// One contact-sized record stored among [`BULK`] in one durable transaction
    /// (a table with a unique key, as the store's records): the least a device
    /// pays to keep a record it received or wrote in bulk.
    pub(crate) stored_record_us: f64,
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
            loopback_round_trip_us: self
                .loopback_round_trip_us
                .min(other.loopback_round_trip_us),
            sign_us: self.sign_us.min(other.sign_us),
            stored_record_us: self.stored_record_us.min(other.stored_record_us),
            cores: self.cores,
        }
    }

    /// The least time, in ms, in which `n` contacts written on one device can reach
    /// two others on these cores: each signed once and stored on all three, checked
    /// on both receivers, all of it spread perfectly over the cores (sealing,
    /// merging, indexing and the network cost nothing here).
    pub(crate) fn chain(&self, n: usize) -> f64 {
        let per_contact = self.sign_us + 2.0 * self.verify_us + 3.0 * self.stored_record_us;
        n as f64 * per_contact / self.cores.max(1) as f64 / 1000.0
    }

    /// The least time, in ms, in which a new device can take in `n` contacts on
    /// these cores: each checked and stored, spread perfectly over the cores.
    pub(crate) fn new_device(&self, n: usize) -> f64 {
        n as f64 * (self.verify_us + self.stored_record_us) / self.cores.max(1) as f64 / 1000.0
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
    Ok(Floors {
        durable_commit_us: durable_commit(dir, 200)?,
        verify_us: verify(2_000)?,
        loopback_round_trip_us: round_trip(2_000)?,
        sign_us: sign(2_000),
        stored_record_us: stored_record(dir, 5)?,
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
    Record::sign(
        Space::Contacts,
        ItemId([1; 16]),
        Hlc {
            wall_ms: 1,
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
