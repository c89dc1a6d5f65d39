#!/usr/bin/env python3
"""Drives kith's PEP service with slixmpp, as an XMPP client written for a server's
PEP would, and checks every answer with slixmpp's and GnuPG's own code (never
kith's). Run by tests/xmpp.rs; exits non-zero with a message on the first failure.

Two kith devices of one account, A and B, each with one approved client (its own
GnuPG key). Client A publishes on A; client B, subscribed on B, gets the event.
"""

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0059 import Set
from slixmpp.plugins.xep_0060.stanza import Pubsub
from slixmpp.xmlstream import register_stanza_plugin
from slixmpp.stanza import StreamFeatures
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

OX = "urn:xmpp:openpgp:0"
OXPS = "urn:xmpp:openpgp:pubsub:0"
CONTACTS = "urn:xmpp:contacts"
GROUPS = "urn:xmpp:contacts-groups"
PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
DEADLINE = 60


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Gpg:
    def __init__(self, home):
        self.home = home

    def run(self, args, data=None):
        return subprocess.run(
            ["gpg", "--homedir", self.home, "--batch", "--yes", "--pinentry-mode", "loopback"] + args,
            input=data, capture_output=True)

    def decrypt(self, data):
        out = self.run(["--decrypt"], data)
        check(out.stdout, f"gpg cannot decrypt: {out.stderr.decode(errors='replace')}")
        return out.stdout

    def seal(self, secret, plaintext, s2k=()):
        """An XEP-0473 item, made by GnuPG: SKESK + SEIPD, no compression."""
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write(secret)
            pw = f.name
        try:
            out = self.run(["--passphrase-file", pw, *s2k, "--symmetric", "--cipher-algo",
                            "AES256", "--compress-algo", "none", "-o", "-"], plaintext.encode())
        finally:
            os.unlink(pw)
        check(out.returncode == 0, f"gpg --symmetric: {out.stderr.decode(errors='replace')}")
        return out.stdout


def encrypted(key, data):
    el = ET.Element(f"{{{OXPS}}}encrypted", {"key": key})
    el.text = base64.b64encode(data).decode()
    return el


def contact(jid, name, more=""):
    return (f"<contact xmlns='urn:xmpp:contacts:0' name='{name}'>"
            f"<identity type='jid'>{jid}</identity>{more}</contact>")


# XEP-0059 inside <pubsub/> (XEP-0060 §6.5.4): slixmpp's iterator needs this.
register_stanza_plugin(Pubsub, Set)


