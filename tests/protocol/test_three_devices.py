"""Protocol test: three devices of one user stay in sync while they come and go (G2).

alice has a phone and a laptop on slixmpp and a web client on @xmpp/client
(web_device.mjs, run by node). bob, on slixmpp, sends her a steady stream of messages
while the phone and the web client go on and off line on their own schedules (the
laptop stays), and every device of hers also writes to bob now and then. Each device
behaves like a real client: it enables carbons (XEP-0280), keeps what it sends, records
what arrives live (messages and sent carbons, with their stanza-ids), and each time it
comes back it pages the archive (XEP-0313, RSM) from after the last stanza-id it had seen.

At the end every device must know exactly the messages of alice's archive; no message
delivered live twice to one device; every live message with alice's stanza-id; and in
the archive and on each device, each sender's messages in the order they were sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import unittest
from pathlib import Path

from test_archive import archive_of, stanza_id, with_mam
from test_slixmpp import WAIT, AsyncServerTestCase, Client

HERE = Path(__file__).resolve().parent
BOB_MESSAGES = 120
BOB_INTERVAL = 0.04  # seconds between bob's messages: ~5 s of traffic


class Device:
    """A slixmpp device of alice's with the catch-up a real client does."""

    def __init__(self, test, jid, password, resource):
        self.test = test
        self.jid, self.password, self.resource = jid, password, resource
        self.bare = jid
        self.live: list = []     # (stanza-id, from, body), duplicates included
        self.history: dict = {}  # archive id -> (from, body)
        self.own: list = []      # bodies this device sent (a client keeps them)
        self.last_seen = ""
        self.client = None
        self.sent = 0

    def remember(self, archive_id, frm, body):
        if not archive_id:
            return
        self.history[archive_id] = (frm, body)
        if not self.last_seen or int(archive_id) > int(self.last_seen):
            self.last_seen = archive_id

    async def come_online(self):
        c = with_mam(self.test.client(f"{self.jid}/{self.resource}", self.password))
        c.register_plugin("xep_0280")
        c.add_event_handler("message", self._on_message)
        c.add_event_handler("carbon_sent", self._on_sent_carbon)
        c.add_event_handler("carbon_received", lambda m: self._on_message(m["carbon_received"]))
        await c.login()
        await c["xep_0280"].enable(timeout=WAIT)
        c.send_presence()
        rsm = {"max": 50}
        if self.last_seen:
            rsm["after"] = self.last_seen
        async for result in c["xep_0313"].iterate(rsm=rsm):
            fwd = result["mam_result"]["forwarded"]["stanza"]
            self.remember(result["mam_result"]["id"], str(fwd["from"]), fwd["body"])
        self.client = c

    def _on_message(self, msg):
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        sid = ""
        for el in msg.xml.findall("{urn:xmpp:sid:0}stanza-id"):
            if el.get("by") == self.bare:
                sid = el.get("id")
        self.live.append((sid, str(msg["from"]), msg["body"]))
        self.remember(sid, str(msg["from"]), msg["body"])

    def _on_sent_carbon(self, msg):
        inner = msg["carbon_sent"]
        sid = ""
        for el in inner.xml.findall("{urn:xmpp:sid:0}stanza-id"):
            if el.get("by") == self.bare:
                sid = el.get("id")
        self.live.append((sid, str(inner["from"]), inner["body"]))
        self.remember(sid, str(inner["from"]), inner["body"])

    def bodies(self) -> set:
        return {b for _, b in self.history.values()} | set(self.own)

    def say(self, to):
        body = f"{self.resource}-{self.sent}"
        self.client.send_message(mto=to, mbody=body, mtype="chat")
        self.own.append(body)
        self.sent += 1

    async def go_offline(self):
        await self.client.close()
        self.test.clients.remove(self.client)
        self.client = None


