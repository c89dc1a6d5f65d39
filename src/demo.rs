//! `kith demo`: three devices of one account as three `kith run` processes on
//! loopback (mDNS on `lo` only), paired through invite codes; edits on one arrive on
//! the others, a concurrent edit made while one device is off merges, and a revoked
//! device gets nothing new.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith_node::api::Request;
use kith_node::api::answer::{Contact, ContactChanged, ContactList, DeviceList, Revoked};
use kith_node::api::status::Status;

use crate::Exit;
use crate::cluster::{self, Node};
use crate::output::outln;

const ACCOUNT: &str = "romeo@montague.lit";
const LIMIT: Duration = Duration::from_secs(60);

fn add(jid: &str, name: Option<&str>, groups: &[&str]) -> Request {
    Request::AddContact {
        jid: jid.into(),
        name: name.map(str::to_owned),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn show(node: &Node, who: &str) -> Result<()> {
    let ContactList(contacts) = node.call(Request::Contacts)?;
    outln!("      {who}:");
    for c in &contacts {
        let merged = if c.items > 1 {
            format!("  [{} items merged]", c.items)
        } else {
            String::new()
        };
        outln!(
            "        {:<14} {:<26} {}{merged}",
            c.name.as_deref().unwrap_or("-"),
            c.jids.join(", "),
            if c.groups.is_empty() {
                "-".into()
            } else {
                c.groups.join(", ")
            },
        );
    }
    Ok(())
}

fn has(node: &Node, jid: &str) -> Result<bool> {
    Ok(node.jids()?.iter().any(|j| j == jid))
}

pub(crate) fn run(keep: Option<PathBuf>) -> Result<()> {
    let tmp;
    let root: &Path = match &keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir
        }
        None => {
            tmp = tempfile::tempdir().context("temporary directory")?;
            tmp.path()
        }
    };
    let dirs: Vec<PathBuf> = ["laptop", "phone", "desktop"]
        .iter()
        .map(|n| root.join(n))
        .collect();
    outln!("kith demo: three devices of {ACCOUNT}, each a `kith run` process on 127.0.0.1");
    outln!(
        "(mDNS on the loopback interface only; data in {})\n",
        root.display()
    );

    outln!("1. The laptop creates the account: its keys, the roster, the first secrets.");
    cluster::init(&dirs[0], ACCOUNT, "laptop")?;
    let laptop = Node::start(&dirs[0], true)?;
    let s: Status = laptop.call(Request::Status)?;
    outln!(
        "      laptop   device {}  listening on {}",
        s.device.id,
        s.node.listen.first().map_or("?", String::as_str)
    );

    outln!("\n2. The phone and the desktop join with one-time invite codes from the laptop.");
    let mut joined = Vec::new();
    for (dir, name) in [(&dirs[1], "phone"), (&dirs[2], "desktop")] {
        let start = Instant::now();
        cluster::pair(&laptop, dir, name)?;
        let node = Node::start(dir, true)?;
        node.wait("the secrets", LIMIT, |n| {
            let s: Status = n.call(Request::Status)?;
            Ok(s.waiting_for_secret == 0 && s.records.get("keys").is_some_and(|k| *k > 0))
        })?;
        outln!(
            "      {name:<8} paired, started and holding the secrets after {} ms",
            start.elapsed().as_millis()
        );
        joined.push(node);
    }
    let mut desktop = joined.pop().context("the desktop")?;
    let phone = joined.pop().context("the phone")?;
    laptop.wait("the roster", LIMIT, |n| {
        Ok(n.call::<Status>(Request::Status)?.connected_peers == 2)
    })?;
    outln!("      laptop   connected to both; roster of 3 devices");

    outln!("\n3. Edits on the laptop arrive on the others (gossip, then reconciliation).");
    laptop.call::<ContactChanged>(add("juliet@capulet.lit", Some("Juliet"), &["Verona"]))?;
    laptop.call::<ContactChanged>(add("benvolio@montague.lit", Some("Benvolio"), &["Family"]))?;
    for (node, name) in [(&phone, "phone"), (&desktop, "desktop")] {
        let t = node.wait("the laptop's edits", LIMIT, |n| {
            Ok(has(n, "juliet@capulet.lit")? && has(n, "benvolio@montague.lit")?)
        })?;
        outln!(
            "      {name:<8} has both contacts after {} ms",
            t.as_millis()
        );
    }

    outln!("\n4. A concurrent edit: the desktop is switched off and edits offline, while the");
    outln!("   phone edits the same person; the desktop comes back and every device merges.");
    desktop.stop();
    desktop.call_offline::<ContactChanged>(add("mercutio@verona.lit", None, &["Friends"]))?;
    outln!("      desktop (off)  adds mercutio@verona.lit to Friends, stored until it runs");
    phone.call::<ContactChanged>(add("mercutio@verona.lit", Some("Mercutio"), &[]))?;
    outln!("      phone          adds mercutio@verona.lit as \"Mercutio\"");
    let desktop = Node::start(&dirs[2], true)?;
    let merged = |n: &Node| -> Result<bool> {
        let c: Contact = n.call(Request::Contact {
            jid: "mercutio@verona.lit".into(),
        })?;
        Ok(c.name.as_deref() == Some("Mercutio") && c.groups.iter().any(|g| g == "Friends"))
    };
    for (node, name) in [
        (&laptop, "laptop"),
        (&phone, "phone"),
        (&desktop, "desktop"),
    ] {
        let t = node.wait("the merged contact", LIMIT, |n| merged(n))?;
        outln!(
            "      {name:<8} shows one Mercutio, named and in Friends, after {} ms",
            t.as_millis()
        );
    }
    show(&laptop, "laptop")?;

    outln!(
        "\n5. The laptop revokes the desktop: the secrets rotate, the desktop gets nothing new."
    );
    laptop.call::<Revoked>(Request::Revoke {
        device: "desktop".into(),
    })?;
    laptop.call::<ContactChanged>(add("tybalt@capulet.lit", Some("Tybalt"), &["Verona"]))?;
    let t = phone.wait("the contact added after the revocation", LIMIT, |n| {
        has(n, "tybalt@capulet.lit")
    })?;
    outln!("      phone    has Tybalt after {} ms", t.as_millis());
    let revoked = |n: &Node| -> Result<bool> {
        let DeviceList(devices) = n.call(Request::Devices)?;
        Ok(devices
            .iter()
            .any(|x| x.name == "desktop" && x.revoked && x.connected.is_none()))
    };
    for (node, name) in [(&laptop, "laptop"), (&phone, "phone")] {
        let t = node.wait("the revocation", LIMIT, |n| revoked(n))?;
        outln!(
            "      {name:<8} lists the desktop as revoked and cut off after {} ms",
            t.as_millis()
        );
    }
    // The phone has Tybalt, so the laptop has published it; the desktop, cut off and
    // without the new secret, must not show it.
    if has(&desktop, "tybalt@capulet.lit")? {
        bail!(Exit::Refused(
            "the revoked desktop received a new contact".into()
        ));
    }
    let n = desktop.call::<Status>(Request::Status)?.connected_peers;
    outln!("      desktop  does not have Tybalt; connected peers: {n}");

    outln!("\n6. The final lists.");
    let lists = [laptop.jids()?, phone.jids()?];
    show(&phone, "phone")?;
    if lists[0] != lists[1] {
        bail!(Exit::Refused("the laptop and the phone disagree".into()));
    }
    outln!(
        "\nThe laptop and the phone agree on {} contacts. Done.",
        lists[0].len()
    );
    drop((laptop, phone, desktop));
    Ok(())
}
