//! Pairing as a person does it: a short code found by mDNS (on `lo` only), the
//! inviter saying who joined, typos told as typos, wrong codes closing the
//! invitation, reuse, cancel, expiry and an absent inviter each with its documented
//! exit code; `pair list`, `--qr`, and `device rename` reaching the other device.

use std::time::{Duration, Instant};

use crate::nodes::{Device, long_code, short_code};

fn fails(out: &std::process::Output, code: i32, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(says), "{says:?} not in {stderr:?}");
}

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `code` (short) with its third symbol changed and the check made right again, as
/// docs/node.md § Pairing gives it: the same nameplate, another password.
fn another_password(code: &str) -> String {
    let v: Vec<u32> = code
        .chars()
        .filter(|c| *c != '-')
        .map(|c| {
            ALPHABET
                .iter()
                .position(|a| char::from(*a) == c)
                .expect("a symbol") as u32
        })
        .collect();
    let mut data: Vec<u32> = v[..8].to_vec();
    data[2] = (data[2] + 1) % 32;
    let check: u32 = data
        .iter()
        .enumerate()
        .map(|(i, x)| (i as u32 + 1) * x)
        .sum::<u32>()
        % 1021;
    data.push(check / 32);
    data.push(check % 32);
    data.iter()
        .map(|x| char::from(ALPHABET[*x as usize]))
        .collect()
}

fn laptop() -> Device {
    let a = Device::new();
    a.ok(&["init", "--jid", "romeo@montague.lit", "--name", "laptop"]);
    a
}

