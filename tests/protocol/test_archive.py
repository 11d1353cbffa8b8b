"""Protocol tests: every device in sync, driven by slixmpp's own XEP-0313, XEP-0059 and XEP-0280 plugins.

  ArchiveTest   every chat message is delivered with an XEP-0359 <stanza-id/> and kept in
                both archives; slixmpp pages the whole archive with RSM and gets every
                message once, in order, under the ids seen live; `with` and `start`
                filters; a retransmission with the same origin-id is delivered once;
                the archive outlives a server restart (kill -9 included).
  CarbonsTest   XEP-0280: a second device of the recipient gets <received/> copies and a
                second device of the sender <sent/> copies, each with the message's
                archive id; a device that never enabled carbons gets neither.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import unittest
import xml.etree.ElementTree as ET

from harness import DOMAIN, Server, new_password, unique_user
from test_slixmpp import QUIET, WAIT, AsyncServerTestCase, Client

NS_SID = "urn:xmpp:sid:0"


def stanza_id(msg) -> str:
    sid = msg.xml.find(f"{{{NS_SID}}}stanza-id")
    return sid.get("id") if sid is not None else ""


def with_mam(client: Client) -> Client:
    client.register_plugin("xep_0059")
    client.register_plugin("xep_0313")
    return client


async def archive_of(client: Client, *, page: int = 10, **filters) -> list:
    """Every message of the client's archive, paged forward with RSM: (archive id, inner message)."""
    out = []
    async for result in client["xep_0313"].iterate(rsm={"max": page}, **filters):
        forwarded = result["mam_result"]["forwarded"]
        out.append((result["mam_result"]["id"], forwarded["stanza"]))
    return out


class ArchiveTest(AsyncServerTestCase):

    async def test_live_ids_and_paged_archive_agree(self):
        alice_jid, alice_pw = self.account("alice")
        bob_jid, bob_pw = self.account("bob")
        alice = await self.online(alice_jid, alice_pw, resource="phone")
        bob = await self.online(bob_jid, bob_pw, resource="desk")

        bodies = [f"archived {i}" for i in range(25)]
        for body in bodies:
            alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
        live = []
        for body in bodies:
            live.append(await bob.messages.wait_for(lambda m, b=body: m["body"] == b, f"message {body!r}"))
        live_ids = [stanza_id(m) for m in live]
        for m in live:
            sid = m.xml.find(f"{{{NS_SID}}}stanza-id")
            self.assertIsNotNone(sid, f"live message without XEP-0359 stanza-id: {m}")
            self.assertEqual(sid.get("by"), bob_jid)
        self.assertEqual(len(set(live_ids)), len(live_ids), "stanza-ids are not unique")

        # A new device of bob's catches up through the archive, 10 at a time.
        laptop = with_mam(self.client(f"{bob_jid}/laptop", bob_pw))
        await laptop.login()
        got = await archive_of(laptop, page=10)
        self.assertEqual([m["body"] for _, m in got], bodies)
        self.assertEqual([i for i, _ in got], live_ids, "archive ids differ from the live stanza-ids")
        for _, m in got:
            self.assertEqual(str(m["from"]), f"{alice_jid}/phone")

        # The sender's archive has the same messages under the same ids.
        alice_mam = with_mam(self.client(f"{alice_jid}/tablet", alice_pw))
        await alice_mam.login()
        sent = await archive_of(alice_mam, page=7)
        self.assertEqual([(i, m["body"]) for i, m in sent], list(zip(live_ids, bodies)))

    async def test_filters_with_and_start(self):
        alice_jid, alice_pw = self.account("alice")
        carol_jid, carol_pw = self.account("carol")
        bob_jid, bob_pw = self.account("bob")
        alice = await self.online(alice_jid, alice_pw)
        carol = await self.online(carol_jid, carol_pw)
        bob = with_mam(self.client(bob_jid, bob_pw))
        await bob.login()
        bob.send_presence()

        alice.send_message(mto=bob_jid, mbody="from alice 1", mtype="chat")
        carol.send_message(mto=bob_jid, mbody="from carol", mtype="chat")
        await bob.messages.wait_for(lambda m: m["body"] == "from carol", "carol's message")
        await asyncio.sleep(1.1)
        middle = dt.datetime.now(dt.timezone.utc)
        await asyncio.sleep(0.1)
        alice.send_message(mto=bob_jid, mbody="from alice 2", mtype="chat")
        await bob.messages.wait_for(lambda m: m["body"] == "from alice 2", "alice's second message")

        with_alice = await archive_of(bob, with_jid=slixmpp_jid(alice_jid))
        self.assertEqual([m["body"] for _, m in with_alice], ["from alice 1", "from alice 2"])
        since = await archive_of(bob, start=middle)
        self.assertEqual([m["body"] for _, m in since], ["from alice 2"])

    async def test_retransmission_is_delivered_once(self):
        alice_jid, alice_pw = self.account("alice")
        bob_jid, bob_pw = self.account("bob")
        alice = await self.online(alice_jid, alice_pw)
        bob = await self.online(bob_jid, bob_pw)
        for _ in range(2):  # the same message twice, as after a lost acknowledgement
            msg = alice.make_message(mto=bob_jid, mbody="only once", mtype="chat")
            msg["id"] = "retry-1"
            msg.xml.append(ET.fromstring(f"<origin-id xmlns='{NS_SID}' id='origin-retry-1'/>"))
            msg.send()
        await alice.sync()
        await bob.messages.wait_for(lambda m: m["body"] == "only once", "the message")
        await bob.messages.assert_none(lambda m: m["body"] == "only once", "a second copy", within=QUIET)
        await alice.messages.assert_none(lambda m: m["type"] == "error", "an error for the retransmission",
                                         within=0.1)