class Client(slixmpp.BaseXMPP):
    """A link-local client: a stream to the node's instance, no SASL or binding
    (XEP-0174)."""

    def __init__(self, name, instance, gpg, notify):
        super().__init__(f"{name}@client", "jabber:client")
        self.instance = instance
        self.gpg = gpg
        self.stream_header = (
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
            f"from='{name}@client' to='{instance}' version='1.0'>")
        self.stream_footer = "</stream:stream>"
        # A plain TCP stream to the node (XEP-0174 has no TLS here).
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self.register_stanza(StreamFeatures)
        self.register_handler(Callback(
            "features", MatchXPath(f"{{{self.stream_ns}}}features"), self._features))
        for p in ["xep_0030", "xep_0004", "xep_0059", "xep_0060", "xep_0115", "xep_0163"]:
            self.register_plugin(p)
        if notify:
            self.plugin["xep_0163"].add_interest(CONTACTS)
        self.started = asyncio.get_event_loop().create_future()
        self.secrets = []          # every <signcrypt/> payload received, decrypted
        self.secrets_event = asyncio.Event()
        self.events = []           # (kind, node, id, payload element or None)
        self.events_changed = asyncio.Event()
        self.register_handler(Callback(
            "ox", MatchXPath(f"{{jabber:client}}message/{{{OX}}}openpgp"), self._message))
        self.add_event_handler("pubsub_publish", self._publish)
        self.add_event_handler("pubsub_retract", self._retract)
        self.notify = notify

    def register_feature(self, name, handler, restart=False, order=5000):
        """Stream features (caps in features, SASL...) need no negotiation here."""

    def _features(self, features):
        self.event("session_start")
        if not self.started.done():
            self.started.set_result(features)
        if self.notify:
            self.send_presence()

    def _message(self, msg):
        openpgp = msg.xml.find(f"{{{OX}}}openpgp")
        if openpgp is None:
            return
        out = self.gpg.run(["--decrypt"], base64.b64decode(openpgp.text))
        if not out.stdout:
            self.secrets.append(None)  # not for this client
        else:
            self.secrets.append(ET.fromstring(out.stdout))
        self.secrets_event.set()

    def _publish(self, msg):
        item = msg["pubsub_event"]["items"]["item"]
        payload = item.xml.find(f"{{{OXPS}}}encrypted")
        self.events.append(("publish", msg["pubsub_event"]["items"]["node"], item["id"], payload))
        self.events_changed.set()

    def _retract(self, msg):
        self.events.append(("retract", msg["pubsub_event"]["items"]["node"],
                            msg["pubsub_event"]["items"]["retract"]["id"], None))
        self.events_changed.set()

    async def wait_event(self, kind, item_id):
        async def find():
            while True:
                for e in self.events:
                    if e[0] == kind and e[2] == item_id:
                        return e
                self.events_changed.clear()
                await self.events_changed.wait()
        return await asyncio.wait_for(find(), DEADLINE)

    async def wait_secret(self, predicate):
        async def find():
            while True:
                for s in self.secrets:
                    if s is not None and predicate(s):
                        return s
                self.secrets_event.clear()
                await self.secrets_event.wait()
        return await asyncio.wait_for(find(), DEADLINE)


def current_secret(signcrypt, node=CONTACTS):
    """The newest unrevoked secret of `node` in a decrypted <signcrypt/>."""
    check(signcrypt.tag == f"{{{OX}}}signcrypt", f"not a signcrypt: {signcrypt.tag}")
    shares = [s for s in signcrypt.iter(f"{{{OXPS}}}shared-secret")
              if s.get("node") == node and s.get("revoked") != "true"]
    check(shares, f"no current secret for {node}")
    newest = max(shares, key=lambda s: s.get("timestamp"))
    check(len(newest.text) >= 32, "a secret of at least 32 characters")
    return newest.get("id"), newest.text


def pubsub_error(e):
    cond = e.iq["error"]["condition"]
    specific = [c.tag.split("}")[1] for c in e.iq.xml.iter() if c.tag.startswith(f"{{{PUBSUB_ERRORS}}}")]
    return cond, (specific[0] if specific else None)


async def refused(coro, want_cond, want_specific, what):
    try:
        await coro
    except IqError as e:
        got = pubsub_error(e)
        check(got == (want_cond, want_specific), f"{what}: got {got}, want {(want_cond, want_specific)}")
        return
    fail(f"{what}: accepted")


async def raw_publish(client, inner):
    iq = client.make_iq_set(ito=client.instance)
    iq.xml.append(ET.fromstring(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:contacts'>"
        f"<item id='{os.urandom(16).hex()}'>{inner}</item></publish></pubsub>"))
    return await iq.send(timeout=DEADLINE)


def options(client, **fields):
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    for k, v in fields.items():
        form.add_field(var=f"pubsub#{k}", value=v)
    return form


