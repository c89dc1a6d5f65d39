//! What a device holds per contact, counted by a counting allocator (bytes asked
//! for, without the allocator's own overhead): the records and the merged view of
//! an imported roster, and one contact as parsed from XML and from the item index's
//! binary form. Prints the figures (`cargo test -p kith-protocol --release --test
//! memory -- --nocapture`, see `docs/performance.md`) and checks that a parsed
//! contact holds no spare capacity: every device keeps every contact it reads.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use kith_protocol::contacts::{Command, View};
use kith_protocol::item::{Contact, Payload};

struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter
// is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(new_size, Ordering::Relaxed);
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes newly held after `f` (what it returns is kept until then).
fn held<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.load(Ordering::Relaxed);
    let value = f();
    let after = HELD.load(Ordering::Relaxed);
    (value, after.saturating_sub(before))
}

/// A shelf that reads nothing back: only what shelving frees is measured here.
struct Nowhere;

impl kith_protocol::replica::Shelf for Nowhere {
    fn load(
        &self,
        _space: kith_protocol::record::Space,
        _item: &kith_protocol::record::ItemId,
        _version: &kith_protocol::record::Version,
        _signature: &[u8; 64],
    ) -> Option<kith_protocol::record::Record> {
        None
    }
}

// One test in this file: the counter is shared by everything the binary runs.
#[test]
fn bytes_held_per_contact() {
    let n = 2_000;
    let mut doc = String::from("<query xmlns='jabber:iq:roster'>");
    for i in 0..n {
        let _ = write!(
            doc,
            "<item jid='c{i}@example.org' name='Contact {i}'><group>G{}</group></item>",
            i % 20
        );
    }
    doc.push_str("</query>");
    let imported = kith_protocol::import::roster(&doc).expect("a roster");
    let mut f = Fleet::new(1, 1);
    f.exec(
        0,
        Command::Import {
            contacts: imported.contacts,
            replace: false,
        },
        T0,
    );
    let book = &mut f.books[0];
    let contact: Contact = {
        let view = book.view();
        Contact::clone(&view.contacts().next().expect("contacts").contact)
    };
    let (replica, replica_bytes) = held(|| book.replica().clone());
    let keyring = book.keyring().clone();
    let (view, view_bytes) =
        held(|| View::build(&replica, &keyring, &mut kith_protocol::seal::Opener::new()));
    assert_eq!(view.contact_count(), n);
    eprintln!(
        "per contact: records {} B, merged view {} B",
        replica_bytes / n,
        view_bytes / n
    );

    // Shelved (the node leaves sealed bodies in its store once stored), the
    // records' bodies are freed: the replica and the view hold records without them.
    drop(replica);
    drop(view);
    let book = &mut f.books[0];
    let before = HELD.load(Ordering::Relaxed);
    book.set_shelf(std::sync::Arc::new(Nowhere));
    let keys: Vec<_> = book
        .replica()
        .records()
        .map(|r| (r.space, r.item))
        .collect();
    let count = book.shelve(keys);
    let freed = before.saturating_sub(HELD.load(Ordering::Relaxed));
    eprintln!("shelving {count} records freed {} B a contact", freed / n);
    assert!(count >= n, "every sealed record is shelved");
    assert!(
        freed / n >= 512,
        "shelving frees at least the padded payload of each contact"
    );

    let (copy, exact) = held(|| contact.clone());
    let xml = Payload::Contact(copy).to_xml();
    let (parsed, from_xml) = held(|| Payload::parse(&xml).expect("parses"));
    let (_, from_binary) = held(|| Payload::from_bytes(&parsed.to_bytes()).expect("decodes"));
    eprintln!("one contact: {exact} B exactly, {from_xml} B parsed, {from_binary} B decoded");
    assert_eq!(
        from_xml, exact,
        "a contact parsed from XML has no spare room"
    );
    assert_eq!(from_binary, exact, "nor one decoded from the item index");
}
