//! Tests of `xml`.

use super::*;

fn p(s: &str) -> Result<Element, Error> {
    Element::parse(s, Limits::ITEM)
}

#[test]
fn the_names_of_field_stamps_are_shared_not_copied() {
    let el = p(&format!(
        "<fields xmlns='{}' stamps='1.0.0' marks='0'><device>ab</device></fields>",
        crate::item::fields::NS
    ))
    .unwrap();
    assert!(matches!(el.ns, Cow::Borrowed(_)));
    assert!(matches!(el.name, Cow::Borrowed(_)));
    assert!(el.attrs.iter().all(|a| matches!(a.name, Cow::Borrowed(_))));
    let device = el.elements().next().unwrap();
    assert!(matches!(device.ns, Cow::Borrowed(_)));
    assert!(matches!(device.name, Cow::Borrowed(_)));
}

#[test]
fn parses_namespaces_attributes_and_text() {
    let el = p(
        "<a xmlns='urn:x' xmlns:f='urn:f' b='1 &amp; 2' f:c='3' xml:lang='en'>\
                <child>t&lt;x&#x41;<![CDATA[<raw>]]></child><f:other/></a>",
    )
    .expect("valid");
    assert_eq!(el.ns, "urn:x");
    assert_eq!(el.attr("b"), Some("1 & 2"));
    assert_eq!(el.attrs[1].ns, "urn:f");
    assert_eq!(el.attrs[2].ns, XML_NS);
    let kids: Vec<_> = el.elements().collect();
    assert_eq!(kids[0].text(), "t<xA<raw>");
    assert_eq!(kids[1].ns, "urn:f");
}

#[test]
fn round_trips_through_serialisation() {
    let src = "<a xmlns='urn:x' xmlns:f='urn:f' f:c='v&apos;' xml:lang='en'>\
               <b xmlns=''>x</b><f:o q='&#10;'/>text</a>";
    let el = p(src).expect("valid");
    let again = p(&el.to_xml()).expect("own output parses");
    assert_eq!(el, again);
}

#[test]
fn refuses_doctype_and_unknown_entities() {
    assert_eq!(
        p("<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>"),
        Err(Error::Doctype)
    );
    assert_eq!(p("<a>&x;</a>"), Err(Error::UnknownEntity("x".into())));
}

/// kith accepts no control characters but tab, newline and carriage return, raw
/// or as references (an import could carry terminal escapes to every device).
#[test]
fn control_characters_are_refused() {
    for bad in [
        "<a>x&#x1b;[31m</a>",
        "<a b='&#27;'/>",
        "<a>\u{1}</a>",
        "<a>&#0;</a>",
    ] {
        assert!(parse(bad, Limits::ITEM).is_err(), "{bad:?}");
    }
    assert!(parse("<a b='&#9;'>x&#10;y\ty</a>", Limits::ITEM).is_ok());
    // DEL and the C1 controls are XML, but not kith's: the message says which rule.
    let del = parse("<a>\u{7f}</a>", Limits::ITEM)
        .unwrap_err()
        .to_string();
    assert!(del.contains("control character U+007F"), "{del}");
    let c1 = parse("<a>&#x85;</a>", Limits::ITEM)
        .unwrap_err()
        .to_string();
    assert!(c1.contains("control character U+0085"), "{c1}");
    let nonchar = parse("<a>\u{FFFF}</a>", Limits::ITEM)
        .unwrap_err()
        .to_string();
    assert!(
        nonchar.contains("U+FFFF is not allowed in XML"),
        "{nonchar}"
    );
}

/// The byte table says what the character test says of every ASCII name of one
/// or two characters (control characters and DEL among them).
#[test]
fn short_ascii_names_are_judged_as_characters_are() {
    for a in 0..=0x7fu8 {
        let one = char::from(a).to_string();
        assert_eq!(is_name(&one), is_name_by_chars(&one), "{one:?}");
        for b in 0..=0x7fu8 {
            let two: String = [char::from(a), char::from(b)].into_iter().collect();
            assert_eq!(is_name(&two), is_name_by_chars(&two), "{two:?}");
        }
    }
}

proptest::proptest! {
    /// The byte table for ASCII names says what the character test says.
    #[test]
    fn ascii_names_are_judged_as_characters_are(name in "[\\x00-\\x7f]{0,6}|\\PC{0,4}") {
        proptest::prop_assert_eq!(is_name(&name), is_name_by_chars(&name));
    }
}

/// Found by the `xml_items` fuzz target: an element with an empty name was read,
/// and written as `</>`.
#[test]
fn elements_need_names() {
    for bad in ["<\t/>", "< a/>", "<a\t=''/>"] {
        assert!(parse(bad, Limits::ITEM).is_err(), "{bad:?}");
    }
    assert!(parse("<a-b.c_d é='1'/>", Limits::ITEM).is_ok());
}

/// Found by the `xml_items` fuzz target: a namespace name is an attribute value,
/// so `&#9;` in it is a tab, and a round trip keeps it one.
#[test]
fn namespace_names_are_unescaped_like_attribute_values() {
    let el = parse("<a xmlns='urn:x&#9;y&amp;z'/>", Limits::ITEM).expect("parses");
    assert_eq!(el.ns, "urn:x\ty&z");
    let again = parse(&el.to_xml(), Limits::ITEM).expect("writes back");
    assert_eq!(again, el);
}

#[test]
fn enforces_limits() {
    let deep = "<a>".repeat(9) + &"</a>".repeat(9);
    assert_eq!(p(&deep), Err(Error::TooDeep { max: 8 }));
    let big = format!("<a>{}</a>", "x".repeat(20_000));
    assert!(matches!(p(&big), Err(Error::TooLarge { .. })));
    let many = format!("<a>{}</a>", "<b/>".repeat(600));
    assert_eq!(p(&many), Err(Error::TooManyElements { max: 512 }));
}

#[test]
fn rejects_malformed_and_trailing_input() {
    assert!(matches!(p("<a><b></a>"), Err(Error::Malformed(_))));
    assert!(matches!(p("<a>"), Err(Error::Malformed(_))));
    assert_eq!(p(""), Err(Error::Empty));
    assert_eq!(p("<a/><b/>"), Err(Error::TrailingContent));
    assert_eq!(p("<a/>junk"), Err(Error::TrailingContent));
    assert!(matches!(p("<p:a/>"), Err(Error::UnboundPrefix(_))));
    // Trailing whitespace (kith's size padding) is fine.
    assert!(p("<a/>   \n  ").is_ok());
}
