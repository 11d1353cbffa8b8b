"""Protocol test: account settings kept on the server.

  PrivateStorageTest   XEP-0049 through slixmpp's xep_0048 bookmarks plugin (its
                       storage:bookmarks element in private XML storage): stored, read back by
                       another device of the account, kept across a restart of the server;
                       another account's data is <forbidden/>
  ExternalServicesTest XEP-0215 over a raw stream: the configured STUN/TURN servers, with TURN
                       credentials in the TURN REST scheme checked here with Python's own HMAC
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import unittest

from harness import DOMAIN, ServerTestCase, local, login_plain, to_xml
from test_slixmpp import AsyncServerTestCase

TURN_SECRET = "coturn-static-auth-secret"
NS_EXTDISCO = "urn:xmpp:extdisco:2"


class PrivateStorageTest(AsyncServerTestCase):

    async def bookmarks_client(self, jid, password, resource):
        c = self.client(f"{jid}/{resource}", password)
        for plugin in ("xep_0004", "xep_0060", "xep_0163", "xep_0223", "xep_0049", "xep_0048"):
            c.register_plugin(plugin)
        await c.login()
        return c

    async def test_bookmarks_are_kept_and_private(self):
        alice_jid, alice_pw = self.account("prva")
        phone = await self.bookmarks_client(alice_jid, alice_pw, "phone")
        empty = await phone["xep_0048"].get_bookmarks(timeout=10)
        self.assertEqual(list(empty["private"]["bookmarks"]["conferences"]), [], "nothing stored yet")

        bookmarks = phone["xep_0048"].stanza.Bookmarks()
        bookmarks.add_conference("team@conference.localhost", "alice", name="Team", autojoin=True)
        await phone["xep_0048"].set_bookmarks(bookmarks, timeout=10)

        laptop = await self.bookmarks_client(alice_jid, alice_pw, "laptop")
        got = await laptop["xep_0048"].get_bookmarks(timeout=10)
        confs = list(got["private"]["bookmarks"]["conferences"])
        self.assertEqual(len(confs), 1, str(got))
        self.assertEqual(str(confs[0]["jid"]), "team@conference.localhost")
        self.assertEqual(confs[0]["nick"], "alice")
        self.assertTrue(confs[0]["autojoin"])

        # Another account may neither read nor write it.
        bob_jid, bob_pw = self.account("prvb")
        bob = await self.bookmarks_client(bob_jid, bob_pw, "desk")
        iq = bob.make_iq_get(ito=alice_jid)
        iq["private"].append(bob["xep_0048"].stanza.Bookmarks())
        try:
            await iq.send(timeout=10)
            self.fail("another account's private data was answered")
        except Exception as e:  # slixmpp raises IqError for an error reply
            self.assertEqual(e.iq["error"]["condition"], "forbidden", str(e))

        # Kept across a restart.
        await phone.close()
        await laptop.close()
        self.server.stop_keeping_data()
        self.server.start()
        again = await self.bookmarks_client(alice_jid, alice_pw, "tablet")
        got = await again["xep_0048"].get_bookmarks(timeout=10)
        self.assertEqual(len(list(got["private"]["bookmarks"]["conferences"])), 1)


class ExternalServicesTest(ServerTestCase):
    SERVER_CONFIG = {"external_services": {
        "uris": ["stun:stun.example.org", "turn:turn.example.org:3478?transport=udp",
                 "turns:turn.example.org:5349?transport=tcp"],
        "turn_secret": TURN_SECRET, "credential_lifetime": 3600}}

    def test_services_with_turn_rest_credentials(self):
        user, bare, password = self.new_account("extd")
        stream, _ = login_plain(self.server, user, password)
        self.addCleanup(stream.abort)
        stream.send(f"<iq type='get' to='{DOMAIN}' id='s1'><services xmlns='{NS_EXTDISCO}'/></iq>")
        reply = stream.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == "s1")
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        services = reply.findall(f"{{{NS_EXTDISCO}}}services/{{{NS_EXTDISCO}}}service")
        self.assertEqual([(s.get("type"), s.get("host"), s.get("port"), s.get("transport")) for s in services],
                         [("stun", "stun.example.org", "3478", "udp"), ("turn", "turn.example.org", "3478", "udp"),
                          ("turns", "turn.example.org", "5349", "tcp")])
        self.assertIsNone(services[0].get("username"))
        for turn in services[1:]:
            username = turn.get("username")
            expiry, _, who = username.partition(":")
            self.assertEqual(who, bare)
            self.assertAlmostEqual(int(expiry), time.time() + 3600, delta=30)
            expected = base64.b64encode(hmac.new(TURN_SECRET.encode(), username.encode(), hashlib.sha1).digest())
            self.assertEqual(turn.get("password"), expected.decode(), "what coturn will compute")


if __name__ == "__main__":
    unittest.main()