async def main(args):
    gpg_a, gpg_b = Gpg(args.gnupg_a), Gpg(args.gnupg_b)
    a = Client("alice", args.instance_a, gpg_a, notify=True)
    b = Client("bob", args.instance_b, gpg_b, notify=False)
    a.connect("127.0.0.1", args.port_a)
    b.connect("127.0.0.1", args.port_b)
    features = await asyncio.wait_for(a.started, DEADLINE)
    await asyncio.wait_for(b.started, DEADLINE)

    # Disco: the service is a PEP service with exactly the pubsub features used here.
    info = await a.plugin["xep_0030"].get_info(jid=args.instance_a, timeout=DEADLINE)
    check(("pubsub", "pep", "kith", None) in [tuple(i) for i in info["disco_info"]["identities"]]
          or any(i[0] == "pubsub" and i[1] == "pep" for i in info["disco_info"]["identities"]),
          f"identity pubsub/pep: {info['disco_info']['identities']}")
    feats = set(info["disco_info"]["features"])
    for f in ["http://jabber.org/protocol/pubsub#publish", "http://jabber.org/protocol/pubsub#retract-items",
              "http://jabber.org/protocol/pubsub#publish-options", "http://jabber.org/protocol/rsm", OXPS]:
        check(f in feats, f"feature {f} advertised")
    check("http://jabber.org/protocol/pubsub#purge-nodes" not in feats, "no purge advertised")
    node_info = await a.plugin["xep_0030"].get_info(jid=args.instance_a, node=CONTACTS, timeout=DEADLINE)
    form = node_info["disco_info"]["form"]["values"]
    check(form.get("pubsub#access_model") == "whitelist", f"access_model: {form}")
    check(form.get("pubsub#persist_items") in ("true", True, "1"), f"persist_items: {form}")
    check(form.get("pubsub#max_items") == "max", f"max_items: {form}")
    items = await a.plugin["xep_0030"].get_items(jid=args.instance_a, timeout=DEADLINE)
    nodes = {i[1] for i in items["disco_items"]["items"]}
    check(nodes == {"urn:xmpp:contacts", "urn:xmpp:contacts-groups"}, f"disco#items: {nodes}")

    # Client B offers its key the XEP-0373 way, on the stream; the user approves it
    # by fingerprint (client A was approved with `kith client add --cert`).
    cert_b = gpg_b.run(["--export", args.fpr_b]).stdout
    check(cert_b, "gpg exports B's certificate")
    iq = b.make_iq_set(ito=args.instance_b)
    iq.xml.append(ET.fromstring(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        f"<publish node='urn:xmpp:openpgp:0:public-keys:{args.fpr_b}'>"
        "<item id='2026-11-30T09:00:00Z'><pubkey xmlns='urn:xmpp:openpgp:0'>"
        f"<data>{base64.b64encode(cert_b).decode()}</data></pubkey></item>"
        "</publish></pubsub>"))
    await iq.send(timeout=DEADLINE)
    check(not b.secrets, "nothing before approval")
    listed = subprocess.run([args.kith, "--data-dir", args.dir_b, "client", "list", "--json"],
                            capture_output=True, check=True).stdout.decode()
    check(args.fpr_b in listed and "waiting" in listed, f"B's key waits: {listed}")
    subprocess.run([args.kith, "--data-dir", args.dir_b, "client", "approve", args.fpr_b], check=True)

    # Secrets: each client gets its device's secrets, encrypted to its GnuPG key.
    secrets_a = await a.wait_secret(lambda s: True)
    key_a, secret_a = current_secret(secrets_a)
    secrets_b = await b.wait_secret(lambda s: True)
    key_b, _ = current_secret(secrets_b)
    check(key_a == key_b, "both devices hold the same current secret")

    # B subscribes explicitly; A is notified through its +notify caps.
    sub = await b.plugin["xep_0060"].subscribe(args.instance_b, CONTACTS, timeout=DEADLINE)
    check(sub["pubsub"]["subscription"]["subscription"] == "subscribed", "subscribed")

    # Publish on A, with the preconditions a XEP-0510 client sends.
    item_id = os.urandom(16).hex()
    # With an identity of another type (XEP-0510 allows any): kept, shown apart.
    sealed = gpg_a.seal(secret_a, contact("juliet@capulet.lit", "Juliet",
                                          "<identity type='tel'>+1 555 0100</identity>"))
    opts = options(a, persist_items="true", access_model="whitelist", max_items="max")
    res = await a.plugin["xep_0060"].publish(args.instance_a, CONTACTS, id=item_id,
                                      payload=encrypted(key_a, sealed), options=opts, timeout=DEADLINE)
    check(res["pubsub"]["publish"]["item"]["id"] == item_id, "publish answers the item id")

    # B is notified with the same item; GnuPG opens it with the secret B holds.
    _, node, _, payload = await b.wait_event("publish", item_id)
    check(node == CONTACTS, f"event node {node}")
    check(payload is not None and payload.get("key") == key_a, "the event carries the sealed item")
    secret_b = current_secret(secrets_b)[1]
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write(secret_b)
    plain = gpg_b.run(["--passphrase-file", f.name, "--decrypt"], base64.b64decode(payload.text)).stdout
    os.unlink(f.name)
    check(b"juliet@capulet.lit" in plain and b"Juliet" in plain, f"B reads the contact: {plain[:200]}")
    check(b"+1 555 0100" in plain, f"the tel identity travels: {plain[:300]}")

    # kith on B lists the JID as the contact's address and the tel identity apart.
    def kith_b(*cmd):
        return subprocess.run([args.kith, "--data-dir", args.dir_b, *cmd],
                              capture_output=True, check=True).stdout.decode()
    shown = json.loads(kith_b("contact", "show", "juliet@capulet.lit", "--json"))
    check(shown["jids"] == ["juliet@capulet.lit"], f"only the JID is an address: {shown}")
    check(shown["other_identities"] == [{"type": "tel", "value": "+1 555 0100"}],
          f"the tel identity is shown apart: {shown}")
    check("other:   tel: +1 555 0100" in kith_b("contact", "show", "Juliet"), "show prints it")
    found = json.loads(kith_b("contact", "list", "--search", "555 0100", "--json"))
    check([c["jids"] for c in found] == [["juliet@capulet.lit"]], f"search finds it: {found}")
    await a.wait_event("publish", item_id)

    # Retrieve: all, by id, max_items, and XEP-0059 pages.
    got = await a.plugin["xep_0060"].get_items(args.instance_a, CONTACTS, timeout=DEADLINE)
    ids = [i["id"] for i in got["pubsub"]["items"]]
    check(item_id in ids, "the item is listed")
    one = await b.plugin["xep_0060"].get_item(args.instance_b, CONTACTS, item_id, timeout=DEADLINE)
    check([i["id"] for i in one["pubsub"]["items"]] == [item_id], "retrieve by id")
    newest = await a.plugin["xep_0060"].get_items(args.instance_a, CONTACTS, max_items=1, timeout=DEADLINE)
    check(len(list(newest["pubsub"]["items"])) == 1, "max_items=1 gives one item")
    paged = []
    pages = 0
    async for page in a.plugin["xep_0060"].get_items(args.instance_a, CONTACTS, iterator=True):
        pages += 1
        paged += [i["id"] for i in page["pubsub"]["items"]]
        check(pages < 100, "paging ends")
    check(sorted(paged) == sorted(ids) and len(set(paged)) == len(paged),
          f"pages of 10 give every item once: {len(paged)} of {len(ids)}")
    check(pages >= 2, f"more than one page ({len(ids)} items)")
    await refused(a.plugin["xep_0060"].get_item(args.instance_a, CONTACTS, "f" * 32, timeout=DEADLINE),
                  "item-not-found", None, "an unknown item")

    # Preconditions that do not hold.
    for field, value in [("access_model", "open"), ("max_items", "1"), ("persist_items", "false")]:
        await refused(a.plugin["xep_0060"].publish(args.instance_a, CONTACTS, payload=encrypted(key_a, sealed),
                                            options=options(a, **{field: value}), timeout=DEADLINE),
                      "conflict", "precondition-not-met", f"{field}={value}")

    # Bad payloads: refused, and nothing is stored.
    async def count():
        n = 0
        async for page in a.plugin["xep_0060"].get_items(args.instance_a, CONTACTS, iterator=True):
            n += len(list(page["pubsub"]["items"]))
        return n
    items_before = await count()
    unknown_key = encrypted("no-such-key", sealed)
    wrong = encrypted(key_a, gpg_a.seal("x" * 40, contact("mallory@evil.lit", "M")))
    not_0510 = encrypted(key_a, gpg_a.seal(secret_a, "<note xmlns='urn:example'>hi</note>"))
    for what, inner in [
        ("unencrypted", contact("mallory@evil.lit", "M")),
        ("unknown key id", ET.tostring(unknown_key).decode()),
        ("not decryptable", ET.tostring(wrong).decode()),
        ("not XEP-0510", ET.tostring(not_0510).decode()),
        ("two payloads", ET.tostring(encrypted(key_a, sealed)).decode() * 2),
    ]:
        await refused(raw_publish(a, inner), "bad-request", "invalid-payload", what)
    big = encrypted(key_a, os.urandom(40 * 1024))
    await refused(raw_publish(a, ET.tostring(big).decode()), "not-acceptable", "payload-too-big",
                  "oversized")
    two = a.make_iq_set(ito=args.instance_a)
    two.xml.append(ET.fromstring(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='urn:xmpp:contacts'>"
        f"<item id='{item_id}'/><item id='{item_id}'/></retract></pubsub>"))
    await refused(two.send(timeout=DEADLINE), "bad-request", None, "two items in one retract")
    check(await count() == items_before, "nothing stored by refused requests")

    # An item id of the client's own choosing, as in XEP-0510's examples: kept on
    # this device (retrieve, retract and events use it).
    gkey, gsecret = current_secret(secrets_a, GROUPS)
    group = gpg_a.seal(gsecret, "<group xmlns='urn:xmpp:contacts:0' id='grp-789' name='Friends'/>")
    res = await a.plugin["xep_0060"].publish(args.instance_a, GROUPS, id="grp-789",
                                             payload=encrypted(gkey, group), timeout=DEADLINE)
    check(res["pubsub"]["publish"]["item"]["id"] == "grp-789", "publish answers the chosen id")
    got = await a.plugin["xep_0060"].get_item(args.instance_a, GROUPS, "grp-789", timeout=DEADLINE)
    check([i["id"] for i in got["pubsub"]["items"]] == ["grp-789"], "retrieve by the chosen id")
    await a.plugin["xep_0060"].retract(args.instance_a, GROUPS, "grp-789", timeout=DEADLINE)
    await refused(a.plugin["xep_0060"].get_item(args.instance_a, GROUPS, "grp-789", timeout=DEADLINE),
                  "item-not-found", None, "a retracted group")

    # Retract with notify: B hears it; the item is gone.
    await a.plugin["xep_0060"].retract(args.instance_a, CONTACTS, item_id, notify=True, timeout=DEADLINE)
    await b.wait_event("retract", item_id)
    await refused(b.plugin["xep_0060"].get_item(args.instance_b, CONTACTS, item_id, timeout=DEADLINE),
                  "item-not-found", None, "a retracted item")

    # A change made on device A by the CLI reaches client B as an event too.
    subprocess.run([args.kith, "--data-dir", args.dir_a, "contact", "add", "mercutio@verona.lit"], check=True)
    async def any_new_publish():
        while not any(e[0] == "publish" and e[2] != item_id for e in b.events):
            b.events_changed.clear()
            await b.events_changed.wait()
    await asyncio.wait_for(any_new_publish(), DEADLINE)

    # Client A is removed on device A: the secrets rotate; B's client gets the new
    # secret, A's client gets nothing it can read, and its old secret seals nothing.
    before = len(a.secrets)
    out = subprocess.run([args.kith, "--data-dir", args.dir_a, "client", "rm", args.fpr_a],
                         capture_output=True)
    check(out.returncode == 0, f"kith client rm: {out.stderr}")
    rotated = await b.wait_secret(lambda s: current_secret(s)[0] != key_a)
    revoked = [r for r in rotated.iter(f"{{{OXPS}}}revoke") if r.get("id") == key_a]
    check(revoked, "the old secret is revoked")
    check(all(s is None for s in a.secrets[before:]), "the removed client reads nothing new")
    stale = gpg_a.seal(secret_a, contact("tybalt@capulet.lit", "T"))
    await refused(a.plugin["xep_0060"].publish(args.instance_a, CONTACTS, payload=encrypted(key_a, stale),
                                        timeout=DEADLINE),
                  "bad-request", "invalid-payload", "publishing with a revoked secret")
    a.disconnect()
    b.disconnect()
    print("ok")


