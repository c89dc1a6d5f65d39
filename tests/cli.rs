//! The command line: round trips, dry-run imports, the demo, and bad input.

use crate::util::*;

const SECRET: &str = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";

#[test]
fn seal_then_open_round_trips_through_stdin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = file(dir.path(), "secret", SECRET);
    let payload = "<group xmlns='urn:xmpp:contacts:0' id='g1' name='Friends'><description>close</description></group>";
    let out = kith(
        &[
            "item",
            "seal",
            "--node",
            "groups",
            "--secret-file",
            path(&secret),
            "--key-id",
            "k",
        ],
        Some(payload),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kith(
        &["item", "open", "--secret-file", path(&secret)],
        Some(&stdout(&out)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim_end(), payload);
}

#[test]
fn bad_input_gets_one_line_and_an_exit_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = file(dir.path(), "secret", SECRET);
    let s = path(&secret);
    let seal: &[&str] = &[
        "item",
        "seal",
        "--node",
        "contacts",
        "--secret-file",
        s,
        "--key-id",
        "k",
    ];
    let open: &[&str] = &["item", "open", "--secret-file", s];
    let cases: [(&[&str], Option<&str>, i32); 7] = [
        (seal, Some("<contact xmlns='urn:xmpp:contacts:0'/>"), 3),
        (
            seal,
            Some("<group xmlns='urn:xmpp:contacts:0' id='a' name='b'/>"),
            3,
        ),
        (seal, Some("<contact"), 3),
        (
            open,
            Some("<encrypted xmlns='urn:xmpp:openpgp:pubsub:0' key='k'>%%%</encrypted>"),
            3,
        ),
        (
            &["item", "open", "--secret-file", "/nonexistent/secret"],
            Some("<x/>"),
            4,
        ),
        (
            &["import", "roster", "/nonexistent/roster.xml", "--dry-run"],
            None,
            4,
        ),
        (
            &[
                "item",
                "seal",
                "--node",
                "elsewhere",
                "--secret-file",
                s,
                "--key-id",
                "k",
            ],
            Some(""),
            2,
        ),
    ];
    for (args, stdin, code) in cases {
        let out = kith(args, stdin);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        if code != 2 {
            assert_eq!(
                stderr(&out).lines().count(),
                1,
                "{args:?}: {}",
                stderr(&out)
            );
            assert!(stderr(&out).starts_with("kith: "));
        }
    }
}

