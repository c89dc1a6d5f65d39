//! `kith demo`: three devices in one process. They share secrets through XEP-0373
//! signcrypt, edit concurrently while apart, exchange every record in a scrambled
//! order with duplicates, and print the same merged list.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use kith_protocol::clock::WallTime;
use kith_protocol::contacts::{Book, Command, ContactEdit, View};
use kith_protocol::item::NodeKind;
use kith_protocol::jid::BareJid;
use kith_protocol::ox::{self, DeviceKey, SecretMessage};
use kith_protocol::record::{DeviceId, Record};
use kith_protocol::seal::{Keyring, Secret};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::Exit;

struct Device {
    name: &'static str,
    book: Book,
    ox: DeviceKey,
}

fn jid(s: &str) -> BareJid {
    BareJid::parse(s).expect("demo JIDs are valid")
}

fn now() -> WallTime {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    WallTime(ms)
}

fn print_view(view: &View) {
    for c in &view.contacts {
        let ids: Vec<&str> = c
            .contact
            .identities
            .iter()
            .map(|i| i.value.as_str())
            .collect();
        let mut groups: Vec<&str> = c
            .contact
            .groups
            .iter()
            .map(|g| {
                view.groups
                    .get(&g.id)
                    .map_or("(unknown group)", |e| e.group.name.as_str())
            })
            .collect();
        groups.sort_unstable();
        let items = if c.members.len() > 1 {
            format!("  [{} items merged]", c.members.len())
        } else {
            String::new()
        };
        println!(
            "      {:<16} {:<28} {}{}",
            c.contact.name.as_deref().unwrap_or("-"),
            ids.join(", "),
            if groups.is_empty() {
                "-".to_owned()
            } else {
                groups.join(", ")
            },
            items
        );
    }
    println!(
        "      (contacts node: {} items, groups node: {} items, padded with <reserved/>)",
        view.live_items(NodeKind::Contacts),
        view.live_items(NodeKind::Groups)
    );
}