async def lan(args):
    """A client on another machine: disco is open; pubsub is forbidden unless the
    node serves the LAN (--xmpp-lan)."""
    c = Client("carol", args.instance, Gpg(tempfile.mkdtemp()), notify=False)
    c.connect(args.host, args.port)
    await asyncio.wait_for(c.started, DEADLINE)
    info = await c.plugin["xep_0030"].get_info(jid=args.instance, timeout=DEADLINE)
    check(any(i[0] == "pubsub" and i[1] == "pep" for i in info["disco_info"]["identities"]),
          "disco answers a LAN client")
    items = c.plugin["xep_0060"].get_items(args.instance, CONTACTS, timeout=DEADLINE)
    if args.allowed:
        await items
    else:
        await refused(items, "forbidden", None, "pubsub from the LAN")
        await refused(c.plugin["xep_0060"].subscribe(args.instance, CONTACTS, timeout=DEADLINE),
                      "forbidden", None, "a subscription from the LAN")
    c.disconnect()
    print("ok")


async def relay(args):
    """A client of a relay device: it serves the sealed items, as an XMPP server
    does under XEP-0510 (only a client given the secrets by a full device opens
    them), and refuses writes (it holds no secret)."""
    c = Client("dave", args.instance, Gpg(tempfile.mkdtemp()), notify=False)
    c.connect("127.0.0.1", args.port)
    await asyncio.wait_for(c.started, DEADLINE)
    items = await c.plugin["xep_0060"].get_items(args.instance, CONTACTS, timeout=DEADLINE)
    payloads = [list(i.xml)[0] for i in items["pubsub"]["items"]]
    check(len(payloads) >= args.at_least, f"a relay serves the sealed items ({len(payloads)})")
    check(all(p.tag == f"{{{OXPS}}}encrypted" for p in payloads),
          f"every item is sealed: {[p.tag for p in payloads]}")
    await refused(c.plugin["xep_0060"].retract(args.instance, CONTACTS, os.urandom(16).hex(),
                                               timeout=DEADLINE),
                  "forbidden", None, "a retraction on a relay")
    c.disconnect()
    print("ok")


