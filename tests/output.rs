//! What commands print for people: one line for every change, tables aligned by
//! display width and fitted to the width asked for, times in words.

use unicode_width::UnicodeWidthStr;

use crate::nodes::{Device, account};
use crate::util::stderr;

/// Where each column after the first starts, in terminal cells, on `line`: found
/// from the cells of the first line of `table` (its header).
fn column_starts(line: &str, header: &str) -> Vec<usize> {
    let titles: Vec<&str> = header.split_whitespace().collect();
    let mut starts = Vec::new();
    let mut at = 0;
    for t in &titles[1..] {
        at = header[at..].find(t).expect("a title") + at;
        starts.push(header[..at].width());
    }
    // The same cells on `line`: the text at each start must follow a gap.
    starts
        .iter()
        .map(|&cells| {
            let mut width = 0;
            let mut byte = line.len();
            for (i, c) in line.char_indices() {
                if width >= cells {
                    byte = i;
                    break;
                }
                width += unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
            }
            assert!(
                line[..byte].ends_with("  ") && !line[byte..].starts_with(' '),
                "a column of {line:?} does not start at cell {cells} (header {header:?})"
            );
            cells
        })
        .collect()
}

/// `kith args` on `d` with `COLUMNS=width`; its standard output.
fn at_width(d: &Device, width: usize, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data-dir")
        .arg(&d.dir)
        .args(args)
        .env("COLUMNS", width.to_string())
        .output()
        .expect("kith runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_change_is_said_in_one_line() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    let said = |args: &[&str]| d.ok(args).trim_end().to_owned();
    assert_eq!(
        said(&[
            "contact",
            "add",
            "Juliet@Capulet.lit",
            "--name",
            "Juliet",
            "--group",
            "Friends"
        ]),
        r#"Added juliet@capulet.lit "Juliet" in "Friends""#
    );
    assert_eq!(
        said(&[
            "contact",
            "edit",
            "juliet@capulet.lit",
            "--name",
            "Jules",
            "--add-jid",
            "jc@verona.lit",
            "--remove-group",
            "Friends",
        ]),
        r#"Changed juliet@capulet.lit: name "Jules", -group "Friends", +jid jc@verona.lit"#
    );
    // Said as stored: the name trimmed, the look-alike group as the existing one.
    assert_eq!(
        said(&[
            "contact",
            "add",
            "nurse@capulet.lit",
            "--name",
            "  Nurse ❤\u{fe0f} ",
            "--group",
            "friends "
        ]),
        "Added nurse@capulet.lit \"Nurse ❤\u{fe0f}\" in \"Friends\""
    );
    // Asked again, the edit changes nothing and says so.
    assert_eq!(
        said(&[
            "contact",
            "edit",
            "nurse@capulet.lit",
            "--add-group",
            "Friends"
        ]),
        "Nothing changed in nurse@capulet.lit: it already had that"
    );
    // What the edit did to the groups, named as stored, not what was typed.
    assert_eq!(
        said(&[
            "contact",
            "edit",
            "nurse@capulet.lit",
            "--remove-group",
            "FRIENDS",
            "--add-group",
            "Kitchen",
            "--add-group",
            "kitchen ",
        ]),
        r#"Changed nurse@capulet.lit: +group "Kitchen", -group "Friends""#
    );
    assert_eq!(said(&["group", "add", "Verona"]), r#"Added group "Verona""#);
    assert_eq!(
        said(&["group", "rename", "Verona", "Fair Verona"]),
        r#"Renamed group "Verona" to "Fair Verona""#
    );
    assert_eq!(
        said(&["group", "rename", "fair verona", "Fair Verona"]),
        r#"Nothing changed: group "Fair Verona" is named that already"#
    );
    assert_eq!(
        said(&["group", "rename", "Fair Verona", "fair Verona"]),
        r#"Renamed group "Fair Verona" to "fair Verona""#
    );
    assert_eq!(
        said(&["group", "rename", "FAIR\u{200b} verona", "Fair Verona"]),
        r#"Renamed group "fair Verona" to "Fair Verona""#,
        "named as it was stored, not as typed"
    );
    // A name that looks like one a group has, invisible characters or full-width
    // letters and all, is that group's; a name that shows nothing is no name.
    for (args, code, told) in [
        (
            &["group", "add", "fair\u{200b} ＶＥＲＯＮＡ"][..],
            1,
            r#"a group named "Fair Verona" exists already"#,
        ),
        (
            &["group", "add", " \u{200b}\u{feff}"][..],
            3,
            "a group name cannot be empty",
        ),
        // Joiners and tags after a Latin letter are dropped (and shown escaped).
        (
            &["group", "add", "Fair Ve\u{200c}rona\u{e0041}"][..],
            1,
            r#"a group named "Fair Verona" exists already"#,
        ),
        // Marks on nothing, a deprecated format character: nothing shows.
        (
            &["group", "add", "\u{301}\u{20dd}"][..],
            3,
            "a group name cannot be empty",
        ),
        (
            &["group", "add", "\u{206a}"][..],
            3,
            "a group name cannot be empty",
        ),
        (
            &["contact", "add", "x@verona.lit", "--name", "\u{301}"][..],
            3,
            "cannot be empty",
        ),
        (&["group", "add", "a\u{fffe}"][..], 3, "cannot hold U+FFFE"),
    ] {
        let out = d.kith(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(told), "{args:?}: {}", stderr(&out));
    }
    // A name in a script with marks is said as it is written, in errors too.
    assert_eq!(said(&["group", "add", "नमस्ते"]), r#"Added group "नमस्ते""#);
    let again = d.kith(&["group", "add", "नमस्ते"]);
    assert!(
        stderr(&again).contains(r#"a group named "नमस्ते" exists already"#),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        said(&["group", "rm", "fair VERONA"]),
        r#"Removed group "Fair Verona" (its contacts stay, without it)"#
    );
    assert_eq!(
        said(&["secret", "rotate"]),
        "Rotated the secrets of both nodes: every item is sealed again under the new ones"
    );
    assert_eq!(
        said(&["contact", "rm", "jc@verona.lit"]),
        "Removed Jules (juliet@capulet.lit, jc@verona.lit)"
    );
}

#[test]
fn a_revocation_is_said_and_a_connected_device_is_seen_now() {
    let devices = account(&["laptop", "phone"]);
    let phone_id = devices[1].status()["device"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    devices[0].wait("a sync with the phone", |d| {
        d.json(&["device", "list"])
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["name"] == "phone" && m["last_sync"].is_string())
    });
    let list = devices[0].ok(&["device", "list"]);
    let phone = list
        .lines()
        .find(|l| l.contains("phone"))
        .expect("the phone");
    assert!(
        phone.contains("up to date") && phone.ends_with("now"),
        "{list}"
    );
    assert_eq!(
        devices[0].ok(&["device", "revoke", "phone"]).trim_end(),
        format!(
            r#"Revoked "phone" ({phone_id}): the secrets were rotated, and the other devices no longer sync with it"#
        )
    );
}

#[test]
fn tables_line_up_by_display_width_and_fit_the_width_asked_for() {
    let d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    for (jid, name, group) in [
        ("juliet@capulet.lit", "Juliet", "Friends"),
        ("zhu@capulet.lit", "朱丽叶", "恋人"),
        ("mercutio@verona.lit", "😀 Mercutio", "Friends"),
        ("nurse-with-a-long-address@capulet.lit", "Nurse", "Capulets"),
        ("other-nurse@capulet.lit", "Nurse\u{200b}", "Capulets"),
    ] {
        d.ok(&["contact", "add", jid, "--name", name, "--group", group]);
    }
    let list = d.ok(&["contact", "list"]);
    // Two names that differ by what hides read apart.
    assert!(list.contains("Nurse\\u{200b}"), "{list}");
    let lines: Vec<&str> = list.lines().collect();
    let header = lines[0];
    let starts = column_starts(header, header);
    for line in &lines[1..lines.len() - 1] {
        assert_eq!(column_starts(line, header), starts, "{list}");
    }
    // Piped and without COLUMNS: nothing is cut.
    assert!(
        list.contains("nurse-with-a-long-address@capulet.lit"),
        "{list}"
    );
    assert!(lines.iter().all(|l| !l.ends_with(' ')), "{list}");

    let narrow = at_width(&d, 40, &["contact", "list"]);
    assert!(
        narrow.lines().all(|l| l.width() <= 40),
        "lines over 40 cells:\n{narrow}"
    );
    assert!(narrow.contains('…'), "{narrow}");
    let groups = at_width(&d, 40, &["group", "list"]);
    assert!(groups.lines().all(|l| l.width() <= 40), "{groups}");
    // The roster lines of `status` fit too, ids whole.
    let d = Device::new();
    let long = "a-rather-long-device-name-here";
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", long]);
    let id = d.status()["device"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let status = at_width(&d, 50, &["status"]);
    let roster: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("         ") && l.contains(&id[..8]))
        .collect();
    assert!(!roster.is_empty(), "{status}");
    for line in roster {
        assert!(line.width() <= 50 && line.contains(&id), "{line:?}");
        assert!(line.contains('…'), "{line:?}");
    }
}

/// The start of a device's id as the log shows it (`phone (57b6…)`).
fn short_id(d: &Device) -> String {
    let id = d.status()["device"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    id[..4].to_owned()
}

#[test]
fn the_log_names_devices_and_says_what_happened() {
    let devices = account(&["laptop", "phone", "tablet"]);
    let (laptop, phone, tablet) = (&devices[0], &devices[1], &devices[2]);
    let phone_is = format!("phone ({}…)", short_id(phone));
    let tablet_is = format!("tablet ({}…)", short_id(tablet));
    let laptop_is = format!("laptop ({}…)", short_id(laptop));
    laptop.wait("the phone named in the log", |d| {
        let log = d.log();
        log.contains(&format!("{phone_is} joined"))
            && log.contains(&format!("{phone_is} connected"))
    });
    phone.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    laptop.wait("the phone's change in the log", |d| {
        d.log()
            .contains(&format!("1 contact changed by {phone_is}"))
    });
    laptop.ok(&["device", "revoke", "tablet"]);
    phone.wait("the revocation in the phone's log", |d| {
        d.log()
            .contains(&format!("{laptop_is} revoked {tablet_is}"))
    });
    for d in &devices {
        let log = d.log();
        assert!(
            !log.contains('\u{1b}'),
            "colour codes in a log to a file:\n{log}"
        );
        // What kith says at info names devices, not libp2p peer ids (only its own
        // listen addresses carry one).
        for line in log.lines().filter(|l| {
            l.contains(" INFO ") && l.contains("kith_node") && !l.contains("listening on")
        }) {
            assert!(!line.contains("12D3KooW"), "a peer id in {line:?}");
        }
    }
}

#[test]
fn the_log_can_be_json_for_collectors() {
    let mut d = Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    d.start_with(
        "/ip4/127.0.0.1/tcp/0",
        &["--no-mdns", "--log-format", "json"],
    );
    d.wait("a line saying where it listens", |d| {
        d.log().contains("listening on")
    });
    let log = d.log();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(
        log.contains(r#""message":"listening on"#),
        "kith's own lines carry their message:\n{log}"
    );
    d.stop();
    let out = d.kith(&["run", "--log-format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
}
