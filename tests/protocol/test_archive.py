"""Protocol tests: every device in sync, driven by slixmpp's own XEP-0313, XEP-0059 and XEP-0280 plugins.

  ArchiveTest   every chat message is delivered with an XEP-0359 <stanza-id/> and kept in
                both archives; slixmpp pages the whole archive with RSM and gets every
                message once, in order, under the ids seen live; `with` and `start`
                filters; a retransmission with the same origin-id is delivered once;
                the archive outlives a server restart (kill -9 included).
  CarbonsTest   XEP-0280: a second device of the recipient gets <received/> copies and a
                second device of the sender <sent/> copies, each with the message's
                archive id; a device that never enabled carbons gets neither.
  ArchiveSettingsTest  XEP-0313 preferences: a JID in bob's never list is not kept by bob
                (and its message carries no stanza-id of his) but is by its sender;
                default='never'; the XEP-0050 "Delete my message archive" command, run
                with slixmpp's xep_0050 plugin, empties the user's archive and only theirs.
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


NS_MAM = "urn:xmpp:mam:2"


async def set_prefs(client: Client, default: str, never: tuple = ()) -> ET.Element:
    """XEP-0313 §6.1 with a hand-built <prefs/> (slixmpp 1.8.3's plugin has no prefs API)."""
    iq = client.Iq(stype="set")
    prefs = ET.Element(f"{{{NS_MAM}}}prefs", {"default": default})
    ET.SubElement(prefs, f"{{{NS_MAM}}}always")
    never_el = ET.SubElement(prefs, f"{{{NS_MAM}}}never")
    for jid in never:
        ET.SubElement(never_el, f"{{{NS_MAM}}}jid").text = jid
    iq.append(prefs)
    result = await iq.send(timeout=WAIT)
    return result.xml.find(f"{{{NS_MAM}}}prefs")


class ArchiveSettingsTest(AsyncServerTestCase):

    async def test_preferences_decide_each_owners_copy(self):
        alice_jid, alice_pw = self.account("prefa")
        bob_jid, bob_pw = self.account("prefb")
        carol_jid, carol_pw = self.account("prefc")
        alice = with_mam(await self.online(alice_jid, alice_pw, resource="phone"))
        bob = with_mam(await self.online(bob_jid, bob_pw, resource="desk"))
        carol = await self.online(carol_jid, carol_pw, resource="desk")
        prefs = await set_prefs(bob, "always", never=(carol_jid,))
        self.assertEqual(prefs.get("default"), "always")
        self.assertEqual([j.text for j in prefs.iter(f"{{{NS_MAM}}}jid")], [carol_jid])

        alice.send_message(mto=bob_jid, mbody="kept by both", mtype="chat")
        carol.send_message(mto=bob_jid, mbody="not kept by bob", mtype="chat")
        got = await bob.messages.wait_for(lambda m: m["body"] == "not kept by bob", "carol's message")
        self.assertEqual(stanza_id(got), "", "bob keeps no copy, so it carries no id of his")
        await bob.messages.wait_for(lambda m: m["body"] == "kept by both", "alice's message")
        self.assertEqual([m["body"] for _, m in await archive_of(bob)], ["kept by both"])
        self.assertEqual([m["body"] for _, m in await archive_of(alice)], ["kept by both"])

        # default='never': bob keeps nothing more, alice still keeps her side.
        await set_prefs(bob, "never")
        bob.send_message(mto=alice_jid, mbody="off the record for bob", mtype="chat")
        await alice.messages.wait_for(lambda m: m["body"] == "off the record for bob", "bob's message")
        self.assertEqual([m["body"] for _, m in await archive_of(bob)], ["kept by both"])
        self.assertEqual([m["body"] for _, m in await archive_of(alice)], ["kept by both", "off the record for bob"])

    async def test_delete_my_archive_command(self):
        alice_jid, alice_pw = self.account("dela")
        bob_jid, bob_pw = self.account("delb")
        alice = with_mam(await self.online(alice_jid, alice_pw, resource="phone"))
        alice.register_plugin("xep_0004")
        alice.register_plugin("xep_0050")
        bob = with_mam(await self.online(bob_jid, bob_pw, resource="desk"))
        for i in range(3):
            alice.send_message(mto=bob_jid, mbody=f"m{i}", mtype="chat")
        await bob.messages.wait_for(lambda m: m["body"] == "m2", "the last message")
        self.assertEqual(len(await archive_of(alice)), 3)

        commands = await alice["xep_0050"].get_commands(DOMAIN, timeout=WAIT)
        nodes = {item[1]: item[2] for item in commands["disco_items"]["items"]}
        self.assertIn("urn:nines:delete-archive", nodes, str(commands))
        first = await alice["xep_0050"].send_command(DOMAIN, "urn:nines:delete-archive", timeout=WAIT)
        self.assertEqual(first["command"]["status"], "executing")
        form = first["command"]["form"]
        self.assertIn("confirm", [f["var"] for f in form["fields"]])
        answer = alice["xep_0004"].make_form(ftype="submit")
        answer.add_field(var="confirm", value=True)
        done = await alice["xep_0050"].send_command(DOMAIN, "urn:nines:delete-archive", action="complete",
                                                      sessionid=first["command"]["sessionid"], payload=answer,
                                                      timeout=WAIT)
        self.assertEqual(done["command"]["status"], "completed", str(done))
        self.assertEqual(await archive_of(alice), [], "alice's archive is empty")
        self.assertEqual(len(await archive_of(bob)), 3, "bob keeps his copies")


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