async def mdns(args):
    """Finds the node's XEP-0174 advertisement with python-zeroconf (not kith's
    mDNS code), connects to the SRV target it names, and checks that the TXT caps
    (hash, node, ver) are those of the disco#info the stream answers, as computed
    by slixmpp's XEP-0115 code."""
    from zeroconf import ServiceBrowser, Zeroconf
    service = "_presence._tcp.local."
    name = f"{args.instance}.{service}"
    zc = Zeroconf()
    try:
        found = asyncio.get_event_loop().create_future()

        class Listener:
            def add_service(self, zc_, type_, n):
                if n == name and not found.done():
                    found.get_loop().call_soon_threadsafe(found.set_result, n)

            def update_service(self, *a):
                pass

            def remove_service(self, *a):
                pass

        ServiceBrowser(zc, service, Listener())
        await asyncio.wait_for(found, DEADLINE)
        info = None
        for _ in range(DEADLINE):
            info = await asyncio.get_event_loop().run_in_executor(
                None, lambda: zc.get_service_info(service, name, 3000))
            if info and info.parsed_addresses():
                break
        check(info is not None, f"{name} resolves")
        txt = {k.decode(): (v.decode() if v is not None else None) for k, v in info.properties.items()}
    finally:
        zc.close()
    check(txt.get("txtvers") == "1", f"txtvers: {txt}")
    check(txt.get("port.p2pj") == str(info.port), f"port.p2pj is the SRV port: {txt}")
    check(txt.get("hash") == "sha-1" and txt.get("node") and txt.get("ver"), f"caps in TXT: {txt}")
    check("jid" not in txt and "1st" not in txt and "last" not in txt, f"no account data: {txt}")
    host = [a for a in info.parsed_addresses() if ":" not in a][0]
    c = Client("dave", args.instance, Gpg(tempfile.mkdtemp()), notify=False)
    c.connect(host, info.port)
    await asyncio.wait_for(c.started, DEADLINE)
    got = await c.plugin["xep_0030"].get_info(jid=args.instance, node=f"{txt['node']}#{txt['ver']}",
                                              timeout=DEADLINE)
    ver = c.plugin["xep_0115"].generate_verstring(got["disco_info"], "sha-1")
    check(ver == txt["ver"], f"TXT ver {txt['ver']} is the disco#info's ({ver})")
    c.disconnect()
    print("ok")