class ThreeDevicesTest(AsyncServerTestCase):

    async def test_every_device_converges(self):
        alice_jid, alice_pw = self.account("trio")
        bob_jid, bob_pw = self.account("triob")
        host, port = self.server.c2s
        web = subprocess.Popen(
            ["node", str(HERE / "web_device.mjs"), json.dumps({
                "host": host, "port": port, "domain": alice_jid.split("@")[1], "user": alice_jid.split("@")[0],
                "password": alice_pw, "resource": "web", "peer": bob_jid,
                "schedule": [[700, 500], [400, 900], [900, 300], [500, 600], [600, 400]]})],
            cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "NODE_TLS_REJECT_UNAUTHORIZED": "0"})
        self.addCleanup(lambda: web.poll() is None and web.kill())

        bob = await self.online(bob_jid, bob_pw, resource="desk")
        phone = Device(self, alice_jid, alice_pw, "phone")
        laptop = Device(self, alice_jid, alice_pw, "laptop")
        await laptop.come_online()
        await phone.come_online()

        async def bob_talks():
            for i in range(BOB_MESSAGES):
                bob.send_message(mto=alice_jid, mbody=f"bob-{i}", mtype="chat")
                await asyncio.sleep(BOB_INTERVAL)

        async def phone_hops():
            for on, off in [(0.6, 0.4), (0.3, 0.8), (0.9, 0.2), (0.4, 0.5), (0.5, 0.3)]:
                phone.say(bob_jid)
                await asyncio.sleep(on)
                await phone.go_offline()
                await asyncio.sleep(off)
                await phone.come_online()

        async def laptop_talks():
            for _ in range(6):
                laptop.say(bob_jid)
                await asyncio.sleep(0.7)

        await asyncio.gather(bob_talks(), phone_hops(), laptop_talks())
        await bob.messages.wait_for(lambda m: m["body"] == "laptop-5", "the laptop's last message", timeout=WAIT)
        await asyncio.sleep(1.0)  # let the last deliveries land

        # Final catch-up for the slixmpp devices; the web device ends on its own.
        for device in (phone, laptop):
            if device.client is not None:
                await device.go_offline()
            await device.come_online()
        out, err = await asyncio.get_running_loop().run_in_executor(None, lambda: web.communicate(timeout=60))
        self.assertEqual(web.returncode, 0, f"web device failed:\n{err}")
        web_result = json.loads(out.strip().splitlines()[-1])

        # The truth: alice's archive, read by a fresh device.
        reader = with_mam(self.client(f"{alice_jid}/reader", alice_pw))
        await reader.login()
        archive = {i: (str(m["from"]), m["body"]) for i, m in await archive_of(reader, page=50)}
        bodies = [b for _, b in archive.values()]
        self.assertEqual(sorted(b for b in bodies if b.startswith("bob-")),
                         sorted(f"bob-{i}" for i in range(BOB_MESSAGES)), "every message of bob's is archived")
        self.assertEqual(len([b for b in bodies if b.startswith("web-")]), 5)
        self.assertEqual(len([b for b in bodies if b.startswith("phone-")]), phone.sent)
        self.assertEqual(len([b for b in bodies if b.startswith("laptop-")]), laptop.sent)

        in_order = [b for _, (_, b) in sorted(archive.items(), key=lambda kv: int(kv[0]))]
        for prefix in ("bob-", "web-", "phone-", "laptop-"):
            seq = [int(b.split("-")[1]) for b in in_order if b.startswith(prefix)]
            self.assertEqual(seq, sorted(seq), f"the archive has {prefix} messages out of order")

        web_history = {i: (f, b) for i, f, b in web_result["history"]}
        devices = {
            "phone": (phone.live, phone.history, phone.bodies()),
            "laptop": (laptop.live, laptop.history, laptop.bodies()),
            "web": ([tuple(x) for x in web_result["live"]], web_history,
                    {b for _, b in web_history.values()} | set(web_result["own"])),
        }
        for name, (live, history, known) in devices.items():
            self.assertEqual(known, set(bodies), f"{name} does not know exactly the archive: "
                             f"missing {sorted(set(bodies) - known)}, extra {sorted(known - set(bodies))}")
            for archive_id, (_, body) in history.items():
                self.assertEqual(archive.get(archive_id, (None, None))[1], body,
                                 f"{name} has {body!r} under an id the archive gives another message")
            ids = [sid for sid, _, _ in live if sid]
            self.assertEqual(len(ids), len(set(ids)), f"{name} got a message live twice")
            self.assertTrue(all(sid for sid, _, b in live if b.startswith("bob-")),
                            f"{name}: a live message from bob without alice's stanza-id")
            # Each sender's messages arrive live in the order they were sent.
            for prefix in ("bob-", "web-", "phone-", "laptop-"):
                seq = [int(b.split("-")[1]) for _, _, b in live if b.startswith(prefix)]
                self.assertEqual(seq, sorted(seq), f"{name}: {prefix} messages arrived out of order")


if __name__ == "__main__":
    unittest.main()