#[test]
fn a_short_code_found_on_mdns_joins_and_the_inviter_says_who() {
    let mut a = laptop();
    a.start_with("/ip4/127.0.0.1/tcp/0", &["--mdns-interface", "lo"]);
    a.ok(&["contact", "add", "juliet@capulet.lit"]);
    let mut waiting = a.spawn(&["pair", "invite", "--ttl", "5m"]);
    let printed = waiting.lines(3);
    let code = short_code(&printed);
    assert_eq!(code.len(), 11, "{printed}");
    assert!(long_code(&printed).starts_with(&format!("{code}@127.0.0.1:")));
    // Typed by a person: lower case, the dash as a space, an O for the zero.
    let typed = code.to_lowercase().replace('-', " ").replace('0', "o");
    let mut b = Device::new();
    let out = b.kith(&[
        "pair",
        "join",
        &typed,
        "--name",
        "phone",
        "--mdns-interface",
        "lo",
    ]);
    assert!(
        out.status.success(),
        "join: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rc, rest, _) = waiting.finish();
    assert_eq!(rc, Some(0));
    assert!(rest.starts_with("phone ("), "{rest}");
    assert!(rest.trim_end().ends_with(") joined."), "{rest}");
    // `pair list` tells the same.
    let list = a.ok(&["pair", "list"]);
    assert!(list.contains("joined: phone ("), "{list}");
    b.start_with("/ip4/127.0.0.1/tcp/0", &["--mdns-interface", "lo"]);
    b.wait("the contact", |d| d.jids() == ["juliet@capulet.lit"]);
    // Used once: the next device is told so.
    let c = Device::new();
    fails(
        &c.kith(&["pair", "join", &code, "--mdns-interface", "lo"]),
        1,
        "used already",
    );
}

#[test]
fn typos_wrong_codes_reuse_cancel_and_expiry_each_say_what_happened() {
    let mut a = laptop();
    a.start();
    let c = Device::new();
    // Not codes at all: exit 3, saying why.
    fails(
        &c.kith(&["pair", "join", "hello"]),
        3,
        "10 letters and digits",
    );
    fails(&c.kith(&["pair", "join", "kith1-AAAA"]), 3, "earlier kith");
    let printed = a.ok(&["pair", "invite", "--no-wait"]);
    let long = long_code(&printed);
    let (code, addrs) = long.split_once('@').expect("addresses");
    // One symbol wrong: a typo, found before anything is sent.
    let mut typo: Vec<char> = code.chars().collect();
    typo[3] = if typo[3] == 'A' { 'B' } else { 'A' };
    let typo: String = typo.into_iter().collect();
    fails(
        &c.kith(&["pair", "join", &format!("{typo}@{addrs}")]),
        3,
        "typo",
    );
    // Another valid code for the same invitation: wrong, two tries left, then one,
    // then the invitation closes, and the right code no longer joins.
    let wrong = format!("{}@{addrs}", another_password(code));
    fails(&c.kith(&["pair", "join", &wrong]), 1, "2 more tries");
    fails(&c.kith(&["pair", "join", &wrong]), 1, "1 more try ");
    fails(&c.kith(&["pair", "join", &wrong]), 1, "closed");
    fails(&c.kith(&["pair", "join", &long]), 1, "closed");
    assert!(!c.dir.join("kith.db").exists(), "no half-made device");
    let list = a.ok(&["pair", "list"]);
    assert!(list.contains("closed after 3 wrong codes"), "{list}");

    // Cancelled: listed, then refused; cancelling again finds nothing open.
    let printed = a.ok(&["pair", "invite", "--no-wait"]);
    let (code, long) = (short_code(&printed), long_code(&printed));
    let json = a.json(&["pair", "list"]);
    let open = json["invitations"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|i| i["state"] == "open")
        .count();
    assert_eq!(open, 1);
    let said = a.ok(&["pair", "cancel", &code]);
    assert!(said.starts_with("Cancelled the invitation "), "{said}");
    fails(&c.kith(&["pair", "join", &long]), 1, "cancelled");
    fails(&a.kith(&["pair", "cancel", &code]), 1, "no open invitation");
    fails(
        &a.kith(&["pair", "cancel", "ZZZZZ"]),
        3,
        "10 letters and digits",
    );

    // Expired.
    let issued = Instant::now();
    let long = long_code(&a.ok(&["pair", "invite", "--ttl", "1s", "--no-wait"]));
    c.wait("the code's second to pass", |_| {
        issued.elapsed() > Duration::from_millis(1100)
    });
    fails(&c.kith(&["pair", "join", &long]), 1, "expired");

    // The inviting node is gone: unreachable (5). Without addresses and without
    // mDNS there is nowhere to look: bad input (3).
    let long = a.invite();
    a.stop();
    fails(&c.kith(&["pair", "join", &long]), 5, "inviting device");
    let code = long.split_once('@').expect("addresses").0;
    fails(
        &c.kith(&["pair", "join", code, "--no-mdns"]),
        3,
        "after its @",
    );
    assert!(!c.dir.join("kith.db").exists(), "no half-made device");
}

#[test]
fn a_waiting_inviter_says_when_nobody_joined_and_qr_codes_print() {
    let mut a = laptop();
    a.start();
    let mut waiting = a.spawn(&["pair", "invite", "--ttl", "5m"]);
    let code = short_code(&waiting.lines(3));
    a.ok(&["pair", "cancel", &code]);
    let (rc, _, stderr) = waiting.finish();
    assert_eq!(rc, Some(1), "{stderr}");
    assert!(stderr.contains("cancelled; nobody joined"), "{stderr}");
    let printed = a.ok(&["pair", "invite", "--no-wait", "--qr"]);
    assert!(printed.lines().count() > 15, "{printed}");
    assert!(printed.contains('█') && printed.contains('▄'), "{printed}");
    let said = a.ok(&["pair", "cancel", "--all"]);
    assert!(said.starts_with("Cancelled the invitation"), "{said}");
    // Pairing needs the node.
    a.stop();
    fails(&a.kith(&["pair", "invite", "--no-wait"]), 7, "kith run");
    fails(&a.kith(&["pair", "list"]), 7, "kith run");
}

#[test]
fn a_device_renamed_on_one_device_is_renamed_on_the_other() {
    let mut a = laptop();
    a.start();
    let mut b = Device::new();
    b.join(&a, "vm");
    b.start();
    let said = a.ok(&["device", "rename", "vm", "phone"]);
    assert!(said.starts_with("Renamed \"vm\" ("), "{said}");
    assert!(said.trim_end().ends_with("to \"phone\""), "{said}");
    b.wait("the new name", |d| {
        d.json(&["device", "list"])
            .as_array()
            .is_some_and(|l| l.iter().any(|m| m["name"] == "phone"))
    });
    let said = b.ok(&["device", "rename", "phone", "phone"]);
    assert!(said.starts_with("Nothing changed"), "{said}");
    // A name another device has is refused; a device joining with one gets a
    // number added.
    fails(
        &b.kith(&["device", "rename", "phone", "laptop"]),
        1,
        "another device",
    );
    let mut c = Device::new();
    c.join(&a, "Phone");
    assert_eq!(c.status()["device"]["name"], "Phone 2");
    // A number added to a name at the length limit keeps it within the limit.
    let long = "L".repeat(64);
    a.ok(&["device", "rename", "laptop", &long]);
    let mut e = Device::new();
    e.join(&a, &long);
    assert_eq!(
        e.status()["device"]["name"],
        format!("{} 2", "L".repeat(62)).as_str()
    );
    c.start();
    a.wait("the third device", |d| {
        d.json(&["device", "list"])
            .as_array()
            .is_some_and(|l| l.iter().any(|m| m["name"] == "Phone 2"))
    });
    fails(
        &b.kith(&["device", "rename", "nobody", "x"]),
        1,
        "no device",
    );
    fails(&b.kith(&["device", "rename", "phone", ""]), 3, "empty");
    fails(
        &b.kith(&["device", "rename", "phone", "a\u{202e}b"]),
        3,
        "direction",
    );
    fails(
        &Device::new().kith(&["init", "--jid", "x@y.lit", "--name", "  "]),
        3,
        "empty",
    );
    fails(
        &b.kith(&["device", "rename", "phone", "a\u{7}b"]),
        3,
        "control characters",
    );
}