async def latency(args):
    """Figures, not checks: how long a publish on A takes to be answered, and to
    reach a client subscribed on B (median and 90th percentile of N)."""
    import statistics
    import time
    gpg_a, gpg_b = Gpg(args.gnupg_a), Gpg(args.gnupg_b)
    a = Client("alice", args.instance_a, gpg_a, notify=False)
    b = Client("bob", args.instance_b, gpg_b, notify=False)
    a.connect("127.0.0.1", args.port_a)
    b.connect("127.0.0.1", args.port_b)
    await asyncio.wait_for(a.started, DEADLINE)
    await asyncio.wait_for(b.started, DEADLINE)
    key, secret = current_secret(await a.wait_secret(lambda s: True))
    await b.plugin["xep_0060"].subscribe(args.instance_b, CONTACTS, timeout=DEADLINE)
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] * 1000
    for label, s2k in [("GnuPG's default S2K", ()),
                       ("salted S2K (--s2k-mode 1)", ("--s2k-mode", "1"))]:
        # Sealed beforehand: GnuPG's own time is not kith's.
        sealed = [gpg_a.seal(secret, contact(f"c{i}@example.org", f"C{i}"), s2k)
                  for i in range(args.n)]
        answered, arrived = [], []
        for data in sealed:
            item_id = os.urandom(16).hex()
            t0 = time.perf_counter()
            await a.plugin["xep_0060"].publish(args.instance_a, CONTACTS, id=item_id,
                                               payload=encrypted(key, data), timeout=DEADLINE)
            answered.append(time.perf_counter() - t0)
            await b.wait_event("publish", item_id)
            arrived.append(time.perf_counter() - t0)
        print(f"{label}: publish answered on A: median "
              f"{statistics.median(answered) * 1000:.1f} ms, p90 {q(answered, 0.9):.1f} ms; "
              f"event on B: median {statistics.median(arrived) * 1000:.1f} ms, "
              f"p90 {q(arrived, 0.9):.1f} ms ({args.n} publishes)")
    a.disconnect()
    b.disconnect()


