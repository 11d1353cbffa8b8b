"""Protocol test: XEP-0198 resumption from the store, after the server crashed or restarted.

  ResumeFromStoreTest
    kill -9      a client that held a resumption token resumes after `kill -9` and a
                 restart: <resumed h/> reports the count the server had acknowledged; the
                 messages it had not acknowledged, and one that arrived while it was gone,
                 are replayed from the archive once each, in order, with stanza-ids and
                 delay stamps; its presence is back (its contact sees it, it sees the
                 contact); the offline copy of what was replayed is gone; new messages
                 flow live; a clean close forgets the state
    restart      the same after a graceful restart (SIGTERM): nothing twice, even though the
                 shutdown had put the unacknowledged message into offline storage, and a
                 later login of another resource does not get it again from there
    refusals     another account's token, and a token whose resume time ran out while the
                 server was down, get <failed><item-not-found/></failed>; a failed attempt by
                 another account leaves the token to its owner
    left out     a message the replay leaves out (to another full JID of the account, carbons
                 off) is not taken for replayed: it comes from offline storage
    expiry       a replayed message the client never acknowledged goes to offline storage
                 when the resumed session runs out of time, as a live delivery would
    ended        a session that ended for good (a clean close) is not resumed from its stored
                 state while the delete of that state waits behind a held write lock
"""

from __future__ import annotations

import time
import unittest
import xml.etree.ElementTree as ET

from harness import (NS_STREAM, NS_STREAMS_ERR, ServerTestCase, connect_starttls, local, login_plain, ns_of,
                     to_xml)

NS_SM = "urn:xmpp:sm:3"
NS_SID = "urn:xmpp:sid:0"
NS_DELAY = "urn:xmpp:delay"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def is_sm(elem: ET.Element, name: str) -> bool:
    return ns_of(elem.tag) == NS_SM and local(elem.tag) == name


def is_stanza(elem: ET.Element) -> bool:
    return ns_of(elem.tag) == "jabber:client" and local(elem.tag) in ("message", "presence", "iq")


class Device:
    """A raw stream that counts the stanzas it receives (the XEP-0198 'h' of a client)."""

    def __init__(self, stream):
        self.stream = stream
        self.received = 0
        self.log = []  # everything received

    def send(self, data: str) -> None:
        self.stream.send(data)

    def recv(self, timeout: float = 10.0) -> ET.Element:
        elem = self.stream.recv(timeout)
        if is_stanza(elem):
            self.received += 1
        self.log.append(elem)
        return elem

    def seen(self, pred, timeout: float = 10.0) -> ET.Element:
        """The first element received so far, or from now on, that matches."""
        for elem in self.log:
            if pred(elem):
                return elem
        return self.recv_until(pred, timeout)

    def recv_until(self, pred, timeout: float = 10.0) -> ET.Element:
        deadline = time.monotonic() + timeout
        while True:
            elem = self.recv(max(0.01, deadline - time.monotonic()))
            if pred(elem):
                return elem

    def drain(self, quiet: float = 0.5) -> list:
        got = []
        while True:
            try:
                got.append(self.recv(timeout=quiet))
            except TimeoutError:
                return got


def bodies_of(elems) -> list:
    return [e.findtext("{jabber:client}body") for e in elems
            if local(e.tag) == "message" and e.findtext("{jabber:client}body")]