/// Delivers every record in `pool` to every device, each in its own scrambled order
/// with about one record in five sent twice.
fn exchange(
    devices: &mut [Device],
    pool: &[Record],
    roster: &BTreeSet<DeviceId>,
    rng: &mut ChaCha20Rng,
    t: WallTime,
) -> Result<usize> {
    let mut delivered = 0;
    for d in devices.iter_mut() {
        let mut order: Vec<usize> = (0..pool.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let dups: Vec<usize> = order
            .iter()
            .copied()
            .filter(|_| rng.random_range(0..5) == 0)
            .collect();
        order.extend(dups);
        for i in order {
            d.book
                .receive(pool[i].clone(), roster, t)
                .context("a device refused a record of the roster")?;
            delivered += 1;
        }
    }
    Ok(delivered)
}

fn agree(devices: &mut [Device]) -> bool {
    let first = devices[0].book.view().clone();
    let records: Vec<Record> = devices[0].book.replica().records().cloned().collect();
    devices[1..]
        .iter_mut()
        .all(|d| *d.book.view() == first && d.book.replica().records().eq(records.iter()))
}

pub(crate) fn run(seed: Option<u64>) -> Result<()> {
    let seed = seed.unwrap_or_else(|| rand::rng().random());
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let account = jid("romeo@montague.lit");
    let mut t = now();
    println!("kith demo: three devices of {account}, in one process (seed {seed})\n");

    println!(
        "1. Each device gets an Ed25519 identity and an OpenPGP certificate (xmpp:{account})."
    );
    let mut devices = Vec::new();
    for name in ["laptop", "phone", "desktop"] {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let ox = DeviceKey::generate(&account, t)?;
        let book = Book::new(SigningKey::from_bytes(&key), Keyring::new());
        println!(
            "      {name:<8} device {}  OpenPGP {}",
            book.device(),
            &ox.fingerprint()[..16]
        );
        devices.push(Device { name, book, ox });
    }
    let roster: BTreeSet<DeviceId> = devices.iter().map(|d| d.book.device()).collect();

    println!(
        "\n2. The laptop creates one XEP-0473 secret per node and signcrypts them to each device."
    );
    let secrets: Vec<Secret> = NodeKind::ALL
        .iter()
        .map(|n| Secret::generate(*n, t, &mut rng))
        .collect();
    for s in &secrets {
        devices[0].book.keyring_mut().insert(s.clone());
    }
    let laptop_cert = devices[0].ox.cert();
    let content = ox::Content {
        to: vec![account.clone()],
        time: t,
        payload: secrets
            .iter()
            .map(|s| {
                SecretMessage::Share {
                    jid: account.clone(),
                    secret: s.clone(),
                }
                .to_element()
            })
            .collect(),
    };
    for i in 1..devices.len() {
        let message = ox::signcrypt(
            &content,
            &devices[0].ox,
            &[devices[i].ox.cert()],
            t,
            &mut rng,
        )?;
        let opened = ox::open(
            &message,
            &devices[i].ox,
            std::slice::from_ref(&laptop_cert),
            &account,
            t,
            ox::Window::default(),
        )?;
        for el in &opened.content.payload {
            if let Some(Ok(SecretMessage::Share { secret, .. })) = SecretMessage::from_element(el) {
                devices[i].book.keyring_mut().insert(secret);
            }
        }
        println!(
            "      {:<8} opened a {}-byte OpenPGP message signed by {}: {} secrets",
            devices[i].name,
            message.len(),
            &opened.signer[..16],
            devices[i].book.keyring().iter().count()
        );
    }

    println!("\n3. While apart, each device edits on its own:");
    let edits = [
        (0, "juliet@capulet.lit", Some("Juliet"), Some("Friends"), ""),
        (
            1,
            "Juliet@Capulet.LIT",
            None,
            Some("Capulets"),
            " (the same contact)",
        ),
        (
            2,
            "mercutio@verona.lit",
            Some("Mercutio"),
            Some("Verona"),
            "",
        ),
        (1, "nurse@capulet.lit", Some("Nurse"), None, ""),
        (
            0,
            "tybalt@capulet.lit",
            Some("Tybalt"),
            Some("Capulets"),
            "",
        ),
    ];
    let mut pool = Vec::new();
    for (i, address, name, group, note) in edits {
        t = WallTime(t.0 + 1);
        let what = format!(
            "add {address}{}{}{note}",
            name.map(|n| format!(" \"{n}\"")).unwrap_or_default(),
            group.map(|g| format!(" in {g}")).unwrap_or_default()
        );
        let cmd = Command::AddContact {
            jid: jid(address),
            name: name.map(str::to_owned),
            groups: group.map(str::to_owned).into_iter().collect(),
        };
        let records = devices[i].book.execute(cmd, t, &mut rng)?;
        println!(
            "      {:<8} {what}: {} records",
            devices[i].name,
            records.len()
        );
        pool.extend(records);
    }

    t = WallTime(t.0 + 1);
    let sent = exchange(&mut devices, &pool, &roster, &mut rng, t)?;
    println!(
        "\n4. They meet: {} records, {sent} deliveries in three scrambled orders with duplicates.",
        pool.len()
    );
    println!("   Each device's merged list:");
    for d in devices.iter_mut() {
        println!("   [{}]", d.name);
        print_view(d.book.view());
    }
    if !agree(&mut devices) {
        return Err(Exit::Failed("the devices disagree".into()).into());
    }
    println!(
        "   All three are identical: the two Juliet items show as one contact, with the name and both groups."
    );

    println!(
        "\n5. The phone renames Juliet; the edit writes the merged contact into one item and reserves the other."
    );
    t = WallTime(t.0 + 1);
    let records = devices[1].book.execute(
        Command::EditContact {
            jid: jid("juliet@capulet.lit"),
            edit: ContactEdit {
                name: Some(Some("Juliet Capulet".into())),
                ..ContactEdit::default()
            },
        },
        t,
        &mut rng,
    )?;
    let sent = exchange(&mut devices, &records, &roster, &mut rng, t)?;
    println!(
        "   {} records, {sent} deliveries. The list on every device:",
        records.len()
    );
    print_view(devices[0].book.view());
    if !agree(&mut devices) {
        return Err(Exit::Failed("the devices disagree".into()).into());
    }
    println!(
        "\nAll three devices hold the same {} records and show the same list.",
        devices[0].book.replica().len()
    );
    Ok(())
}
