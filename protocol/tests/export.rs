//! Rosters out (`kith_protocol::export`): the minimal roster of XEP-0510 §5, the full
//! one, the XEP-0227 document, and each read back by the roster import.

mod common;

use common::*;
use kith_protocol::contacts::{Command, ContactEdit};
use kith_protocol::export::{self, Detail, Error};
use kith_protocol::import;
use proptest::prelude::*;

/// Juliet (two addresses, two groups, a name with XML's special characters) and the
/// nurse (no name, no group).
fn capulets() -> Fleet {
    let mut f = Fleet::new(1, 12);
    f.exec(
        0,
        add(
            "juliet@capulet.lit",
            Some("Juliet & <the \"balcony\">"),
            &["Lovers", "Friends"],
        ),
        T0,
    );
    f.exec(
        0,
        Command::EditContact {
            jid: jid("juliet@capulet.lit"),
            edit: ContactEdit {
                add_jids: vec![jid("juliet@verona.lit")],
                ..ContactEdit::default()
            },
        },
        T0,
    );
    f.exec(0, add("nurse@capulet.lit", None, &[]), T0);
    f
}

#[test]
fn the_default_is_the_minimal_roster() {
    let mut f = capulets();
    let roster = export::roster(f.books[0].view(), Detail::Minimal).to_xml();
    assert_eq!(
        roster,
        "<query xmlns='jabber:iq:roster'><item jid='juliet@capulet.lit'/>\
         <item jid='juliet@verona.lit'/><item jid='nurse@capulet.lit'/></query>"
    );
    let back = import::roster(&roster).expect("valid roster");
    assert_eq!(back.contacts.len(), 3);
    assert!(
        back.contacts
            .iter()
            .all(|c| c.name.is_none() && c.groups.is_empty())
    );
}

#[test]
fn the_full_roster_gives_every_address_its_contacts_name_and_groups() {
    let mut f = capulets();
    let roster = export::roster(f.books[0].view(), Detail::Full).to_xml();
    let juliet = "name='Juliet &amp; &lt;the &quot;balcony&quot;&gt;'>\
                  <group>Friends</group><group>Lovers</group></item>";
    assert_eq!(
        roster,
        format!(
            "<query xmlns='jabber:iq:roster'><item jid='juliet@capulet.lit' {juliet}\
             <item jid='juliet@verona.lit' {juliet}<item jid='nurse@capulet.lit'/></query>"
        )
    );
    let back = import::roster(&roster).expect("valid roster");
    // The roster import joins nothing: one contact per item, names and groups kept.
    assert_eq!(back.contacts.len(), 3);
    assert_eq!(
        back.contacts[0].name.as_deref(),
        Some("Juliet & <the \"balcony\">")
    );
    assert_eq!(back.groups, ["Friends", "Lovers"]);
}

#[test]
fn the_xep0227_document_files_the_roster_under_the_accounts_user() {
    let mut f = capulets();
    let roster = export::roster(f.books[0].view(), Detail::Minimal);
    let doc = export::for_server(&jid("romeo@montague.lit"), roster.clone())
        .expect("an account with a user")
        .to_xml();
    assert_eq!(
        doc,
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='montague.lit'><user name='romeo'>\
         <query xmlns='jabber:iq:roster'><item jid='juliet@capulet.lit' subscription='none'/>\
         <item jid='juliet@verona.lit' subscription='none'/>\
         <item jid='nurse@capulet.lit' subscription='none'/></query></user></host></server-data>"
    );
    assert_eq!(
        export::for_server(&jid("montague.lit"), roster),
        Err(Error::NoUser("montague.lit".into()))
    );
}

#[test]
fn groups_of_no_definition_are_left_out() {
    let mut f = Fleet::new(1, 13);
    f.exec(0, add("juliet@capulet.lit", None, &["Friends"]), T0);
    f.exec(
        0,
        Command::RemoveGroup {
            name: "Friends".into(),
        },
        T0,
    );
    let roster = export::roster(f.books[0].view(), Detail::Full).to_xml();
    assert_eq!(
        roster,
        "<query xmlns='jabber:iq:roster'><item jid='juliet@capulet.lit'/></query>"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the names and groups, the full roster reads back as the same
    /// contacts with the same names and group names.
    #[test]
    fn the_full_roster_reads_back_as_the_same_contacts(
        contacts in proptest::collection::btree_map(
            "[a-z]{1,8}",
            (
                proptest::option::of("[A-Za-z0-9 &<>\"'é漢😀]{0,12}[A-Za-z&<>é漢😀]"),
                proptest::collection::btree_set("[A-Za-z &<>é漢][a-z ]{0,6}", 0..3),
            ),
            1..8,
        )
    ) {
        let mut f = Fleet::new(1, 14);
        for (local, (name, groups)) in &contacts {
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            f.exec(0, add(&format!("{local}@capulet.lit"), name.as_deref(), &groups), T0);
        }
        let view = f.books[0].view().clone();
        let roster = export::roster(&view, Detail::Full).to_xml();
        let back = import::roster(&roster).expect("valid roster");
        prop_assert_eq!(back.contacts.len(), contacts.len());
        for (c, (local, (name, groups))) in back.contacts.iter().zip(&contacts) {
            prop_assert_eq!(&c.identities[0].value, &format!("{local}@capulet.lit"));
            let kept = view.contacts().find(|m| {
                m.contact.identities[0].value == c.identities[0].value
            }).expect("the contact").contact.name.clone();
            prop_assert_eq!(&c.name, &kept);
            prop_assert_eq!(kept.is_some(), name.as_deref().is_some_and(|n| !n.trim().is_empty()));
            let mut names: Vec<String> = c.groups.iter().map(|g| g.id.clone()).collect();
            names.sort();
            // A group whose name is only spaces is left out of the roster.
            let mut want: Vec<String> = groups
                .iter()
                .map(|g| view.group_by_name(g).expect("the group").group.name.clone())
                .filter(|n| !n.trim().is_empty())
                .collect();
            want.sort();
            want.dedup();
            prop_assert_eq!(names, want);
        }
    }
}