#[test]
fn import_dry_runs_print_payloads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let roster = file(
        dir.path(),
        "roster.xml",
        "<query xmlns='jabber:iq:roster'><item jid='juliet@capulet.lit' name='Juliet'><group>Friends</group></item>\
         <item jid='nurse@capulet.lit'/></query>",
    );
    let out = kith(&["import", "roster", path(&roster), "--dry-run"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "one group and two contacts: {lines:?}");
    assert!(
        lines[0].starts_with("<group xmlns='urn:xmpp:contacts:0' id='g-")
            && lines[0].contains("name='Friends'")
    );
    let gid = lines[0]
        .split("id='")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("group id");
    assert!(
        lines[1].contains("name='Juliet'") && lines[1].contains(&format!("<group id='{gid}'/>"))
    );
    let out = kith(&["import", "roster", path(&roster)], None);
    assert_eq!(
        out.status.code(),
        Some(6),
        "without --dry-run it needs a device: {}",
        stderr(&out)
    );

    let meta = file(
        dir.path(),
        "meta.xml",
        "<storage xmlns='storage:metacontacts'><meta jid='a@x.lit' tag='t' order='1'/><meta jid='b@x.lit' tag='t' order='2'/></storage>",
    );
    let out = kith(&["import", "metacontacts", path(&meta), "--dry-run"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "<contact xmlns='urn:xmpp:contacts:0'><identity type='jid'>b@x.lit</identity><identity type='jid'>a@x.lit</identity></contact>"
    );
}

#[test]
fn the_demo_tells_its_story_and_exits_0() {
    let out = kith(&["demo"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for step in [
        "paired, started and holding the secrets",
        "has both contacts",
        "shows one Mercutio, named and in Friends",
        "does not have Tybalt",
        "agree on 4 contacts",
    ] {
        assert!(text.contains(step), "{step:?} missing from:\n{text}");
    }
}

/// `kith bench` at its smallest: every figure it promises is there and plausible
/// (the timings themselves are the benchmark's business, not a test's).
#[test]
fn the_bench_measures_every_figure_it_names() {
    let out = kith(
        &[
            "bench",
            "--edits",
            "2",
            "--paced",
            "1",
            "--contacts",
            "5",
            "--scale",
            "0",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let fig: serde_json::Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(fig["edit"]["edits"], 2, "{text}");
    assert_eq!(fig["paced"]["edits"], 1, "{text}");
    for (figure, key) in [
        ("edit", "median_ms"),
        ("paced", "median_ms"),
        ("paced", "command_median_ms"),
        ("paced", "floor_commit_us"),
        ("floors", "sign_us"),
        ("floors", "stored_record_us"),
        ("floors", "seal_us"),
        ("floors", "open_us"),
        ("floors_before", "verify_us"),
        ("floors_after", "verify_us"),
        ("new_device", "floor_ms"),
        ("new_device", "over_floor"),
    ] {
        let v = fig[figure][key].as_f64().unwrap_or(0.0);
        assert!(v > 0.0, "{figure}.{key} = {v} in {text}");
    }
    for key in ["floor_ms", "over_floor"] {
        let v = fig["imports"][0][key].as_f64().unwrap_or(0.0);
        assert!(v > 0.0, "imports[0].{key} = {v} in {text}");
    }
    assert!(fig["floors"]["cores"].as_u64().unwrap_or(0) >= 1, "{text}");
    // The floors the ratios use are the lower of the two measures.
    let (low, before, after) = (
        fig["floors"]["verify_us"].as_f64().unwrap_or(f64::NAN),
        fig["floors_before"]["verify_us"]
            .as_f64()
            .unwrap_or(f64::NAN),
        fig["floors_after"]["verify_us"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
    assert_eq!(low, before.min(after), "{text}");
    assert_eq!(fig["imports"][0]["contacts"], 5, "{text}");
    // The processor time of the large rows, by the nodes in them: A, B and C in an
    // import, and D too for the new device.
    for (row, nodes) in [
        (&fig["imports"][0]["cpu"], &["a", "b", "c"][..]),
        (&fig["new_device"]["cpu"], &["a", "b", "c", "d"][..]),
    ] {
        let names: Vec<&str> = row["nodes_ms"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(names, nodes, "{text}");
        // Each node's /proc entry read (null when it did not).
        for v in row["nodes_ms"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            assert!(v.as_f64().is_some_and(|v| v >= 0.0), "{text}");
        }
        assert!(row["busy"].as_f64().is_some_and(f64::is_finite), "{text}");
    }
    // What the nodes spent a contact beyond the floor's work: a number whenever
    // their processor time read (above).
    // How far off that may be: a clock tick of each node's, per contact (5 here).
    for (row, nodes) in [(&fig["imports"][0], 3.0), (&fig["new_device"], 1.0)] {
        assert!(
            row["beyond_floor_us"].as_f64().is_some_and(f64::is_finite),
            "{text}"
        );
        let contacts = row["contacts"].as_f64().unwrap_or(f64::NAN);
        let resolution = row["beyond_floor_resolution_us"]
            .as_f64()
            .unwrap_or(f64::NAN);
        assert!(
            (resolution - 10_000.0 * nodes / contacts).abs() < 1e-6,
            "{text}"
        );
    }
    for key in ["pair_ms", "start_ms"] {
        let v = fig["new_device"][key].as_f64().unwrap_or(0.0);
        assert!(v > 0.0, "new_device.{key} = {v} in {text}");
    }
    assert!(
        fig["new_device"]["contacts"].as_u64().unwrap_or(0) >= 5,
        "{text}"
    );
}

/// The processes whose parent is `parent` and whose command line has `kith` and
/// `run`.
fn nodes_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid …`: the fields after the command's closing paren.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let mut fields = after.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next());
        if ppid == Some(parent.to_string().as_str())
            && state != Some("Z")
            && args_of(pid).iter().any(|a| a == "run")
        {
            out.push(pid);
        }
    }
    out
}

/// The command line of process `pid`, one element per argument.
fn args_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty()
        || stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// A bench killed outright (SIGKILL: no chance to stop its nodes) does not leave
/// them running: the kernel stops them with it.
#[test]
fn the_nodes_of_a_killed_bench_stop_with_it() {
    let mut bench = std::process::Command::new(env!("CARGO_BIN_EXE_kith"))
        .args([
            "bench",
            "--edits",
            "100000",
            "--paced",
            "0",
            "--contacts",
            "5",
            "--scale",
            "0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kith bench starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut nodes = Vec::new();
    while nodes.len() < 3 && std::time::Instant::now() < deadline {
        if bench.try_wait().ok().flatten().is_some() {
            break;
        }
        nodes = nodes_of(bench.id());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The bench's scratch directory (the parent of each node's data directory),
    // removed below: a killed bench cannot.
    let scratch: Option<std::path::PathBuf> = nodes.first().and_then(|p| {
        let args = args_of(*p);
        let dir = args.iter().skip_while(|a| *a != "--data-dir").nth(1)?;
        std::path::Path::new(dir).parent().map(|d| d.to_path_buf())
    });
    let node_args: Vec<Vec<String>> = nodes.iter().map(|p| args_of(*p)).collect();
    let _ = bench.kill();
    let _ = bench.wait();
    let stop_by = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !nodes.iter().all(|p| ended(*p)) && std::time::Instant::now() < stop_by {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left: Vec<u32> = nodes.iter().copied().filter(|p| !ended(*p)).collect();
    for (p, args) in nodes.iter().zip(&node_args) {
        // The same process still (its pid not taken by another since).
        if !ended(*p) && args_of(*p) == *args {
            // SAFETY: signalling a process this test's child started, by pid.
            unsafe { libc::kill(*p as i32, libc::SIGKILL) };
        }
    }
    // Only a scratch directory of the bench's own (`/tmp/.tmpXXXX`).
    let temp = std::env::temp_dir();
    let own = |d: &std::path::PathBuf| {
        d.parent() == Some(temp.as_path())
            && d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))
    };
    if let Some(dir) = scratch.filter(own) {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert_eq!(nodes.len(), 3, "the bench started three nodes");
    assert!(left.is_empty(), "nodes left running: {left:?}");
}

/// `contact edit --add-jid` with another contact's address is refused, naming that
/// contact, unless `--merge`; `contact rm` says what it removed.
#[test]
fn adding_another_contacts_address_needs_merge_and_rm_says_what_went() {
    let d = crate::nodes::Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    d.ok(&[
        "contact",
        "add",
        "benvolio@verona.lit",
        "--name",
        "Benvolio",
    ]);
    d.ok(&["contact", "add", "juliet@capulet.lit", "--name", "Juliet"]);
    let out = d.kith(&[
        "contact",
        "edit",
        "benvolio@verona.lit",
        "--add-jid",
        "juliet@capulet.lit",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Juliet") && stderr(&out).contains("--merge"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.jids().len(), 2, "nothing merged");

    d.ok(&[
        "contact",
        "edit",
        "juliet@capulet.lit",
        "--add-jid",
        "juliet@conversations.im",
    ]);
    let removed = d.ok(&["contact", "rm", "juliet@conversations.im"]);
    assert!(
        removed.contains("Juliet")
            && removed.contains("juliet@capulet.lit")
            && removed.contains("juliet@conversations.im"),
        "{removed}"
    );
    assert_eq!(d.jids(), ["benvolio@verona.lit"]);

    d.ok(&["contact", "add", "mercutio@verona.lit"]);
    d.ok(&[
        "contact",
        "edit",
        "benvolio@verona.lit",
        "--add-jid",
        "mercutio@verona.lit",
        "--merge",
    ]);
    assert_eq!(d.list().len(), 1, "merged on request");
}

/// Input as people type it: `xmpp:` URIs, names for `show`; the account's own JID
/// is no contact; `contact list` filters by group and text.
#[test]
fn addresses_names_and_filters_as_people_type_them() {
    let d = crate::nodes::Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    d.ok(&[
        "contact",
        "add",
        "xmpp:juliet@capulet.lit?message",
        "--name",
        "Juliet",
    ]);
    d.ok(&[
        "contact",
        "add",
        "tybalt@capulet.lit",
        "--name",
        "Tybalt",
        "--group",
        "Capulets",
    ]);
    d.ok(&[
        "contact",
        "add",
        "mercutio@verona.lit",
        "--name",
        "Mercutio",
    ]);
    assert!(
        d.jids().contains(&"juliet@capulet.lit".to_owned()),
        "{:?}",
        d.jids()
    );

    let own = d.kith(&["contact", "add", "romeo@montague.lit"]);
    assert_eq!(own.status.code(), Some(1), "{}", stderr(&own));
    assert!(stderr(&own).contains("own address"), "{}", stderr(&own));

    let shown = d.json(&["contact", "show", "juliet"]);
    assert_eq!(shown["jids"][0], "juliet@capulet.lit", "{shown}");
    let shown = d.json(&["contact", "show", "Tybalt"]);
    assert_eq!(shown["jids"][0], "tybalt@capulet.lit", "by name: {shown}");
    // A name as typed: spaces around it, another case, a hidden character.
    for typed in ["Tybalt ", " TYBALT", "Tyb\u{200b}alt"] {
        let shown = d.json(&["contact", "show", typed]);
        assert_eq!(shown["jids"][0], "tybalt@capulet.lit", "{typed:?}: {shown}");
    }

    let in_group = d.json(&["contact", "list", "--group", "capulets"]);
    assert_eq!(in_group.as_array().map(Vec::len), Some(1), "{in_group}");
    // In the list's order, by name, as without --group.
    d.ok(&[
        "contact",
        "edit",
        "juliet@capulet.lit",
        "--add-group",
        "capulets",
    ]);
    let names: Vec<String> = d
        .json(&["contact", "list", "--group", "Capulets"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names, ["Juliet", "Tybalt"]);
    for (search, n) in [("TYB", 1), ("JUL", 1), ("MERC", 0)] {
        let both = d.json(&[
            "contact",
            "list",
            "--group",
            " Capulets",
            "--search",
            search,
        ]);
        assert_eq!(both.as_array().map(Vec::len), Some(n), "{search}: {both}");
    }
    // A group no one has is said, not listed as empty.
    let none = d.kith(&["contact", "list", "--group", "Montagues"]);
    assert_eq!(none.status.code(), Some(1), "{}", stderr(&none));
    assert!(
        stderr(&none).contains(r#"no group is named "Montagues""#),
        "{}",
        stderr(&none)
    );
    // A name that shows nothing is no name: bad input.
    let blank = d.kith(&["contact", "list", "--group", "\u{200b} "]);
    assert_eq!(blank.status.code(), Some(3), "{}", stderr(&blank));
    let found = d.json(&["contact", "list", "--search", "CAPULET"]);
    assert_eq!(found.as_array().map(Vec::len), Some(2), "{found}");
}

/// An import is a merge: a second run changes nothing and says so; a name edited in
/// kith is kept unless `--replace`; new addresses and groups are added.
#[test]
fn imports_merge_and_report_what_they_did() {
    let d = crate::nodes::Device::new();
    d.ok(&["init", "--jid", "romeo@montague.lit"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let roster = file(
        dir.path(),
        "roster.xml",
        "<query xmlns='jabber:iq:roster'>\
         <item jid='juliet@capulet.lit' name='Juliet'><group>Capulets</group></item>\
         <item jid='tybalt@capulet.lit' name='Tybalt'/></query>",
    );
    let first = d.ok(&["import", "roster", path(&roster)]);
    assert!(
        first.contains("Imported 2 contacts in 1 group: 2 contacts added, 0 updated, 0 unchanged"),
        "{first}"
    );
    let again = d.ok(&["import", "roster", path(&roster)]);
    assert!(
        again.contains("0 contacts added, 0 updated, 2 unchanged"),
        "{again}"
    );

    d.ok(&["contact", "edit", "juliet@capulet.lit", "--name", "Jules"]);
    let more = file(
        dir.path(),
        "more.xml",
        "<query xmlns='jabber:iq:roster'>\
         <item jid='juliet@capulet.lit' name='Juliet'><group>Verona</group></item></query>",
    );
    let merged = d.ok(&["import", "roster", path(&more)]);
    assert!(merged.contains("0 contacts added, 1 updated"), "{merged}");

    // The account's own address is left out, and said; entries of one JID are one
    // contact, and names that look alike one group.
    let own = file(
        dir.path(),
        "own.xml",
        "<query xmlns='jabber:iq:roster'>\
         <item jid='Romeo@Montague.lit'><group>Self</group></item>\
         <item jid='nurse@capulet.lit'><group>Staff</group></item>\
         <item jid='nurse@capulet.lit'><group>staff </group></item></query>",
    );
    let said = d.ok(&["import", "roster", path(&own)]);
    assert!(
        said.contains("Left out romeo@montague.lit: this account's own address, not a contact")
            && said.contains("Imported 1 contact in 1 group: 1 contact added"),
        "{said}"
    );
    assert!(
        !d.jids().iter().any(|j| j == "romeo@montague.lit"),
        "{:?}",
        d.jids()
    );
    let juliet = d.json(&["contact", "show", "juliet@capulet.lit"]);
    assert_eq!(
        juliet["name"], "Jules",
        "the name edited here stays: {juliet}"
    );
    assert_eq!(
        juliet["groups"].as_array().map(Vec::len),
        Some(2),
        "{juliet}"
    );

    d.ok(&["import", "roster", path(&more), "--replace"]);
    let juliet = d.json(&["contact", "show", "juliet@capulet.lit"]);
    assert_eq!(juliet["name"], "Juliet", "--replace: {juliet}");
}
