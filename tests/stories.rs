//! Issue 10's stories, replayed on real `kith run` processes: a desktop and a laptop
//! of one account, the desktop editing while its node is stopped. Every story ends
//! with no edit lost in silence: either both edits are kept, or the one that lost
//! is listed by `kith conflicts` and can be brought back.

use serde_json::Value;

use crate::nodes::{Device, account, converge};

const JULIET: &str = "juliet@capulet.lit";

/// The desktop and the laptop, both running, both showing Juliet.
fn two_with_juliet() -> (Device, Device) {
    let mut devices = account(&["desktop", "laptop"]);
    let laptop = devices.pop().expect("two devices");
    let desktop = devices.pop().expect("two devices");
    desktop.ok(&["contact", "add", JULIET, "--name", "Juliet"]);
    converge(&[&desktop, &laptop]);
    (desktop, laptop)
}

fn show(d: &Device) -> Value {
    d.json(&["contact", "show", JULIET])
}

fn conflicts(d: &Device) -> Vec<Value> {
    d.json(&["conflicts"])["contacts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until both devices hold Juliet as one settled item with `name`.
fn settled(desktop: &Device, laptop: &Device, name: &str) {
    for d in [desktop, laptop] {
        d.wait("Juliet settled into one item", |d| {
            let c = show(d);
            c["name"] == name && c["items"] == 1
        });
    }
    converge(&[desktop, laptop]);
}

#[test]
fn an_offline_rename_and_a_group_join_elsewhere_are_both_kept() {
    let (mut desktop, laptop) = two_with_juliet();
    desktop.stop();
    desktop.ok(&["contact", "edit", JULIET, "--name", "Juliet Capulet"]);
    laptop.ok(&["contact", "edit", JULIET, "--add-group", "Verona"]);
    desktop.start();
    settled(&desktop, &laptop, "Juliet Capulet");
    for d in [&desktop, &laptop] {
        let c = show(d);
        assert_eq!(c["groups"], serde_json::json!(["Verona"]), "{c}");
        assert_eq!(c["conflicts"], 0);
        assert!(conflicts(d).is_empty(), "different fields: no conflict");
    }
    // Both edits are in the laptop's history, each with the device that made it.
    let log = laptop.json(&["log", JULIET]);
    let entries = log.as_array().expect("a list");
    let made = |device: &str, change: &str| {
        entries.iter().any(|e| {
            e["device"] == device
                && e["changes"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|x| x == change))
        })
    };
    assert!(made("desktop", "name \"Juliet Capulet\""), "{log}");
    assert!(made("laptop", "+group Verona"), "{log}");
}

#[test]
fn concurrent_renames_keep_one_list_the_other_and_restore_it() {
    let (mut desktop, laptop) = two_with_juliet();
    desktop.stop();
    desktop.ok(&["contact", "edit", JULIET, "--name", "Jules"]);
    laptop.ok(&["contact", "edit", JULIET, "--name", "Julia"]);
    desktop.start();
    for d in [&desktop, &laptop] {
        d.wait("the conflict listed", |d| show(d)["conflicts"] == 1);
    }
    converge(&[&desktop, &laptop]);
    let won = show(&laptop)["name"].as_str().expect("a name").to_owned();
    let lost = if won == "Jules" { "Julia" } else { "Jules" };
    for d in [&desktop, &laptop] {
        let listed = conflicts(d);
        assert_eq!(listed.len(), 1, "{listed:?}");
        let c = &listed[0]["conflicts"][0];
        assert_eq!(c["lost"], format!("name {lost:?}"), "{c}");
    }
    let text = desktop.ok(&["conflicts"]);
    assert!(text.contains(&format!("lost: name {lost:?}")), "{text}");
    // Brought back as a new edit, on every device, and no longer listed.
    laptop.ok(&["contact", "restore", JULIET, "1"]);
    settled(&desktop, &laptop, lost);
    for d in [&desktop, &laptop] {
        assert!(conflicts(d).is_empty());
    }
}

#[test]
fn a_deletion_and_an_offline_edit_keep_the_contact_and_say_so() {
    let (mut desktop, laptop) = two_with_juliet();
    const TYBALT: &str = "tybalt@capulet.lit";
    desktop.ok(&["contact", "add", TYBALT]);
    converge(&[&desktop, &laptop]);
    desktop.stop();
    // Tybalt: deleted first, then edited offline; Juliet the other way round.
    laptop.ok(&["contact", "rm", TYBALT]);
    desktop.ok(&["contact", "edit", TYBALT, "--name", "Prince of Cats"]);
    desktop.ok(&["contact", "edit", JULIET, "--add-group", "Verona"]);
    let removed = laptop.ok(&["contact", "rm", JULIET]);
    assert!(removed.contains("Removed"), "{removed}");
    desktop.start();
    for d in [&desktop, &laptop] {
        d.wait("both back, each with its deletion listed", |d| {
            d.jids().contains(&JULIET.to_owned())
                && d.jids().contains(&TYBALT.to_owned())
                && conflicts(d).len() == 2
        });
    }
    converge(&[&desktop, &laptop]);
    for d in [&desktop, &laptop] {
        assert_eq!(
            d.json(&["contact", "show", TYBALT])["name"],
            "Prince of Cats"
        );
    }
    for d in [&desktop, &laptop] {
        assert_eq!(show(d)["groups"], serde_json::json!(["Verona"]));
        let all = conflicts(d);
        let juliet = all
            .iter()
            .find(|c| c["jids"][0] == JULIET)
            .expect("Juliet's conflicts");
        let c = &juliet["conflicts"][0];
        assert_eq!(c["lost"], "deleted", "{c}");
        assert_eq!(c["lost_by"], "laptop", "{c}");
    }
    // Restoring the deletion deletes her everywhere.
    desktop.ok(&["contact", "restore", JULIET, "1"]);
    for d in [&desktop, &laptop] {
        d.wait("Juliet deleted", |d| !d.jids().contains(&JULIET.to_owned()));
    }
}

#[test]
fn a_cli_that_cannot_hurt_on_running_nodes() {
    let (desktop, laptop) = two_with_juliet();
    desktop.ok(&[
        "contact",
        "add",
        "benvolio@verona.lit",
        "--name",
        "Benvolio",
    ]);
    // Another contact's address is refused, naming that contact.
    let out = desktop.kith(&[
        "contact",
        "edit",
        "benvolio@verona.lit",
        "--add-jid",
        JULIET,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Juliet"));
    // An import that brings nothing new changes nothing, and says so.
    let dir = tempfile::tempdir().expect("temp dir");
    let roster = crate::util::file(
        dir.path(),
        "roster.xml",
        format!(
            "<query xmlns='jabber:iq:roster'><item jid='{JULIET}' name='Jules'/>\
             <item jid='benvolio@verona.lit'/></query>"
        ),
    );
    let roster = crate::util::path(&roster);
    converge(&[&desktop, &laptop]);
    let text = laptop.ok(&["import", "roster", roster]);
    assert!(
        text.contains("0 contacts added, 0 updated, 2 unchanged"),
        "{text}"
    );
    converge(&[&desktop, &laptop]);
    assert_eq!(show(&desktop)["name"], "Juliet", "a name set here is kept");
}

#[test]
fn the_log_of_an_address_follows_its_contact() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "desktop"]);
    d.ok(&["contact", "add", JULIET, "--name", "Juliet"]);
    d.ok(&[
        "contact",
        "edit",
        JULIET,
        "--add-jid",
        "jc@capulet.lit",
        "--remove-jid",
        JULIET,
    ]);
    d.ok(&["contact", "edit", "jc@capulet.lit", "--name", "Jules"]);
    let log = d.json(&["log", "jc@capulet.lit"]);
    let changes: Vec<String> = log
        .as_array()
        .expect("a list")
        .iter()
        .flat_map(|e| e["changes"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    for expected in [
        "name \"Juliet\"",
        "+jid jc@capulet.lit",
        "-jid juliet@capulet.lit",
        "name \"Jules\"",
    ] {
        assert!(
            changes.iter().any(|c| c == expected),
            "{expected} missing from {log}"
        );
    }
    assert_eq!(
        log[0]["changes"][0], "name \"Jules\"",
        "newest first: {log}"
    );
    // A deletion erases the contact's history: the log keeps that a contact was
    // deleted, not what it was called or its addresses (docs/privacy.md).
    d.ok(&["contact", "rm", "jc@capulet.lit"]);
    let log = d.json(&["log", "jc@capulet.lit"]);
    assert_eq!(log, serde_json::json!([]), "{log}");
    let all = d.json(&["log"]);
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["changes"][0], "deleted", "{all}");
    for gone in ["Juliet", "Jules", "capulet"] {
        assert!(!all.to_string().contains(gone), "{gone} in {all}");
    }
}

/// Two devices apart name two groups alike: a rename on one and a new group on the
/// other. Back together, the group commands take both as the one group a person
/// sees: listed together, renamed into one, holding the contacts of both.
#[test]
fn groups_named_alike_apart_are_one_group_to_the_commands() {
    let mut devices = account(&["desktop", "laptop"]);
    devices[0].ok(&["contact", "add", "tybalt@capulet.lit", "--group", "Old"]);
    devices[1].wait("the group", |d| d.ok(&["group", "list"]).contains("Old"));
    for d in devices.iter_mut() {
        d.stop();
    }
    devices[0].ok(&["group", "rename", "Old", "Kin"]);
    devices[1].ok(&["contact", "add", JULIET, "--group", "Kin"]);
    devices[0].ok(&["group", "add", "Work"]);
    devices[1].ok(&["group", "add", "work"]);
    devices[0].start();
    let desktop = devices[0].listen_addr();
    devices[1].start_with("/ip4/127.0.0.1/tcp/0", &["--no-mdns", "--peer", &desktop]);
    let kin = |d: &Device| {
        d.ok(&["group", "list"])
            .lines()
            .filter(|l| l.split_whitespace().next() == Some("Kin"))
            .count()
    };
    devices[1].wait("two groups named Kin", |d| kin(d) == 2);
    devices[1].wait("both Work groups", |d| {
        d.ok(&["group", "list"])
            .to_lowercase()
            .matches("work")
            .count()
            == 2
    });
    let said = devices[1].ok(&["group", "rm", "WORK"]);
    assert!(
        said.starts_with("Removed the 2 groups named like"),
        "{said}"
    );
    let listed = devices[1].ok(&["contact", "list", "--group", "kin"]);
    assert!(
        listed.contains("tybalt@capulet.lit") && listed.contains(JULIET),
        "{listed}"
    );
    // Renamed on the laptop while its node is stopped (the command then opens the
    // whole device: it moves contacts it names nowhere).
    devices[1].stop();
    let said = devices[1].ok(&["group", "rename", "Kin", "Family"]);
    assert!(
        said.contains("the 2 groups named alike on devices apart are one now"),
        "{said}"
    );
    let listed = devices[1].ok(&["contact", "list", "--group", "Family"]);
    assert!(
        listed.contains("tybalt@capulet.lit") && listed.contains(JULIET),
        "{listed}"
    );
    devices[1].start_with("/ip4/127.0.0.1/tcp/0", &["--no-mdns", "--peer", &desktop]);
    devices[0].wait("one group, renamed", |d| {
        let groups = d.ok(&["group", "list"]);
        kin(d) == 0 && groups.lines().filter(|l| l.starts_with("Family")).count() == 1
    });
    let listed = devices[0].ok(&["contact", "list", "--group", "Family"]);
    assert!(
        listed.contains("tybalt@capulet.lit") && listed.contains(JULIET),
        "{listed}"
    );
    devices[0].ok(&["group", "rm", "family"]);
    devices[1].wait("no group", |d| {
        d.ok(&["group", "list"]).lines().skip(1).count() == 0
    });
}

/// Two devices renaming one group while apart: both show the newer name, list the
/// other as the group's conflict, keep every contact in it; a rename back settles.
#[test]
fn a_group_renamed_apart_on_two_devices_lists_the_other_name() {
    let mut devices = account(&["desktop", "laptop"]);
    devices[0].ok(&["contact", "add", "tybalt@capulet.lit", "--group", "Work"]);
    devices[0].ok(&["contact", "add", JULIET, "--group", "Work"]);
    devices[1].wait("the group", |d| {
        d.json(&["contact", "list", "--group", "Work"])
            .as_array()
            .is_some_and(|l| l.len() == 2)
    });
    devices[1].stop();
    devices[0].ok(&["group", "rename", "Work", "Office"]);
    devices[1].ok(&["group", "rename", "Work", "Job"]);
    devices[1].start();
    let listed = |d: &Device| d.json(&["conflicts"])["groups"].clone();
    for d in &devices {
        d.wait("the group's conflict listed", |d| {
            listed(d).as_array().is_some_and(|l| l.len() == 1)
        });
    }
    converge(&[&devices[0], &devices[1]]);
    let group = listed(&devices[0])[0]["group"]
        .as_str()
        .expect("a name")
        .to_owned();
    let lost = if group == "Job" { "Office" } else { "Job" };
    for d in &devices {
        let c = &listed(d)[0];
        assert_eq!(c["group"], group.as_str(), "{c}");
        assert_eq!(c["lost"], format!("name {lost:?}"), "{c}");
        let members = d.json(&["contact", "list", "--group", &group]);
        assert_eq!(members.as_array().map(Vec::len), Some(2), "{members}");
    }
    let text = devices[0].ok(&["conflicts"]);
    assert!(
        text.contains(&format!("Group {group:?}: lost: name {lost:?}")),
        "{text}"
    );
    assert!(text.contains("kith group rename"), "{text}");
    // A rotation writes every item again: the conflict stays, the winner too.
    devices[0].ok(&["secret", "rotate"]);
    converge(&[&devices[0], &devices[1]]);
    for d in &devices {
        let c = &listed(d)[0];
        assert_eq!(c["group"], group.as_str(), "{c}");
        assert_eq!(c["lost"], format!("name {lost:?}"), "{c}");
    }
    // Taking the other name settles it on both.
    let said = devices[1].ok(&["group", "rename", &group, lost]);
    assert!(
        said.contains("1 conflicting definition(s) from devices apart are settled"),
        "{said}"
    );
    for d in &devices {
        d.wait("no conflict left", |d| {
            listed(d).as_array().is_some_and(Vec::is_empty)
                && d.ok(&["group", "list"]).contains(lost)
        });
        let members = d.json(&["contact", "list", "--group", lost]);
        assert_eq!(members.as_array().map(Vec::len), Some(2), "{members}");
    }
    assert_eq!(devices[0].ok(&["conflicts"]).trim(), "No conflicts.");
}

/// A group removed on one device while another renames it: the group stays on
/// both, the removal is listed as its conflict, and keeping it settles it.
#[test]
fn a_group_removed_while_renamed_apart_lists_the_removal() {
    let mut devices = account(&["desktop", "laptop"]);
    devices[0].ok(&["contact", "add", JULIET, "--group", "Work"]);
    devices[1].wait("the group", |d| d.ok(&["group", "list"]).contains("Work"));
    devices[1].stop();
    devices[0].ok(&["group", "rm", "Work"]);
    devices[1].ok(&["group", "rename", "Work", "Office"]);
    devices[1].start();
    let listed = |d: &Device| d.json(&["conflicts"])["groups"].clone();
    for d in &devices {
        d.wait("the removal listed", |d| {
            listed(d).as_array().is_some_and(|l| l.len() == 1)
        });
        let c = &listed(d)[0];
        assert_eq!(c["group"], "Office", "{c}");
        assert_eq!(c["lost"], "removed", "{c}");
        assert_eq!(c["lost_by"], "desktop", "{c}");
    }
    // The laptop, whose definition was kept, puts Juliet back in the group.
    for d in &devices {
        d.wait("Juliet back in the group", |d| {
            in_group(d, "Office") == [JULIET]
        });
    }
    let text = devices[0].ok(&["conflicts"]);
    assert!(
        text.contains(r#"Group "Office": lost: removed (by desktop"#),
        "{text}"
    );
    assert!(text.contains("A removal that lost"), "{text}");
    let said = devices[0].ok(&["group", "rename", "Office", "Office"]);
    assert!(said.contains("Kept group \"Office\""), "{said}");
    for d in &devices {
        d.wait("settled", |d| {
            listed(d).as_array().is_some_and(Vec::is_empty)
        });
        assert!(d.ok(&["group", "list"]).contains("Office"));
    }
}

/// The addresses `contact list --group NAME` lists.
fn in_group(d: &Device, name: &str) -> Vec<String> {
    let listed = d.json(&["contact", "list", "--group", name]);
    listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["jids"][0].as_str().map(str::to_owned))
        .collect()
}

/// A removal that lost, kept on a stopped device before the device whose rename
/// was kept came back: the rename puts the contacts back there and then.
#[test]
fn keeping_a_group_on_a_stopped_device_puts_its_contacts_back() {
    let mut devices = account(&["desktop", "laptop", "phone"]);
    devices[0].ok(&["contact", "add", JULIET, "--group", "Work"]);
    for d in &devices[1..] {
        d.wait("the group", |d| in_group(d, "Work") == [JULIET]);
    }
    // The phone knows the laptop's address too (each paired with the desktop).
    let laptop = devices[1].listen_addr();
    devices[2].stop();
    devices[2].start_with("/ip4/127.0.0.1/tcp/0", &["--no-mdns", "--peer", &laptop]);
    devices[0].stop();
    devices[1].ok(&["group", "rename", "Work", "Office"]);
    devices[2].wait("the rename", |d| {
        d.ok(&["group", "list"]).contains("Office")
    });
    devices[1].stop();
    devices[2].stop();
    devices[0].ok(&["group", "rm", "Work"]);
    // The desktop meets the phone, which has the laptop's rename; the laptop,
    // whose definition is kept, is away.
    devices[0].start();
    devices[2].start();
    devices[0].wait("the removal listed", |d| {
        d.json(&["conflicts"])["groups"]
            .as_array()
            .is_some_and(|l| l.len() == 1)
    });
    assert!(in_group(&devices[0], "Office").is_empty());
    devices[0].stop();
    let said = devices[0].ok(&["group", "rename", "Office", "Office"]);
    assert!(said.contains("Kept group \"Office\""), "{said}");
    assert_eq!(in_group(&devices[0], "Office"), [JULIET]);
    devices[0].start();
    devices[1].start();
    for d in &devices {
        d.wait("settled, Juliet in the group", |d| {
            in_group(d, "Office") == [JULIET]
                && d.json(&["conflicts"])["groups"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
        });
    }
}
