//! The floors `kith bench` measures in the same run, so that each figure is also a
//! ratio to what no implementation on this machine can beat: a durable SQLite
//! commit, one Ed25519 verification of a record, a loopback TCP round trip.

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

fn verify(n: usize) -> Result<f64> {
    let key = SigningKey::from_bytes(&[9; 32]);
    let record = Record::sign(
        Space::Contacts,
        ItemId([1; 16]),
        Hlc {
            wall_ms: 1,
            counter: 0,
        },
        Body::Data(vec![5; 300]),
        &key,
    );
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
