//! Tests of the item codec: the XEP listings, unknown content kept, each class of
//! bad payload refused, and round trips.

use super::*;

#[test]
fn extra_empty_is_one_pointer_and_equal_however_held() {
    assert_eq!(size_of::<Extra>(), size_of::<usize>());
    let mut e = Extra::new(Vec::new(), vec![Element::new("urn:example:ext", "x")]);
    assert!(e.0.is_some() && !e.is_empty());
    // Emptied through `edit`: nothing stays allocated, and it equals (orders and
    // hashes as) an extra that never held anything.
    e.edit(|_, children| children.clear());
    assert!(e.0.is_none());
    let held_empty = Extra(Some(Box::default()));
    assert_eq!(held_empty, Extra::default());
    assert_eq!(held_empty.cmp(&Extra::default()), std::cmp::Ordering::Equal);
    let hash = |e: &Extra| {
        use std::hash::{BuildHasher, BuildHasherDefault};
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(e)
    };
    assert_eq!(hash(&held_empty), hash(&Extra::default()));
    // `absorb` of nothing allocates nothing.
    let mut f = Extra::default();
    f.absorb(&held_empty);
    assert!(f.0.is_none());
}

// Listings 1-3 of XEP-0510 (seeds/000), as printed there.
const LISTING_1: &str = "<publish node='urn:xmpp:contacts'>
  <item id='a1b2c3d4'>
<contact xmlns='urn:xmpp:contacts:0' name='Juliet_Capulet'>
  <identity type='jid'>juliet@example.org</identity>
  <group id='grp-789' />
  <group id='grp-123' />
</contact>
  </item>
</publish>";
const LISTING_2: &str = "<publish node='urn:xmpp:contacts-groups'>
  <item id='grp-789'>
    <group xmlns='urn:xmpp:contacts:0' id='grp-789' name='Friends'
      />
  </item>
</publish>";
const LISTING_3: &str = "<publish node='urn:xmpp:contacts'>
  <item id='a1b2c3d5'>
    <reserved xmlns='urn:xmpp:contacts:0' />
  </item>
</publish>";
const SEED_GROUP: &str = "<group xmlns='urn:xmpp:contacts:0' id='grp-789' name='Friends'>\
    <description>Close friends and family</description></group>";

fn item_payload(listing: &str) -> Payload {
    let publish = Element::parse(listing, xml::Limits::ITEM).expect("listing parses");
    let item = publish.elements().next().expect("one item");
    Payload::from_element(item.elements().next().expect("one payload")).expect("valid payload")
}

#[test]
fn parses_the_xep_listings() {
    let Payload::Contact(c) = item_payload(LISTING_1) else {
        panic!("not a contact")
    };
    assert_eq!(c.name.as_deref(), Some("Juliet_Capulet"));
    assert_eq!(c.identities[0].value, "juliet@example.org");
    let ids: Vec<_> = c.groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["grp-789", "grp-123"]);
    let Payload::Group(g) = item_payload(LISTING_2) else {
        panic!("not a group")
    };
    assert_eq!((g.id.as_str(), g.name.as_str()), ("grp-789", "Friends"));
    assert!(matches!(item_payload(LISTING_3), Payload::Reserved(e) if e.is_empty()));
    let Payload::Group(g) = Payload::parse(SEED_GROUP).expect("group") else {
        panic!("not a group")
    };
    assert_eq!(g.description.as_deref(), Some("Close friends and family"));
    assert_eq!(
        Payload::parse(&g_xml(&g)).expect("round trip"),
        Payload::Group(g)
    );
}

fn g_xml(g: &Group) -> String {
    Payload::Group(g.clone()).to_xml()
}

#[test]
fn keeps_unknown_attributes_and_children() {
    let src = "<contact xmlns='urn:xmpp:contacts:0' xmlns:x='urn:example' name='A' x:mood='ok'>\
        <identity type='jid' x:verified='yes'>A@Example.org</identity>\
        <identity type='fingerprint'>ABCD</identity>\
        <x:note lang='en'>likes tea</x:note>\
        <group id='g1' x:pos='2'/></contact>";
    let p = Payload::parse(src).expect("valid");
    let again = Payload::parse(&p.to_xml()).expect("own output");
    assert_eq!(p, again);
    let Payload::Contact(c) = &p else { panic!() };
    assert_eq!(c.identities[0].value, "a@example.org");
    assert_eq!(c.extra.attrs()[0].name, "mood");
    assert_eq!(c.extra.children()[0].name, "note");
    assert_eq!(c.identities[0].extra.attrs()[0].name, "verified");
    assert_eq!(c.groups[0].extra.attrs()[0].name, "pos");
    let group = "<group xmlns='urn:xmpp:contacts:0' id='g' name='n' color='red'>\
        <description xml:lang='de'>Freunde</description><icon xmlns='urn:i'/></group>";
    let g = Payload::parse(group).expect("valid");
    assert_eq!(Payload::parse(&g.to_xml()).expect("own output"), g);
}

