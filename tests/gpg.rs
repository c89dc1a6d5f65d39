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