class CarbonsTest(AsyncServerTestCase):

    async def test_received_and_sent_copies(self):
        from test_slixmpp import StanzaLog
        alice_jid, alice_pw = self.account("alice")
        bob_jid, bob_pw = self.account("bob")
        devices = {}
        for name in ("phone", "laptop", "tablet"):
            c = self.client(f"{alice_jid}/{name}", alice_pw)
            c.register_plugin("xep_0280")
            c.received_carbons = StanzaLog(f"{name} received carbons")
            c.sent_carbons = StanzaLog(f"{name} sent carbons")
            c.add_event_handler("carbon_received", c.received_carbons.add)
            c.add_event_handler("carbon_sent", c.sent_carbons.add)
            await c.login()
            c.send_presence()
            devices[name] = c
        for name in ("phone", "laptop"):
            await devices[name]["xep_0280"].enable(timeout=WAIT)
        bob = await self.online(bob_jid, bob_pw)

        bob.send_message(mto=f"{alice_jid}/phone", mbody="to your phone", mtype="chat")
        direct = await devices["phone"].messages.wait_for(lambda m: m["body"] == "to your phone", "direct message")
        carbon = await devices["laptop"].received_carbons.wait_for(
            lambda m: m["carbon_received"]["body"] == "to your phone", "received carbon")
        inner = carbon["carbon_received"]
        self.assertEqual(str(inner["from"]), bob.boundjid.full)
        self.assertEqual(stanza_id(inner), stanza_id(direct), "the copy and the message have one archive id")

        devices["phone"].send_message(mto=bob_jid, mbody="from my phone", mtype="chat")
        await bob.messages.wait_for(lambda m: m["body"] == "from my phone", "alice's message")
        sent = await devices["laptop"].sent_carbons.wait_for(
            lambda m: m["carbon_sent"]["body"] == "from my phone", "sent carbon")
        self.assertEqual(sent["carbon_sent"]["to"].bare, bob_jid)
        self.assertNotEqual(stanza_id(sent["carbon_sent"]), "", "the sent copy has the sender's archive id")

        await devices["tablet"].received_carbons.assert_none(lambda m: True, "a carbon without enable", within=QUIET)
        await devices["tablet"].sent_carbons.assert_none(lambda m: True, "a carbon without enable", within=0.1)
        await devices["phone"].sent_carbons.assert_none(lambda m: True, "a copy of its own message", within=0.1)


def slixmpp_jid(text: str):
    import slixmpp
    return slixmpp.JID(text)


class ArchiveRestartTest(unittest.IsolatedAsyncioTestCase):
    """The archive is on disk before delivery: it survives SIGKILL of the server."""

    async def test_archive_survives_kill_9(self):
        asyncio.get_running_loop().set_debug(False)
        server = Server(name="archive-restart")
        server.start()
        clients = []
        try:
            alice_user, bob_user = unique_user("alice"), unique_user("bob")
            alice_pw, bob_pw = new_password(), new_password()
            server.add_user(alice_user, alice_pw)
            server.add_user(bob_user, bob_pw)
            alice_jid, bob_jid = f"{alice_user}@{DOMAIN}", f"{bob_user}@{DOMAIN}"

            alice = Client(alice_jid, alice_pw, server.c2s)
            bob = Client(bob_jid, bob_pw, server.c2s)
            clients += [alice, bob]
            await alice.login()
            await bob.login()
            bob.send_presence()
            await bob.sync()
            bodies = [f"durable {i}" for i in range(20)]
            for body in bodies:
                alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
            await bob.messages.wait_for(lambda m: m["body"] == bodies[-1], "the last message")
            server.kill()  # SIGKILL: no shutdown path runs
            server.start()

            reader = with_mam(Client(bob_jid, bob_pw, server.c2s))
            clients.append(reader)
            await reader.login()
            got = await archive_of(reader, page=8)
            self.assertEqual([m["body"] for _, m in got], bodies)
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
            server.stop()


if __name__ == "__main__":
    unittest.main()