class ResumeFromStoreTest(ServerTestCase):
    SERVER_CONFIG = {}

    # -- helpers -----------------------------------------------------------

    def wait_db(self, sql: str, args: tuple, want, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            rows = self.server.sql(sql, args)
            got = rows[0][0] if rows else None
            if got == want:
                return
            time.sleep(0.05)
        self.fail(f"{sql} {args}: {got!r}, waited for {want!r}")

    def contacts(self):
        """alice and bob, subscribed both ways; alice (resource 'phone') has resumable stream
        management and is available; returns (alice device, token, bob stream, names)."""
        alice, alice_bare, alice_pw = self.new_account("rsa")
        bob, bob_bare, bob_pw = self.new_account("rsb")
        a_stream, a_full = login_plain(self.server, alice, alice_pw, resource="phone")
        self.addCleanup(a_stream.abort)
        a_stream.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        enabled = a_stream.recv_until(lambda e: ns_of(e.tag) == NS_SM)
        self.assertTrue(is_sm(enabled, "enabled"), to_xml(enabled))
        a = Device(a_stream)
        a.send("<presence><show>away</show><priority>5</priority></presence>")
        a.send(f"<r xmlns='{NS_SM}'/>")
        ack = a.recv_until(lambda e: is_sm(e, "a"))
        self.assertEqual(ack.get("h"), "1", "the presence is handled, and stored before the ack")
        b, b_full = login_plain(self.server, bob, bob_pw, resource="desk")
        self.addCleanup(b.abort)
        b.send("<presence/>")
        a.send(f"<presence type='subscribe' to='{bob_bare}'/>")
        b.recv_until(lambda e: local(e.tag) == "presence" and e.get("type") == "subscribe")
        b.send(f"<presence type='subscribed' to='{alice_bare}'/>")
        b.send(f"<presence type='subscribe' to='{alice_bare}'/>")
        a.recv_until(lambda e: local(e.tag) == "presence" and e.get("type") == "subscribe")
        a.send(f"<presence type='subscribed' to='{bob_bare}'/>")
        a.seen(lambda e: local(e.tag) == "presence" and e.get("from") == b_full and e.get("type") is None)
        b.recv_until(lambda e: local(e.tag) == "presence" and e.get("from") == a_full and e.get("type") is None)
        names = {"alice": alice, "alice_bare": alice_bare, "alice_pw": alice_pw, "alice_full": a_full,
                 "bob": bob, "bob_bare": bob_bare, "bob_pw": bob_pw, "bob_full": b_full}
        return a, enabled.get("id"), b, names

    def send_durably(self, stream, to: str, bodies: list) -> None:
        """Sends chat messages with stream management on and waits for their ack (durable)."""
        stream.send(f"<enable xmlns='{NS_SM}'/>")
        self.assertTrue(is_sm(stream.recv_until(lambda e: ns_of(e.tag) == NS_SM), "enabled"))
        for body in bodies:
            stream.send(f"<message to='{to}' type='chat' id='{body}'><body>{body}</body></message>")
        stream.send(f"<r xmlns='{NS_SM}'/>")
        ack = stream.recv_until(lambda e: is_sm(e, "a"))
        self.assertGreaterEqual(int(ack.get("h")), len(bodies))

    def resume(self, user: str, password: str, token: str, h: int) -> tuple:
        stream = connect_starttls(self.server)
        self.addCleanup(stream.abort)
        elem = stream.auth_plain(user, password)
        self.assertEqual(local(elem.tag), "success", to_xml(elem))
        stream.open()
        stream.send(f"<resume xmlns='{NS_SM}' previd='{token}' h='{h}'/>")
        answer = stream.recv_until(lambda e: ns_of(e.tag) == NS_SM, timeout=15)
        return stream, answer

    # -- tests -------------------------------------------------------------

    def test_resumes_after_kill_9_with_what_it_had_not_acknowledged(self):
        a, token, b, n = self.contacts()
        a.drain(quiet=0.3)
        for body in ("m1", "m2", "m3"):
            b.send(f"<message to='{n['alice_bare']}' type='chat' id='{body}'><body>{body}</body></message>")
        got = [a.recv_until(lambda e: local(e.tag) == "message") for _ in range(3)]
        self.assertEqual(bodies_of(got), ["m1", "m2", "m3"])
        last_sid = got[-1].find(f"{{{NS_SID}}}stanza-id").get("id")
        a.send(f"<a xmlns='{NS_SM}' h='{a.received}'/>")
        # The acknowledgement moves the device's cursor in the store.
        self.wait_db("SELECT cursor FROM device_states WHERE username = ?", (n["alice"],), int(last_sid))
        for body in ("m4", "m5"):
            b.send(f"<message to='{n['alice_bare']}' type='chat' id='{body}'><body>{body}</body></message>")
        self.assertEqual(bodies_of([a.recv_until(lambda e: local(e.tag) == "message") for _ in range(2)]),
                         ["m4", "m5"], "delivered, never acknowledged")
        received_before = a.received

        self.server.kill()
        self.server.start()
        b2, _ = login_plain(self.server, n["bob"], n["bob_pw"], resource="desk")
        self.addCleanup(b2.abort)
        b2.send("<presence/>")
        # While alice is away: archived, and kept offline for her.
        self.send_durably(b2, n["alice_bare"], ["m6"])
        self.wait_db("SELECT count(*) FROM offline_messages WHERE username = ?", (n["alice"],), 1)

        stream, resumed = self.resume(n["alice"], n["alice_pw"], token, received_before)
        self.assertTrue(is_sm(resumed, "resumed"), to_xml(resumed))
        self.assertEqual(resumed.get("previd"), token)
        self.assertEqual(resumed.get("h"), "1", "what the server had acknowledged before the crash")
        a = Device(stream)
        after = a.drain(quiet=1.0)
        replayed = [e for e in after if local(e.tag) == "message"]
        self.assertEqual(bodies_of(replayed), ["m4", "m5", "m6"],
                         "after the last acknowledged message: once each, in order")
        for m in replayed:
            sid = m.find(f"{{{NS_SID}}}stanza-id")
            self.assertIsNotNone(sid, to_xml(m))
            self.assertEqual(sid.get("by"), n["alice_bare"])
            self.assertIsNotNone(m.find(f"{{{NS_DELAY}}}delay"), "replayed with its time: " + to_xml(m))
            self.assertEqual(m.get("to"), n["alice_bare"])
        self.assertTrue(any(local(e.tag) == "presence" and e.get("from") == n["bob_full"] for e in after),
                        "the contact's presence, from the probe of the restored presence")
        seen = b2.recv_until(lambda e: local(e.tag) == "presence" and e.get("from") == n["alice_full"])
        self.assertEqual(seen.findtext("{jabber:client}show"), "away", "the presence from before the crash")
        self.wait_db("SELECT count(*) FROM offline_messages WHERE username = ?", (n["alice"],), 0)

        b2.send(f"<message to='{n['alice_full']}' type='chat' id='m7'><body>m7</body></message>")
        live = a.recv_until(lambda e: local(e.tag) == "message")
        self.assertEqual(bodies_of([live]), ["m7"])
        self.assertEqual(bodies_of(a.drain(quiet=0.5)), [], "nothing twice")
        # The count goes on from the resumed one.
        a.send(f"<message to='{n['bob_bare']}' type='chat' id='x1'><body>x1</body></message>")
        a.send(f"<r xmlns='{NS_SM}'/>")
        self.assertEqual(a.recv_until(lambda e: is_sm(e, "a")).get("h"), "2")
        # A clean close ends the session: nothing left to resume.
        a.send(f"<a xmlns='{NS_SM}' h='{received_before + a.received}'/>")
        stream.close()
        self.wait_db("SELECT count(*) FROM device_states WHERE username = ?", (n["alice"],), 0)

    def test_resumes_after_a_graceful_restart_without_duplicates(self):
        a, token, b, n = self.contacts()
        a.drain(quiet=0.3)
        b.send(f"<message to='{n['alice_bare']}' type='chat' id='g1'><body>g1</body></message>")
        self.assertEqual(bodies_of([a.recv_until(lambda e: local(e.tag) == "message")]), ["g1"])
        received = a.received
        # The shutdown hands g1, unacknowledged, to offline storage; the state stays.
        self.server.stop_keeping_data()
        self.server.start()
        self.assertEqual(self.server.sql("SELECT count(*) FROM device_states WHERE username = ?",
                                         (n["alice"],))[0][0], 1)
        stream, resumed = self.resume(n["alice"], n["alice_pw"], token, received)
        self.assertTrue(is_sm(resumed, "resumed"), to_xml(resumed))
        a = Device(stream)
        self.assertEqual(bodies_of(a.drain(quiet=1.0)), ["g1"], "replayed once")
        self.wait_db("SELECT count(*) FROM offline_messages WHERE username = ?", (n["alice"],), 0)
        laptop, _ = login_plain(self.server, n["alice"], n["alice_pw"], resource="laptop")
        self.addCleanup(laptop.abort)
        laptop.send("<presence/>")
        extra = []
        try:
            while True:
                extra.append(laptop.recv(timeout=0.7))
        except TimeoutError:
            pass
        self.assertEqual(bodies_of(extra), [], "the replayed message is not offline any more")

    def test_refuses_another_accounts_token_and_an_expired_one(self):
        a, token, b, n = self.contacts()
        short = login_plain(self.server, n["alice"], n["alice_pw"], resource="tablet")[0]
        self.addCleanup(short.abort)
        short.send(f"<enable xmlns='{NS_SM}' resume='true' max='2'/>")
        short_enabled = short.recv_until(lambda e: ns_of(e.tag) == NS_SM)
        self.assertEqual(short_enabled.get("max"), "2")
        self.wait_db("SELECT count(*) FROM device_states WHERE username = ?", (n["alice"],), 2)
        self.server.kill()
        self.server.start()
        _, failed = self.resume(n["bob"], n["bob_pw"], token, 0)
        self.assertTrue(is_sm(failed, "failed"), to_xml(failed))
        self.assertIsNotNone(failed.find(f"{{{NS_STANZAS}}}item-not-found"), to_xml(failed))
        time.sleep(2.5)  # the tablet's two seconds run out (counted from the restart)
        _, failed = self.resume(n["alice"], n["alice_pw"], short_enabled.get("id"), 0)
        self.assertTrue(is_sm(failed, "failed"), to_xml(failed))
        self.assertIsNotNone(failed.find(f"{{{NS_STANZAS}}}item-not-found"), to_xml(failed))
        _, resumed = self.resume(n["alice"], n["alice_pw"], token, 0)
        self.assertTrue(is_sm(resumed, "resumed"), "its owner still can: " + to_xml(resumed))

    def test_a_message_the_replay_left_out_still_comes_from_offline_storage(self):
        a, token, b, n = self.contacts()  # carbons off on alice's phone
        a.drain(quiet=0.3)
        received = a.received
        self.wait_db("SELECT count(*) FROM device_states WHERE username = ?", (n["alice"],), 1)
        self.server.kill()
        self.server.start()
        b2, _ = login_plain(self.server, n["bob"], n["bob_pw"], resource="desk")
        self.addCleanup(b2.abort)
        # To a resource of alice's that is not there (a stale full JID): archived, and kept
        # offline for her (RFC 6121 §8.5.3.2.1). The phone's replay leaves it out: it was
        # not to the phone, nor to the bare JID, and the phone has carbons off.
        desktop = n["alice_bare"] + "/desktop"
        self.send_durably(b2, desktop, ["for the desktop"])
        self.wait_db("SELECT count(*) FROM offline_messages WHERE username = ?", (n["alice"],), 1)
        stream, resumed = self.resume(n["alice"], n["alice_pw"], token, received)
        self.assertTrue(is_sm(resumed, "resumed"), to_xml(resumed))
        a = Device(stream)
        got = [e for e in a.drain(quiet=1.0) if local(e.tag) == "message"]
        self.assertEqual(bodies_of(got), ["for the desktop"], "delivered from offline storage, once")
        self.wait_db("SELECT count(*) FROM offline_messages WHERE username = ?", (n["alice"],), 0)

    def test_a_replayed_message_never_acknowledged_goes_offline_when_the_session_expires(self):
        alice, _, alice_pw = self.new_account("rsx")
        bob, _, bob_pw = self.new_account("rsy")
        a_stream, a_full = login_plain(self.server, alice, alice_pw, resource="phone")
        self.addCleanup(a_stream.abort)
        a_stream.send(f"<enable xmlns='{NS_SM}' resume='true' max='5'/>")
        enabled = a_stream.recv_until(lambda e: ns_of(e.tag) == NS_SM)
        self.assertTrue(is_sm(enabled, "enabled"), to_xml(enabled))
        a = Device(a_stream)
        a.send("<presence/>")
        b, _ = login_plain(self.server, bob, bob_pw, resource="desk")
        self.addCleanup(b.abort)
        self.send_durably(b, a_full, ["x1"])
        self.assertEqual(bodies_of([a.recv_until(lambda e: local(e.tag) == "message")]), ["x1"])
        self.wait_db("SELECT count(*) FROM device_states WHERE username = ?", (alice,), 1)
        self.server.kill()
        self.server.start()
        stream, resumed = self.resume(alice, alice_pw, enabled.get("id"), 0)
        self.assertTrue(is_sm(resumed, "resumed"), to_xml(resumed))
        replay = Device(stream)
        self.assertEqual(bodies_of([replay.recv_until(lambda e: local(e.tag) == "message")]), ["x1"])
        stream.abort()  # x1 never acknowledged; the session runs out of time (5 s)
        self.wait_db("SELECT count(*) FROM offline_messages WHERE username = ?", (alice,), 1, timeout=15)
        later, _ = login_plain(self.server, alice, alice_pw, resource="laptop")
        self.addCleanup(later.abort)
        later.send("<presence/>")
        got = Device(later).recv_until(lambda e: local(e.tag) == "message")
        self.assertEqual(bodies_of([got]), ["x1"], "from offline storage, as a live delivery would be")

    def test_a_session_that_ended_is_not_resumed_while_its_state_is_deleted(self):
        a, token, b, n = self.contacts()
        self.wait_db("SELECT count(*) FROM device_states WHERE username = ?", (n["alice"],), 1)
        stream = connect_starttls(self.server)
        self.addCleanup(stream.abort)
        elem = stream.auth_plain(n["alice"], n["alice_pw"])
        self.assertEqual(local(elem.tag), "success", to_xml(elem))
        stream.open()
        with self.server.holding_writes("device_states"):
            # A clean close ends the session for good (XEP-0198 §5). The delete of its
            # stored state cannot land yet, and the store's reads still find the state.
            a.send("</stream:stream>")
            a.stream.wait_closed()
            self.assertEqual(self.server.sql("SELECT count(*) FROM device_states WHERE username = ?",
                                             (n["alice"],)), [(1,)])
            stream.send(f"<resume xmlns='{NS_SM}' previd='{token}' h='{a.received}'/>")
            # Answered at once, without the store (which would time this out, or resume).
            answer = stream.recv_until(lambda e: ns_of(e.tag) == NS_SM, timeout=3)
        self.assertTrue(is_sm(answer, "failed"), "the session is over: " + to_xml(answer))
        self.assertIsNotNone(answer.find(f"{{{NS_STANZAS}}}item-not-found"), to_xml(answer))
        self.wait_db("SELECT count(*) FROM device_states WHERE username = ?", (n["alice"],), 0)
        _, again = self.resume(n["alice"], n["alice_pw"], token, a.received)
        self.assertTrue(is_sm(again, "failed"), "nor once its state is gone: " + to_xml(again))

    def test_a_session_whose_account_was_deleted_ends_instead_of_waiting_for_its_state(self):
        # `nines user del` on a running server: the session's next write of its
        # resumption state finds no account. Its acks wait for that write
        # (G1), so it used to retry for ever and never answer <r/>; now the
        # session ends with <not-authorized/>.
        alice, _bare, alice_pw = self.new_account("rsdel")
        stream, _full = login_plain(self.server, alice, alice_pw, resource="phone")
        self.addCleanup(stream.abort)
        stream.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        self.assertTrue(is_sm(stream.recv_until(lambda e: ns_of(e.tag) == NS_SM), "enabled"))
        self.wait_db("SELECT count(*) FROM device_states WHERE username = ?", (alice,), 1)
        done = self.server.cli("user", "del", alice)
        self.assertEqual(done.returncode, 0, done.stderr.decode(errors="replace"))
        d = Device(stream)
        d.send(f"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq><r xmlns='{NS_SM}'/>")
        error = d.recv_until(lambda e: local(e.tag) == "error" and ns_of(e.tag) == NS_STREAM
                             or is_sm(e, "a"), timeout=10)
        self.assertEqual(local(error.tag), "error", "acknowledged for a deleted account: " + to_xml(error))
        self.assertIsNotNone(error.find(f"{{{NS_STREAMS_ERR}}}not-authorized"), to_xml(error))
        stream.wait_closed(timeout=10)
        self.assertTrue(stream.closed)


if __name__ == "__main__":
    unittest.main()