#[test]
fn rejects_each_class_of_bad_payload() {
    let e = |s: &str| Payload::parse(s).expect_err("must be rejected");
    assert!(matches!(e("<contact"), Error::Xml(_)));
    assert!(matches!(
        e("<contact xmlns='urn:other'/>"),
        Error::WrongNamespace(_)
    ));
    assert!(matches!(
        e("<person xmlns='urn:xmpp:contacts:0'/>"),
        Error::UnknownElement(_)
    ));
    assert_eq!(
        e("<contact xmlns='urn:xmpp:contacts:0' name='x'/>"),
        Error::NoIdentity
    );
    assert_eq!(
        e("<contact xmlns='urn:xmpp:contacts:0'><identity>a@b</identity></contact>"),
        Error::IdentityWithoutType
    );
    assert!(matches!(
        e("<contact xmlns='urn:xmpp:contacts:0'><identity type='jid'>@b</identity></contact>"),
        Error::InvalidJid(_)
    ));
    assert!(matches!(
        e("<contact xmlns='urn:xmpp:contacts:0'><identity type='jid'> </identity></contact>"),
        Error::EmptyIdentity(_)
    ));
    assert_eq!(
        e("<group xmlns='urn:xmpp:contacts:0' name='x'/>"),
        Error::GroupWithoutId
    );
    assert!(matches!(
        e("<group xmlns='urn:xmpp:contacts:0' id='x'/>"),
        Error::GroupWithoutName(_)
    ));
    let many: String = (0..=MAX_IDENTITIES)
        .map(|i| format!("<identity type='jid'>u{i}@x.lit</identity>"))
        .collect();
    assert_eq!(
        e(&format!(
            "<contact xmlns='urn:xmpp:contacts:0'>{many}</contact>"
        )),
        Error::TooManyIdentities {
            max: MAX_IDENTITIES
        }
    );
    let groups: String = (0..=MAX_GROUP_REFS)
        .map(|i| format!("<group id='{i}'/>"))
        .collect();
    let c = format!(
        "<contact xmlns='urn:xmpp:contacts:0'><identity type='jid'>a@b</identity>{groups}</contact>"
    );
    assert_eq!(
        Payload::parse(&c),
        Err(Error::TooManyGroups {
            max: MAX_GROUP_REFS
        })
    );
    let deep = format!(
        "<contact xmlns='urn:xmpp:contacts:0'>{}{}</contact>",
        "<x>".repeat(10),
        "</x>".repeat(10)
    );
    assert!(matches!(e(&deep), Error::Xml(xml::Error::TooDeep { .. })));
    assert_eq!(
        Payload::parse(SEED_GROUP)
            .expect("valid")
            .check_node(NodeKind::Contacts),
        Err(Error::WrongNode {
            element: "group",
            node: NodeKind::Contacts
        })
    );
}

mod props {
    use super::super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Printable text with XML's special characters, no leading/trailing space
        // (identity values are trimmed).
        "[a-zA-Z0-9<>&'\" .é]{0,12}[a-zA-Z0-9<>&'\"é]"
    }

    fn contact() -> impl Strategy<Value = Contact> {
        (
            proptest::option::of(text()),
            prop::collection::vec(("[a-z]{1,6}", "[a-z]{1,6}"), 1..4),
            prop::collection::btree_set("[a-z0-9-]{1,8}", 0..4),
            prop::collection::vec(("[a-z]{1,5}", text()), 0..3),
            any::<Option<(u64, u8)>>(),
        )
            .prop_map(|(name, ids, groups, extra, stamped)| {
                let mut c = Contact {
                    name,
                    identities: ids
                        .into_iter()
                        .map(|(l, d)| {
                            Identity::new("jid", &format!("{l}@{d}.lit")).expect("valid JID")
                        })
                        .fold(Vec::new(), |mut v, i| {
                            if !v.iter().any(|x: &Identity| x.key() == i.key()) {
                                v.push(i);
                            }
                            v
                        }),
                    groups: groups
                        .into_iter()
                        .map(|id| GroupRef {
                            id,
                            extra: Extra::default(),
                        })
                        .collect(),
                    extra: Extra::new(
                        Vec::new(),
                        extra
                            .into_iter()
                            .map(|(n, t)| {
                                let mut e = Element::new("urn:example:ext", &n);
                                e.push_text(t);
                                e
                            })
                            .collect(),
                    ),
                    stamps: None,
                };
                if let Some((ms, d)) = stamped {
                    // Stamped as kith's own edit would stamp it.
                    let v = crate::record::Version {
                        hlc: crate::clock::Hlc {
                            wall_ms: ms,
                            counter: 0,
                        },
                        device: crate::record::DeviceId([d; 32]),
                    };
                    let mut state = fields::State::of(&c, v).expect("an unstamped contact reads");
                    state.contact_id =
                        Some(format!("{:032x}", u128::from(ms) << 8 | u128::from(d)));
                    state.attach(&mut c, v);
                }
                c
            })
    }

    proptest! {
        #[test]
        fn contact_xml_round_trips(c in contact()) {
            let p = Payload::Contact(c);
            prop_assert_eq!(Payload::parse(&p.to_xml()), Ok(p));
        }

        #[test]
        fn group_xml_round_trips(id in "[a-z0-9-]{1,10}", name in text(), description in proptest::option::of(text())) {
            let p = Payload::Group(Group { id, name, description, extra: Extra::default() });
            prop_assert_eq!(Payload::parse(&p.to_xml()), Ok(p));
        }

        #[test]
        fn parsing_garbage_never_panics(s in "\\PC{0,300}") {
            let _ = Payload::parse(&s);
        }

        #[test]
        fn parsing_near_xml_never_panics(s in "[<>/a-z='\" &;#x0-9:!\\[\\]-]{0,200}") {
            let _ = Payload::parse(&s);
        }
    }
}