def parser(mode, required=(), ints=(), flags=(), defaults=()):
    """The options of one mode: `required` strings, `ints`, boolean `flags`, and
    (name, value) int `defaults`."""
    p = argparse.ArgumentParser()
    if mode:
        p.add_argument("mode")
    for k in required:
        p.add_argument(f"--{k}", required=True)
    for k in ints:
        p.add_argument(f"--{k}", type=int, required=True)
    for k in flags:
        p.add_argument(f"--{k}", action="store_true")
    for k, v in defaults:
        p.add_argument(f"--{k}", type=int, default=v)
    return p


TWO_STREAMS = ["instance-a", "instance-b", "gnupg-a", "gnupg-b"]
MODES = {
    "latency": (latency, parser("latency", TWO_STREAMS, ["port-a", "port-b"],
                                defaults=[("n", 50)])),
    "mdns": (mdns, parser("mdns", ["instance"])),
    "lan": (lan, parser("lan", ["host", "instance"], ["port"], ["allowed"])),
    "relay": (relay, parser("relay", ["instance"], ["port", "at-least"])),
}


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else None
    if mode in MODES:
        run, p = MODES[mode]
        asyncio.run(run(p.parse_args()))
        sys.exit(0)
    p = parser(None, TWO_STREAMS + ["kith", "dir-a", "dir-b", "fpr-a", "fpr-b"],
               ["port-a", "port-b"])
    asyncio.run(main(p.parse_args()))
