"""Logs in to an XMPP server with slixmpp and prints the account's roster as JSON:
{jid: {"name": ..., "groups": [...], "subscription": ...}}. Exits non-zero on any
failure (no connection, refused login, no roster) within --timeout seconds.

Used by tests/roster_export.rs to check that a server loaded `kith export roster`."""

import argparse
import asyncio
import json
import sys

import slixmpp


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()

    client = slixmpp.ClientXMPP(a.jid, a.password)
    # A test server on loopback, without certificates: no TLS.
    client.enable_starttls = False
    client.enable_direct_tls = False
    client.enable_plaintext = True
    client.plugin["feature_mechanisms"].unencrypted_plain = True
    ready = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _: ready.done() or ready.set_result(True))
    client.add_event_handler(
        "failed_auth", lambda _: ready.done() or ready.set_exception(RuntimeError("login refused"))
    )
    client.connect(a.host, a.port)
    try:
        await asyncio.wait_for(ready, a.timeout)
        result = await client.get_roster(timeout=a.timeout)
        items = result["roster"]["items"]
        out = {
            str(jid): {
                "name": item["name"] or None,
                "groups": sorted(item["groups"]),
                "subscription": item["subscription"],
            }
            for jid, item in items.items()
        }
        print(json.dumps(out, sort_keys=True))
        return 0
    except Exception as e:  # noqa: BLE001 - any failure is the test's failure
        print(f"roster_client: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        client.disconnect()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
