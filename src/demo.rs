//! `kith demo`: three devices of one account as three `kith run` processes on
//! loopback (mDNS on `lo` only), paired through invite codes; edits on one arrive on
//! the others, a concurrent edit made while one device is off merges, and a revoked
//! device gets nothing new.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kith_node::control::Request;

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
    let v = node.call(Request::Contacts)?;
    outln!("      {who}:");
    for c in v.as_array().into_iter().flatten() {
        let jids: Vec<&str> = c["jids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j.as_str())
            .collect();
        let groups: Vec<&str> = c["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str())
            .collect();
        let merged = if c["items"].as_u64().unwrap_or(1) > 1 {
            format!("  [{} items merged]", c["items"])
        } else {
            String::new()
        };
        outln!(
            "        {:<14} {:<26} {}{merged}",
            c["name"].as_str().unwrap_or("-"),
            jids.join(", "),
            if groups.is_empty() {
                "-".into()
            } else {
                groups.join(", ")
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
    let s = laptop.call(Request::Status)?;
    outln!(
        "      laptop   device {}  listening on {}",
        s["device"]["id"].as_str().unwrap_or("?"),
        s["node"]["listen"][0].as_str().unwrap_or("?")
    );

    outln!("\n2. The phone and the desktop join with one-time invite codes from the laptop.");
    let mut joined = Vec::new();
    for (dir, name) in [(&dirs[1], "phone"), (&dirs[2], "desktop")] {
        let start = Instant::now();
        cluster::pair(&laptop, dir, name)?;
        let node = Node::start(dir, true)?;
        node.wait("the secrets", LIMIT, |n| {
            let s = n.call(Request::Status)?;
            Ok(s["waiting_for_secret"] == 0 && s["records"]["keys"].as_u64().unwrap_or(0) > 0)
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
        Ok(n.call(Request::Status)?["connected_peers"] == 2)
    })?;
    outln!("      laptop   connected to both; roster of 3 devices");

    outln!("\n3. Edits on the laptop arrive on the others (gossip, then reconciliation).");
    laptop.call(add("juliet@capulet.lit", Some("Juliet"), &["Verona"]))?;
    laptop.call(add("benvolio@montague.lit", Some("Benvolio"), &["Family"]))?;
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
    desktop.call_offline(add("mercutio@verona.lit", None, &["Friends"]))?;
    outln!("      desktop (off)  adds mercutio@verona.lit to Friends, stored until it runs");
    phone.call(add("mercutio@verona.lit", Some("Mercutio"), &[]))?;
    outln!("      phone          adds mercutio@verona.lit as \"Mercutio\"");
    let desktop = Node::start(&dirs[2], true)?;
    let merged = |n: &Node| -> Result<bool> {
        let v = n.call(Request::Contact {
            jid: "mercutio@verona.lit".into(),
        })?;
        Ok(v["name"] == "Mercutio"
            && v["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|x| x == "Friends")))
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
    laptop.call(Request::Revoke {
        device: "desktop".into(),
    })?;
    laptop.call(add("tybalt@capulet.lit", Some("Tybalt"), &["Verona"]))?;
    let t = phone.wait("the contact added after the revocation", LIMIT, |n| {
        has(n, "tybalt@capulet.lit")
    })?;
    outln!("      phone    has Tybalt after {} ms", t.as_millis());
    let revoked = |n: &Node| -> Result<bool> {
        let d = n.call(Request::Devices)?;
        Ok(d.as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == "desktop" && x["revoked"] == true && x["connected"].is_null()))
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
        bail!(Exit::Failed(
            "the revoked desktop received a new contact".into()
        ));
    }
    let n = desktop.call(Request::Status)?["connected_peers"].clone();
    outln!("      desktop  does not have Tybalt; connected peers: {n}");

    outln!("\n6. The final lists.");
    let lists = [laptop.jids()?, phone.jids()?];
    show(&phone, "phone")?;
    if lists[0] != lists[1] {
        bail!(Exit::Failed("the laptop and the phone disagree".into()));
    }
    outln!(
        "\nThe laptop and the phone agree on {} contacts. Done.",
        lists[0].len()
    );
    drop((laptop, phone, desktop));
    Ok(())
}
