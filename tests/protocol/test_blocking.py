"""Protocol test: XEP-0191 blocking, driven by slixmpp's xep_0191 plugin.

  BlockingTest
    list         the server advertises urn:xmpp:blocking; the list starts empty; block and
                 unblock change it, and every resource that asked for the list gets a push
    inbound      a blocked contact's message bounces with <service-unavailable/> and never
                 arrives; its presence does not arrive either
    outbound     a message to a blocked contact is refused with <not-acceptable/> and
                 <blocked xmlns='urn:xmpp:blocking:errors'/>
    presence     a subscribed contact sees the user go unavailable on block, and its presence
                 again on unblock
    persistence  a new session of the user finds the list and is held to it
"""

from __future__ import annotations

import unittest

from slixmpp.jid import JID

from test_slixmpp import AsyncServerTestCase, presence_from, roster_get, subscribe_and_approve

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def send_chat(client, to: str, body: str, mid: str) -> None:
    msg = client.make_message(mto=to, mbody=body, mtype="chat")
    msg["id"] = mid
    msg.send()


class BlockingTest(AsyncServerTestCase):

    async def online_with_blocking(self, jid, password, resource):
        c = self.client(f"{jid}/{resource}", password)
        c.register_plugin("xep_0191")
        c.blocked_pushes = []
        c.unblocked_pushes = []
        c.add_event_handler("blocked", c.blocked_pushes.append)
        c.add_event_handler("unblocked", c.unblocked_pushes.append)
        await c.login()
        await roster_get(c)
        c.send_presence()
        await c.sync()
        return c

    async def blocked(self, client) -> set:
        result = await client["xep_0191"].get_blocked(timeout=10)
        return {str(j) for j in result["blocklist"]["items"]}

    async def test_list_changes_and_pushes(self):
        alice_jid, alice_pw = self.account("blka")
        phone = await self.online_with_blocking(alice_jid, alice_pw, "phone")
        laptop = await self.online_with_blocking(alice_jid, alice_pw, "laptop")
        info = await phone["xep_0030"].get_info(jid="localhost", timeout=10)
        self.assertIn(NS_BLOCKING, info["disco_info"]["features"])
        self.assertEqual(await self.blocked(phone), set())
        self.assertEqual(await self.blocked(laptop), set())  # both asked: both get pushes

        await phone["xep_0191"].block([JID("Spammer@Localhost"), JID("junk.example")], timeout=10)
        self.assertEqual(await self.blocked(laptop), {"spammer@localhost", "junk.example"}, "normalised")
        for device in (phone, laptop):
            await device.sync()
            self.assertEqual(len(device.blocked_pushes), 1, device.boundjid)
            pushed = {str(j) for j in device.blocked_pushes[0]["block"]["items"]}
            self.assertEqual(pushed, {"spammer@localhost", "junk.example"})

        await laptop["xep_0191"].unblock([JID("junk.example")], timeout=10)
        self.assertEqual(await self.blocked(phone), {"spammer@localhost"})
        await phone.sync()
        self.assertEqual(len(phone.unblocked_pushes), 1)

    async def test_blocked_contact_is_cut_off_both_ways(self):
        alice_jid, alice_pw = self.account("blkb")
        bob_jid, bob_pw = self.account("blkc")
        carol_jid, carol_pw = self.account("blkd")
        alice = await self.online_with_blocking(alice_jid, alice_pw, "phone")
        bob = await self.online(bob_jid, bob_pw, resource="desk")
        carol = await self.online(carol_jid, carol_pw, resource="desk")
        await subscribe_and_approve(self, bob, alice, "to", "from")

        await alice["xep_0191"].block(JID(bob_jid), timeout=10)
        # Bob was allowed to see alice's presence: he sees her leave.
        await bob.presences.wait_for(presence_from(alice.boundjid.full, "unavailable"),
                                     "alice going unavailable to bob")

        send_chat(bob, alice_jid, "can you hear me?", "b1")
        err = await bob.messages.wait_for(lambda m: m["type"] == "error" and m["id"] == "b1", "the bounce")
        self.assertEqual(err["error"]["condition"], "service-unavailable", str(err))
        bob.send_presence(pto=alice.boundjid.full)
        await bob.sync()

        send_chat(alice, bob_jid, "go away", "a1")
        refused = await alice.messages.wait_for(lambda m: m["type"] == "error" and m["id"] == "a1", "the refusal")
        self.assertEqual(refused["error"]["condition"], "not-acceptable", str(refused))
        self.assertIsNotNone(refused.xml.find(f".//{{{NS_BLOCKING_ERRORS}}}blocked"), str(refused))

        carol.send_message(mto=alice_jid, mbody="still here", mtype="chat")
        await alice.messages.wait_for(lambda m: m["body"] == "still here", "carol's message")
        await alice.messages.assert_none(lambda m: m["body"] == "can you hear me?", "bob's message")
        await alice.presences.assert_none(lambda p: p["from"].bare == bob_jid, "bob's presence")
        await bob.messages.assert_none(lambda m: m["body"] == "go away", "alice's message")

        # Unblocked: bob sees her again, and messages flow.
        await alice["xep_0191"].unblock(JID(bob_jid), timeout=10)
        await bob.presences.wait_for(presence_from(alice.boundjid.full, "available"), "alice back for bob")
        bob.send_message(mto=alice_jid, mbody="hello again", mtype="chat")
        await alice.messages.wait_for(lambda m: m["body"] == "hello again", "bob's message after unblock")

    async def test_a_new_session_finds_the_list(self):
        alice_jid, alice_pw = self.account("blke")
        bob_jid, bob_pw = self.account("blkf")
        first = await self.online_with_blocking(alice_jid, alice_pw, "phone")
        await first["xep_0191"].block(JID(bob_jid), timeout=10)
        await first.close()
        again = await self.online_with_blocking(alice_jid, alice_pw, "laptop")
        self.assertEqual(await self.blocked(again), {bob_jid})
        send_chat(again, bob_jid, "hi", "n1")
        refused = await again.messages.wait_for(lambda m: m["type"] == "error" and m["id"] == "n1", "the refusal")
        self.assertEqual(refused["error"]["condition"], "not-acceptable")


if __name__ == "__main__":
    unittest.main()
