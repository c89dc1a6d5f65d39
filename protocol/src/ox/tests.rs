//! Tests of `ox`.

use super::*;
use crate::item::NodeKind;
use crate::seal::{self, Secret};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const NOW: WallTime = WallTime(1_780_000_000_000);

fn account() -> BareJid {
    BareJid::parse("romeo@montague.lit").expect("valid")
}

struct Fixture {
    a: DeviceKey,
    b: DeviceKey,
    rng: ChaCha20Rng,
    secret: Secret,
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let secret = Secret::generate(NodeKind::Contacts, NOW, &mut rng);
    Fixture {
        a: DeviceKey::generate(&account(), NOW).expect("keygen"),
        b: DeviceKey::generate(&account(), NOW).expect("keygen"),
        rng,
        secret,
    }
}

fn content(f: &Fixture, to: &str, time: WallTime) -> Content {
    Content {
        to: vec![BareJid::parse(to).expect("valid")],
        time,
        payload: vec![
            SecretMessage::Share {
                jid: account(),
                secret: f.secret.clone(),
            }
            .to_element(),
        ],
    }
}

#[test]
fn signcrypt_round_trip_to_another_device() {
    let mut f = fixture();
    let c = content(&f, "romeo@montague.lit", NOW);
    let msg = signcrypt(&c, &f.a, &[f.a.cert(), f.b.cert()], NOW, &mut f.rng).expect("signcrypt");
    // SEIPD v1: new-format tag 18 packet whose body starts with version 1.
    assert!(msg.windows(2).any(|w| w[0] == 0xD2), "has a SEIPD packet");
    let opened = open(
        &msg,
        &f.b,
        &[f.a.cert()],
        &account(),
        NOW,
        Window::default(),
    )
    .expect("opens");
    assert_eq!(opened.signer, f.a.fingerprint());
    assert_eq!(opened.content.payload.len(), 1);
    let Some(Ok(SecretMessage::Share { secret, .. })) =
        SecretMessage::from_element(&opened.content.payload[0])
    else {
        panic!("shared secret expected")
    };
    assert_eq!(secret, f.secret);
    let wrapped = wrap(&msg);
    assert_eq!(
        unwrap(&Element::parse(&wrapped.to_xml(), xml::Limits::IMPORT).expect("parses")),
        Ok(msg)
    );
    let key = DeviceKey::from_bytes(&f.a.to_bytes()).expect("key reloads");
    assert_eq!(key.fingerprint(), f.a.fingerprint());
}

#[test]
fn each_failed_check_has_its_error() {
    let mut f = fixture();
    let c = content(&f, "romeo@montague.lit", NOW);
    let msg = signcrypt(&c, &f.a, &[f.b.cert()], NOW, &mut f.rng).expect("signcrypt");
    let w = Window::default();
    assert_eq!(
        open(&msg, &f.b, &[f.b.cert()], &account(), NOW, w),
        Err(Error::UntrustedSigner)
    );
    assert_eq!(
        open(&msg, &f.a, &[f.a.cert()], &account(), NOW, w),
        Err(Error::NotForThisDevice)
    );
    let other = BareJid::parse("juliet@capulet.lit").expect("valid");
    assert_eq!(
        open(&msg, &f.b, &[f.a.cert()], &other, NOW, w),
        Err(Error::WrongRecipient)
    );
    let later = WallTime(NOW.0 + w.max_age_ms + 1);
    assert_eq!(
        open(&msg, &f.b, &[f.a.cert()], &account(), later, w),
        Err(Error::Stale)
    );
    let future = content(&f, "romeo@montague.lit", WallTime(NOW.0 + 3_600_000));
    let msg2 = signcrypt(&future, &f.a, &[f.b.cert()], NOW, &mut f.rng).expect("signcrypt");
    assert_eq!(
        open(&msg2, &f.b, &[f.a.cert()], &account(), NOW, w),
        Err(Error::Future)
    );
    let mut tampered = msg.clone();
    let n = tampered.len();
    tampered[n - 10] ^= 1;
    assert!(open(&tampered, &f.b, &[f.a.cert()], &account(), NOW, w).is_err());
    assert!(matches!(
        open(
            &msg[..msg.len() / 2],
            &f.b,
            &[f.a.cert()],
            &account(),
            NOW,
            w
        ),
        Err(Error::OpenPgp(_)) | Err(Error::TooLarge { .. })
    ));
    // A stamp that disagrees with the signature time by more than 5 minutes.
    let skewed = content(&f, "romeo@montague.lit", WallTime(NOW.0 - 3_600_000));
    let msg3 = signcrypt(&skewed, &f.a, &[f.b.cert()], NOW, &mut f.rng).expect("signcrypt");
    assert_eq!(
        open(&msg3, &f.b, &[f.a.cert()], &account(), NOW, w),
        Err(Error::TimeMismatch)
    );
}

#[test]
fn an_unsigned_message_is_refused() {
    let f = fixture();
    let policy = StandardPolicy::new();
    let t = system_time(NOW);
    let cert = f.b.cert();
    let keys: Vec<_> = cert
        .keys()
        .with_policy(&policy, t)
        .for_transport_encryption()
        .collect();
    let mut out = Vec::new();
    let message = Encryptor::for_recipients(Message::new(&mut out), keys)
        .build()
        .expect("encryptor");
    let mut w = LiteralWriter::new(message).build().expect("literal");
    w.write_all(b"<signcrypt xmlns='urn:xmpp:openpgp:0'/>")
        .expect("write");
    w.finalize().expect("finalize");
    assert_eq!(
        open(
            &out,
            &f.b,
            &[f.a.cert()],
            &account(),
            NOW,
            Window::default()
        ),
        Err(Error::NoSignature)
    );
}

#[test]
fn content_requires_signcrypt_to_time_and_payload() {
    let parse =
        |s: &str| Content::from_element(&Element::parse(s, xml::Limits::ITEM).expect("xml"));
    assert!(matches!(
        parse("<crypt xmlns='urn:xmpp:openpgp:0'/>"),
        Err(Error::NotSigncrypt(_))
    ));
    assert_eq!(
        parse(
            "<signcrypt xmlns='urn:xmpp:openpgp:0'><time stamp='2026-01-01T00:00:00Z'/><payload/></signcrypt>"
        ),
        Err(Error::Missing("<to/>"))
    );
    assert_eq!(
        parse("<signcrypt xmlns='urn:xmpp:openpgp:0'><to jid='a@b'/><payload/></signcrypt>"),
        Err(Error::Missing("<time/>"))
    );
    assert_eq!(
        parse(
            "<signcrypt xmlns='urn:xmpp:openpgp:0'><to jid='a@b'/><time stamp='yesterday'/><payload/></signcrypt>"
        ),
        Err(Error::BadTime)
    );
    assert_eq!(
        parse(
            "<signcrypt xmlns='urn:xmpp:openpgp:0'><to jid='a@b'/><time stamp='2026-01-01T00:00:00Z'/></signcrypt>"
        ),
        Err(Error::Missing("<payload/>"))
    );
}

#[test]
fn revoke_round_trip() {
    let m = SecretMessage::Revoke {
        jid: account(),
        node: NodeKind::Groups,
        id: "k1".into(),
        reasons: vec![(Some("en".into()), "old phone lost".into())],
    };
    assert_eq!(SecretMessage::from_element(&m.to_element()), Some(Ok(m)));
    let bad = Element::new(seal::NS, "revoke").with_attr("jid", "a@b");
    assert_eq!(
        SecretMessage::from_element(&bad),
        Some(Err(Error::BadSecretElement("revoke")))
    );
}
