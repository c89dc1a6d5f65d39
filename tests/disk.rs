//! What a stolen data directory gives away (issue 11, "less on disk"): once every
//! device has collected a deletion, nothing of the deleted contact is left in the
//! directory, not even sealed under keys the directory itself holds.

use std::path::Path;

use crate::nodes::Device;

/// The devices run with acknowledgement rounds every second, so that a deletion is
/// collected and erased within seconds rather than minutes.
const FAST_ACKS: [&str; 3] = ["--no-mdns", "--ack-interval", "1s"];
const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("data directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

/// Where in the directories one of `needles` appears: (file, which needle).
fn found(dirs: &[&Path], needles: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    let mut hits = Vec::new();
    for dir in dirs {
        for (path, bytes) in files(dir) {
            for (what, needle) in needles {
                if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                    hits.push((path.clone(), what.clone()));
                }
            }
        }
    }
    hits
}

/// Sealed bytes the store of the stopped device in `dir` holds of the item `item`
/// (32 hex digits) of the contacts node: its stored versions, its row of the item
/// index, the history's rows (all of them: the contact is the only one). Three 32-byte windows of each, far
/// enough into it to be past any common header.
fn sealed_fragments(dir: &Path, label: &str, item: &str) -> Vec<(String, Vec<u8>)> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("kith.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the store opens");
    let id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&item[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let mut out = Vec::new();
    for (table, query, arg) in [
        (
            "records",
            "SELECT bytes FROM records WHERE space = 0 AND item = ?1",
            id.clone(),
        ),
        (
            "items",
            "SELECT data FROM items WHERE node = 0 AND item = ?1",
            id.clone(),
        ),
        // The contact is the only one the history ever held.
        (
            "history",
            "SELECT data FROM history WHERE ?1 IS NOT NULL",
            Vec::new(),
        ),
    ] {
        let mut stmt = conn.prepare(query).expect("query");
        let rows: Vec<Vec<u8>> = stmt
            .query_map([arg], |r| r.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect();
        assert!(!rows.is_empty(), "{label}: no {table} rows of the contact");
        for (i, bytes) in rows.iter().enumerate() {
            for at in [bytes.len() / 4, bytes.len() / 2, bytes.len() * 3 / 4] {
                if at + 32 <= bytes.len() {
                    out.push((
                        format!("{label} {table} row {i} at {at}"),
                        bytes[at..at + 32].to_vec(),
                    ));
                }
            }
        }
    }
    out
}

fn start(d: &mut Device) {
    d.start_with(LOOPBACK, &FAST_ACKS);
}

/// `kith init --passphrase` of a device named `name` of romeo's account (the
/// passphrase comes from the device's `KITH_PASSPHRASE_FILE`); what it printed.
fn init_sealed(d: &Device, name: &str) -> String {
    d.ok(&[
        "init",
        "--jid",
        "romeo@montague.lit",
        "--name",
        name,
        "--passphrase",
    ])
}

#[test]
fn a_deleted_contact_leaves_nothing_on_disk_that_the_directory_can_open() {
    let mut laptop = Device::new();
    laptop.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    start(&mut laptop);
    let mut phone = Device::new();
    phone.join(&laptop, "phone");
    start(&mut phone);
    phone.wait("the secrets", |d| {
        let s = d.status();
        s["waiting_for_secret"] == 0 && s["records"]["keys"].as_u64().unwrap_or(0) > 0
    });

    // Added under one name, renamed: both names are in sealed versions everywhere.
    laptop.ok(&[
        "contact",
        "add",
        "otter@river.lit",
        "--name",
        "DeletedOtter",
    ]);
    phone.wait("the contact", |d| {
        d.list().iter().any(|(_, n, _)| n.contains("DeletedOtter"))
    });
    // An edit writes a new item: the sealed bytes of this first one are taken now.
    let first_item = laptop.json(&["contact", "list"])[0]["id"]
        .as_str()
        .expect("the contact's id")
        .to_owned();
    let mut first_fragments = Vec::new();
    for (d, label) in [(&mut laptop, "laptop"), (&mut phone, "phone")] {
        d.stop();
        first_fragments.extend(sealed_fragments(&d.dir, label, &first_item));
        start(d);
    }
    laptop.ok(&[
        "contact",
        "edit",
        "otter@river.lit",
        "--name",
        "RenamedOtter",
    ]);
    phone.wait("the new name", |d| {
        d.list().iter().any(|(_, n, _)| n.contains("RenamedOtter"))
    });
    assert!(laptop.ok(&["log"]).contains("DeletedOtter"));

    // What a thief could look for: the names and address in clear, and the sealed
    // bytes that held them (read from each store while stopped).
    let mut needles: Vec<(String, Vec<u8>)> = ["DeletedOtter", "RenamedOtter", "otter@river.lit"]
        .iter()
        .map(|s| ((*s).to_owned(), s.as_bytes().to_vec()))
        .collect();
    let item = laptop.json(&["contact", "list"])[0]["id"]
        .as_str()
        .expect("the contact's id")
        .to_owned();
    assert_eq!(item.len(), 32, "an item id: {item}");
    assert_ne!(item, first_item, "an edit writes a new item");
    needles.extend(first_fragments);
    for (d, label) in [(&mut laptop, "laptop"), (&mut phone, "phone")] {
        d.stop();
        needles.extend(sealed_fragments(&d.dir, label, &item));
        start(d);
    }
    assert!(
        !found(&[&laptop.dir, &phone.dir], &needles).is_empty(),
        "the fragments are found while the contact exists"
    );

    laptop.ok(&["contact", "rm", "otter@river.lit"]);
    // Every device collects the deletion, then forgets it; the store erases what
    // it held and empties the log of SQLite that still has the pages.
    for d in [&laptop, &phone] {
        d.wait("the deletion to be collected and forgotten", |d| {
            let s = d.status();
            s["contacts"] == 0 && s["tombstones"] == 0 && s["collected_tombstones"] == 0
        });
    }
    let start = std::time::Instant::now();
    loop {
        let hits = found(&[&laptop.dir, &phone.dir], &needles);
        if hits.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < crate::nodes::DEADLINE,
            "still on disk after {:?}: {hits:?}",
            crate::nodes::DEADLINE
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The power goes: what is on the disks stays as it is.
    laptop.kill();
    phone.kill();
    let hits = found(&[&laptop.dir, &phone.dir], &needles);
    assert!(hits.is_empty(), "left on disk: {hits:?}");
    // The addresses the devices reached each other at are sealed too.
    let addrs = found(
        &[&laptop.dir, &phone.dir],
        &[("a multiaddr".to_owned(), b"/ip4/".to_vec())],
    );
    assert!(addrs.is_empty(), "addresses in clear: {addrs:?}");
    // A thief with the whole directory (keys and secrets included) runs kith on it.
    for d in [&laptop, &phone] {
        for args in [
            &["log", "--json"][..],
            &["contact", "list", "--json"],
            &["conflicts", "--json"],
        ] {
            let out = d.ok(args);
            for name in ["DeletedOtter", "RenamedOtter", "otter@river.lit"] {
                assert!(!out.contains(name), "kith {args:?} shows {name}: {out}");
            }
        }
    }
}

/// The key files, which a passphrase seals.
const KEY_FILES: [&str; 3] = ["device.key", "openpgp.key", "secrets.xml"];

/// Asserts that the key files of `d` are sealed and show nothing in clear.
fn sealed_keys(d: &Device) {
    for name in KEY_FILES {
        let bytes = std::fs::read(d.dir.join(name)).expect("key file");
        assert!(bytes.starts_with(b"KITHVLT1"), "{name} is not sealed");
        for clear in [&b"romeo@montague.lit"[..], b"shared-secret", b"secrets"] {
            assert!(
                !bytes.windows(clear.len()).any(|w| w == clear),
                "{name} shows {:?}",
                String::from_utf8_lossy(clear)
            );
        }
    }
}

#[test]
fn a_passphrase_seals_the_keys_and_secrets_and_every_command_needs_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let right = crate::util::file(tmp.path(), "right", "correct horse battery\n");
    let wrong = crate::util::file(tmp.path(), "wrong", "incorrect horse\n");
    let mut d = Device::new().with_env("KITH_PASSPHRASE_FILE", crate::util::path(&right));
    let out = init_sealed(&d, "laptop");
    assert!(out.contains("sealed under the passphrase"), "{out}");
    d.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    sealed_keys(&d);

    // Without the passphrase (no terminal either), or with a wrong one, nothing opens.
    let mut bare = Device::at(d.dir.clone());
    let out = bare.kith(&["contact", "list"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("KITH_PASSPHRASE_FILE"));
    let out = bare.kith(&["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let mut wrong_one =
        Device::at(d.dir.clone()).with_env("KITH_PASSPHRASE_FILE", crate::util::path(&wrong));
    let out = wrong_one.kith(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"),
        "{out:?}"
    );
    let missing = Device::at(d.dir.clone()).with_env("KITH_PASSPHRASE_FILE", "/nonexistent/pass");
    assert_eq!(missing.kith(&["status"]).status.code(), Some(4));
    bare.stop();
    wrong_one.stop();

    // With it, the node runs, and a rotation of the secrets writes them sealed.
    d.start();
    // A device paired with --passphrase is sealed from its first byte.
    let mut phone = Device::new().with_env("KITH_PASSPHRASE_FILE", crate::util::path(&right));
    let code = d.invite();
    phone.ok(&["pair", "join", &code, "--name", "phone", "--passphrase"]);
    phone.start();
    phone.wait("the secrets, sealed", |p| {
        p.status()["waiting_for_secret"] == 0
            && std::fs::read(p.dir.join("secrets.xml")).is_ok_and(|b| b.starts_with(b"KITHVLT1"))
    });
    phone.stop();
    sealed_keys(&phone);
    let before = std::fs::read(d.dir.join("secrets.xml")).expect("secrets");
    d.ok(&["secret", "rotate"]);
    d.wait("the new secrets on disk", |d| {
        std::fs::read(d.dir.join("secrets.xml")).is_ok_and(|now| now != before)
    });
    d.stop();
    sealed_keys(&d);
    let list = d.ok(&["contact", "list"]);
    assert!(list.contains("Juliet"), "{list}");
}

#[test]
fn a_passphrase_can_be_added_changed_and_removed_on_a_stopped_device() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let first = crate::util::file(tmp.path(), "first", "first passphrase\n");
    let second = crate::util::file(tmp.path(), "second", "second passphrase\n");
    let mut d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    d.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    let dir = d.dir.clone();
    let as_is = |pass: Option<&Path>, new: Option<&Path>| {
        let mut dev = Device::at(dir.clone());
        if let Some(p) = pass {
            dev = dev.with_env("KITH_PASSPHRASE_FILE", crate::util::path(p));
        }
        if let Some(p) = new {
            dev = dev.with_env("KITH_NEW_PASSPHRASE_FILE", crate::util::path(p));
        }
        dev
    };
    let lists = |dev: &Device| dev.kith(&["contact", "list"]).status.code();

    // A running node holds the directory: stop it first.
    d.start();
    let out = as_is(None, Some(&first)).kith(&["passphrase", "set"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    d.stop();

    as_is(None, Some(&first)).ok(&["passphrase", "set"]);
    sealed_keys(&d);
    assert_eq!(lists(&as_is(None, None)), Some(2));
    assert_eq!(lists(&as_is(Some(&first), None)), Some(0));

    // Changing it needs the current one.
    let out = as_is(Some(&second), Some(&second)).kith(&["passphrase", "set"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    as_is(Some(&first), Some(&second)).ok(&["passphrase", "set"]);
    assert_eq!(lists(&as_is(Some(&first), None)), Some(1));
    assert_eq!(lists(&as_is(Some(&second), None)), Some(0));

    as_is(Some(&second), None).ok(&["passphrase", "remove"]);
    assert!(
        !std::fs::read(d.dir.join("device.key"))
            .expect("key")
            .starts_with(b"KITHVLT1")
    );
    let list = as_is(None, None).ok(&["contact", "list"]);
    assert!(list.contains("Juliet"), "{list}");
    let leftovers: Vec<_> = std::fs::read_dir(&d.dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("rekey"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn deleting_a_merged_contact_erases_the_history_of_every_item_merged_into_it() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    d.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    d.ok(&["contact", "add", "jc@capulet.lit", "--name", "Jay Cee"]);
    d.ok(&[
        "contact",
        "edit",
        "juliet@capulet.lit",
        "--add-jid",
        "jc@capulet.lit",
        "--merge",
    ]);
    let before = d.ok(&["log", "--json"]);
    assert!(before.contains("Jay Cee"), "{before}");
    d.ok(&["contact", "rm", "juliet@capulet.lit"]);
    let after = d.ok(&["log", "--json"]);
    for gone in ["Juliet", "Jay Cee", "capulet"] {
        assert!(!after.contains(gone), "{gone} still in the log: {after}");
    }
    assert!(after.contains("deleted"), "{after}");
}

/// Copies the files of `from` into `to` (flat).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for e in std::fs::read_dir(from).expect("dir").flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn a_passphrase_change_cut_short_opens_with_the_new_one_and_leaves_no_clear_copy() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let old = crate::util::file(tmp.path(), "old", "old passphrase\n");
    let new = crate::util::file(tmp.path(), "new", "new passphrase\n");
    let with = |dir: &Path, pass: &Path| {
        Device::at(dir.to_owned()).with_env("KITH_PASSPHRASE_FILE", crate::util::path(pass))
    };
    let d = with(&tmp.path().join("d"), &old);
    init_sealed(&d, "laptop");
    d.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    // The state a crash right after the mark leaves: the files sealed under the new
    // passphrase beside the old ones, and the mark.
    let done = tmp.path().join("done");
    copy_dir(&d.dir, &done);
    with(&done, &old)
        .with_env("KITH_NEW_PASSPHRASE_FILE", crate::util::path(&new))
        .ok(&["passphrase", "set"]);
    for name in KEY_FILES {
        std::fs::copy(done.join(name), d.dir.join(format!(".{name}.rekey"))).expect("copy");
    }
    std::fs::write(d.dir.join(".rekey.done"), b"").expect("mark");
    // Temporary files a crash left, one of them in clear.
    std::fs::write(d.dir.join("..secrets.xml.rekey.tmp"), b"<secrets/>").expect("tmp");
    std::fs::write(d.dir.join(".openpgp.key.tmp"), b"half").expect("tmp");
    let list = with(&d.dir, &new).ok(&["contact", "list"]);
    assert!(list.contains("Juliet"), "{list}");
    assert_eq!(with(&d.dir, &old).kith(&["status"]).status.code(), Some(1));
    let left: Vec<String> = std::fs::read_dir(&d.dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("rekey") || n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A key file of another device under the same passphrase is refused, not used.
    let other = with(&tmp.path().join("other"), &new);
    init_sealed(&other, "other");
    std::fs::copy(other.dir.join("secrets.xml"), d.dir.join("secrets.xml")).expect("copy");
    let out = with(&d.dir, &new).kith(&["contact", "list"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another lock"),
        "{out:?}"
    );
    // A passphrase file that never ends is refused without reading it all.
    let out = Device::at(d.dir.clone())
        .with_env("KITH_PASSPHRASE_FILE", "/dev/zero")
        .kith(&["status"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}
