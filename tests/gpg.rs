//! Interoperability with GnuPG: kith's sealed items decrypt with `gpg -d`, and
//! `gpg --symmetric` items open with `kith item open`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::util::*;

const SECRET: &str = "Wc3rT9b2ZqL1xv8NmE4kP7sY0aHfJdGu";
const PAYLOAD: &str = "<contact xmlns='urn:xmpp:contacts:0' name='Juliet'>\
    <identity type='jid'>juliet@capulet.lit</identity><group id='g-1'/></contact>";

#[test]
fn kith_items_decrypt_with_gpg() {
    let Some(gpg) = Gpg::new() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = file(dir.path(), "secret", format!("{SECRET}\n"));
    let payload = file(dir.path(), "payload.xml", PAYLOAD);
    let out = kith(
        &[
            "item",
            "seal",
            "--node",
            "contacts",
            "--secret-file",
            path(&secret),
            "--key-id",
            "k-1",
            "--in",
            path(&payload),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let element = stdout(&out);
    assert!(
        element.starts_with("<encrypted xmlns='urn:xmpp:openpgp:pubsub:0' key='k-1'>"),
        "{element}"
    );
    let b64 = element
        .split('>')
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("element text");
    let binary = file(
        dir.path(),
        "item.pgp",
        STANDARD.decode(b64).expect("base64"),
    );
    let out = gpg.run(&["--passphrase-file", path(&secret), "-d", path(&binary)]);
    assert!(out.status.success(), "gpg: {}", stderr(&out));
    let plain = stdout(&out);
    assert_eq!(
        plain.trim_end(),
        PAYLOAD,
        "the payload, followed by padding spaces only"
    );
    assert_eq!(plain.len() % 256, 0, "padded to the 256-byte bucket");
    assert!(stderr(&out).contains("AES256"), "{}", stderr(&out));
}

#[test]
fn gpg_symmetric_items_open_with_kith() {
    let Some(gpg) = Gpg::new() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = file(dir.path(), "secret", format!("{SECRET}\n"));
    let payload = file(dir.path(), "payload.xml", PAYLOAD);
    let encrypted = dir.path().join("p.gpg");
    let out = gpg.run(&[
        "--passphrase-file",
        path(&secret),
        "--symmetric",
        "-o",
        path(&encrypted),
        path(&payload),
    ]);
    assert!(out.status.success(), "gpg: {}", stderr(&out));
    let element = format!(
        "<encrypted xmlns='urn:xmpp:openpgp:pubsub:0' key='k-1'>{}</encrypted>",
        STANDARD.encode(std::fs::read(&encrypted).expect("gpg output"))
    );
    let out = kith(
        &["item", "open", "--secret-file", path(&secret)],
        Some(&element),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim_end(), PAYLOAD);
    // The wrong secret: a one-line error and exit code 3.
    let wrong = file(dir.path(), "wrong", "not the secret\n");
    let out = kith(
        &["item", "open", "--secret-file", path(&wrong)],
        Some(&element),
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn gpg_reads_signcrypt_sent_to_a_device_certificate() {
    use kith_protocol::clock::WallTime;
    use kith_protocol::item::NodeKind;
    use kith_protocol::jid::BareJid;
    use kith_protocol::ox::{self, DeviceKey, SecretMessage};
    use kith_protocol::seal::Secret;
    use rand_core::SeedableRng;

    let Some(gpg) = Gpg::new() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let now = WallTime(1_780_000_000_000);
    let account = BareJid::parse("romeo@montague.lit").expect("valid");
    let sender = DeviceKey::generate(&account, now).expect("keygen");
    let device = DeviceKey::generate(&account, now).expect("keygen");
    let tsk = file(dir.path(), "device.key", device.to_bytes());
    let sender_cert = file(dir.path(), "sender.pub", ox::cert_to_bytes(&sender.cert()));
    for key in [&tsk, &sender_cert] {
        let out = gpg.run(&["--import", path(key)]);
        assert!(out.status.success(), "gpg --import: {}", stderr(&out));
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let secret = Secret::generate(NodeKind::Contacts, now, &mut rng);
    let content = ox::Content {
        to: vec![account.clone()],
        time: now,
        payload: vec![
            SecretMessage::Share {
                jid: account,
                secret: secret.clone(),
            }
            .to_element(),
        ],
    };
    let message =
        ox::signcrypt(&content, &sender, &[device.cert()], now, &mut rng).expect("signcrypt");
    let msg = file(dir.path(), "secret.pgp", message);
    let out = gpg.run(&["-d", path(&msg)]);
    assert!(out.status.success(), "gpg -d: {}", stderr(&out));
    let plain = stdout(&out);
    assert!(
        plain.starts_with("<signcrypt xmlns='urn:xmpp:openpgp:0'>"),
        "{plain}"
    );
    assert!(plain.contains(secret.value.as_str()));
    assert!(stderr(&out).contains("Good signature"), "{}", stderr(&out));
}
