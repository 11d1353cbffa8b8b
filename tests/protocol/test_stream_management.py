"""Protocol test: XEP-0198 stream management, over raw sockets and with slixmpp's plugin.

  StreamManagementTest
    enable       <enabled/> with an unguessable id, resume='true' and the server's max;
                 enable before binding and enable twice fail with <unexpected-request/>
    acks         <a h/> counts every stanza read after <enable/> (messages, presence, iqs,
                 including ones answered with an error); the server asks with <r/> and
                 drops what the client acknowledges; an impossible h is a stream error
                 with <handled-count-too-high/>; an IQ set or a subscription is counted
                 only once its roster write has landed (held back by a write lock)
    resume       a dropped connection is resumed: <resumed h/> reports what the server
                 handled, and every stanza the client had not acknowledged arrives again,
                 exactly once, followed by what came in while it was away; the old
                 connection is replaced if it still looks alive; a token works only for
                 its own account, and only once; a resume whose new connection is reset
                 before <resumed/> goes out leaves the session resumable
    expiry       a session not resumed in time ends, and the messages it never had
                 acknowledged go to offline storage: a new login gets them
    limit        stream_management.max_unacked: a client that never acknowledges gets a
                 policy-violation stream error, and loses nothing
  AckDelayTest
    stream_management.ack_delay_ms: the answer to an <r/> waits for a stanza to the same
    client and goes out with it; with none, it goes out alone once the delay has run out; one
    owed to a connection that a resume replaces is dropped (<resumed/> reports the count)
  SlixmppStreamManagementTest
    slixmpp 1.8.3's xep_0198 plugin enables stream management, and messages flow both
    ways with its acks counted by the server; when its connection drops, it resumes on
    reconnect and gets what arrived meanwhile, once each, in order
"""

from __future__ import annotations

import asyncio
import sys
import time
import unittest
import xml.etree.ElementTree as ET

from harness import DOMAIN, ServerTestCase, connect_starttls, local, login_plain, mam_message_ids, ns_of, to_xml
from test_slixmpp import AsyncServerTestCase

NS_SM = "urn:xmpp:sm:3"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def is_sm(elem: ET.Element, name: str) -> bool:
    return ns_of(elem.tag) == NS_SM and local(elem.tag) == name


def message(to: str, body: str, mid: str) -> str:
    return f"<message to='{to}' type='chat' id='{mid}'><body>{body}</body></message>"


class StreamManagementTest(ServerTestCase):
    SERVER_CONFIG = {"stream_management": {"max_unacked": 50, "request_every": 5}}

    # -- helpers -----------------------------------------------------------

    def login(self, user, password, resource="sm"):
        stream, jid = login_plain(self.server, user, password, resource=resource)
        self.addCleanup(stream.abort)
        return stream, jid

    def enable(self, stream, resume=True, max_seconds=None) -> ET.Element:
        attrs = " resume='true'" if resume else ""
        if max_seconds is not None:
            attrs += f" max='{max_seconds}'"
        stream.send(f"<enable xmlns='{NS_SM}'{attrs}/>")
        return stream.recv_until(lambda e: ns_of(e.tag) == NS_SM)

    def ack_h(self, stream) -> int:
        """Asks the server for its count; returns h (answering any <r/> it sends meanwhile is
        the caller's business: this only reads until the <a/>)."""
        stream.send(f"<r xmlns='{NS_SM}'/>")
        return int(stream.recv_until(lambda e: is_sm(e, "a")).get("h"))

    def authenticate(self, user, password):
        """A new stream up to the point where a client binds or resumes."""
        stream = connect_starttls(self.server)
        self.addCleanup(stream.abort)
        elem = stream.auth_plain(user, password)
        self.assertEqual(local(elem.tag), "success", to_xml(elem))
        features = stream.open()
        self.assertIsNotNone(features.find(f"{{{NS_SM}}}sm"), f"no <sm/> feature: {to_xml(features)}")
        return stream

    def bodies(self, stream, count, timeout=10.0) -> list:
        """The next `count` message bodies (other elements skipped)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            elem = stream.recv(max(0.01, deadline - time.monotonic()))
            if local(elem.tag) == "message":
                out.append(elem.findtext("{jabber:client}body"))
        return out

    def wait_detached(self, since: int) -> None:
        self.server.wait_for_log(r"connection lost; resumable", since=since)

    # -- enable ------------------------------------------------------------

    def test_enable_gives_an_unguessable_resumption_id(self):
        user, _, password = self.new_account("smen")
        a, _ = self.login(user, password)
        enabled = self.enable(a)
        self.assertTrue(is_sm(enabled, "enabled"), to_xml(enabled))
        self.assertEqual(enabled.get("resume"), "true")
        self.assertRegex(enabled.get("id") or "", r"^[0-9a-f]{32}$", "128 random bits")
        self.assertEqual(enabled.get("max"), "300", "the default stream_management.resume_timeout")
        self.assertIsNone(enabled.get("location"), "one node: nowhere else to resume")
        b, _ = self.login(user, password, resource="other")
        other = self.enable(b, max_seconds=60)
        self.assertEqual(other.get("max"), "60", "a client may ask for less")
        self.assertNotEqual(other.get("id"), enabled.get("id"))
        again = self.enable(a)
        self.assertTrue(is_sm(again, "failed"), to_xml(again))
        self.assertIsNotNone(again.find(f"{{{NS_STANZAS}}}unexpected-request"), "enable twice")

    def test_enable_without_resumption_has_no_id(self):
        user, _, password = self.new_account("smnr")
        a, _ = self.login(user, password)
        enabled = self.enable(a, resume=False)
        self.assertTrue(is_sm(enabled, "enabled"))
        self.assertIsNone(enabled.get("id"))
        self.assertIsNone(enabled.get("resume"))

    def test_enable_before_binding_fails(self):
        user, _, password = self.new_account("smpre")
        stream = self.authenticate(user, password)
        failed = self.enable(stream)
        self.assertTrue(is_sm(failed, "failed"), to_xml(failed))
        self.assertIsNotNone(failed.find(f"{{{NS_STANZAS}}}unexpected-request"))
        stream.bind("late")  # the stream is still usable
        self.assertTrue(is_sm(self.enable(stream), "enabled"))

    # -- acks --------------------------------------------------------------

    def test_acks_count_every_stanza_read_after_enable(self):
        user, bare, password = self.new_account("smack")
        peer, peer_bare, peer_password = self.new_account("smpeer")
        p, _ = self.login(peer, peer_password)
        p.send("<presence/>")
        a, _ = self.login(user, password)
        a.send("<presence/>")  # before enable: not counted
        self.assertTrue(is_sm(self.enable(a), "enabled"))
        self.assertEqual(self.ack_h(a), 0)
        a.send(message(peer_bare, "one", "m1"))
        a.send(message(peer_bare, "two", "m2"))
        a.send("<iq type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>")
        a.send("<message to='nobody-here@nowhere.invalid' type='chat' id='m3'><body>x</body></message>")
        a.send("<presence><show>away</show></presence>")
        self.assertEqual(self.ack_h(a), 5, "2 messages, an iq, a bounced message and a presence")
        self.assertEqual(self.bodies(p, 2), ["one", "two"])

    def test_an_iq_set_or_subscription_is_acknowledged_once_its_write_has_landed(self):
        # G1: <a h/> covers a roster change only once the store has it.
        user, _, password = self.new_account("smdur")
        _, contact_bare, _ = self.new_account("smdur_c")
        a, _ = self.login(user, password)
        self.assertTrue(is_sm(self.enable(a, resume=False), "enabled"))
        self.assertEqual(self.ack_h(a), 0)
        answered = lambda e: is_sm(e, "a") or (local(e.tag) == "iq" and e.get("id") == "add1")
        with self.server.holding_writes("roster_items"):
            a.send(f"<iq type='set' id='add1'><query xmlns='jabber:iq:roster'><item jid='{contact_bare}'/>"
                   "</query></iq>")
            a.send(f"<presence type='subscribe' to='{contact_bare}'/>")
            a.send(f"<r xmlns='{NS_SM}'/>")
            with self.assertRaises(TimeoutError):
                got = a.recv_until(answered, timeout=1.5)
                self.fail(f"answered while the roster write could not land: {to_xml(got)}")
        result = a.recv_until(answered)
        self.assertEqual((local(result.tag), result.get("type")), ("iq", "result"), to_xml(result))
        ack = a.recv_until(lambda e: is_sm(e, "a"))
        self.assertEqual(ack.get("h"), "2", "the roster set and the subscription, after the result")
        self.assertEqual(self.server.sql("SELECT count(*) FROM roster_items WHERE username = ? AND jid = ? AND ask_out",
                                         (user, contact_bare)), [(1,)], "the request is in the roster")

    def test_server_requests_acks_and_forgets_what_was_acknowledged(self):
        user, bare, password = self.new_account("smreq")
        peer, peer_bare, peer_password = self.new_account("smsnd")
        a, full = self.login(user, password)
        self.assertTrue(is_sm(self.enable(a), "enabled"))
        p, _ = self.login(peer, peer_password)
        for i in range(6):  # stream_management.request_every = 5
            p.send(message(full, f"n{i}", f"r{i}"))
        stanzas = 0
        while True:
            elem = a.recv()
            if is_sm(elem, "r"):
                break
            stanzas += 1
        self.assertEqual(stanzas, 5, "the <r/> follows the fifth unacknowledged stanza")
        a.send(f"<a xmlns='{NS_SM}' h='5'/>")
        self.assertEqual(self.bodies(a, 1), ["n5"])
        self.assertEqual(self.ack_h(a), 0, "acks are not stanzas")
        a.send(f"<a xmlns='{NS_SM}' h='7'/>")  # one more than sent
        err = a.recv_until(lambda e: local(e.tag) == "error")
        high = err.find(f"{{{NS_SM}}}handled-count-too-high")
        self.assertEqual((high.get("h"), high.get("send-count")), ("7", "6"), "6 sent")

    def test_impossible_ack_is_a_stream_error(self):
        user, _, password = self.new_account("smhigh")
        a, _ = self.login(user, password)
        self.assertTrue(is_sm(self.enable(a), "enabled"))
        a.send(f"<a xmlns='{NS_SM}' h='3'/>")
        err = a.recv_until(lambda e: local(e.tag) == "error")
        self.assertIsNotNone(err.find("{urn:ietf:params:xml:ns:xmpp-streams}undefined-condition"), to_xml(err))
        high = err.find(f"{{{NS_SM}}}handled-count-too-high")
        self.assertIsNotNone(high, to_xml(err))
        self.assertEqual((high.get("h"), high.get("send-count")), ("3", "0"))
        a.wait_closed()

    # -- resume ------------------------------------------------------------

    def test_resume_resends_exactly_what_was_not_acknowledged(self):
        user, bare, password = self.new_account("smres")
        peer, peer_bare, peer_password = self.new_account("smres_p")
        a, full = self.login(user, password)
        token = self.enable(a).get("id")
        p, _ = self.login(peer, peer_password)
        self.assertTrue(is_sm(self.enable(p, resume=False), "enabled"))
        for i in range(4):
            p.send(message(full, f"b{i}", f"x{i}"))
        self.assertEqual(self.bodies(a, 4), ["b0", "b1", "b2", "b3"])
        a.send(message(peer_bare, "from a", "ya"))
        self.assertEqual(self.ack_h(a), 1)
        since = self.server.stderr_offset()
        a.abort()  # no </stream:stream>: the connection just drops
        self.wait_detached(since)
        for i in range(4, 6):  # while away
            p.send(message(full, f"b{i}", f"x{i}"))
        self.assertEqual(self.ack_h(p), 6, "the sender's messages are handled while the recipient is away")

        b = self.authenticate(user, password)
        b.send(f"<resume xmlns='{NS_SM}' previd='{token}' h='2'/>")  # it had processed b0 and b1
        resumed = b.recv()
        self.assertTrue(is_sm(resumed, "resumed"), to_xml(resumed))
        self.assertEqual(resumed.get("previd"), token)
        self.assertEqual(resumed.get("h"), "1", "the server handled the one message a sent")
        self.assertEqual(self.bodies(b, 4), ["b2", "b3", "b4", "b5"], "unacknowledged, once, in order")
        # The session is the same one: same full JID, and it still gets messages and acks.
        p.send(message(full, "after", "x6"))
        self.assertEqual(self.bodies(b, 1), ["after"])
        b.send(f"<a xmlns='{NS_SM}' h='7'/>")
        b.send("<iq type='get' id='ping2'><ping xmlns='urn:xmpp:ping'/></iq>")
        pong = b.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == "ping2")
        self.assertEqual(pong.get("to"), full)
        self.assertEqual(self.ack_h(b), 2, "counting goes on from the old stream")
        with self.assertRaises(TimeoutError):
            extra = self.bodies(b, 1, timeout=0.5)
            self.fail(f"a duplicate arrived: {extra}")

        # The same id resumes the session again (the client moved again): the connection
        # it had is replaced. b acknowledged 7; the pong was the 8th.
        c = self.authenticate(user, password)
        c.send(f"<resume xmlns='{NS_SM}' previd='{token}' h='8'/>")
        again = c.recv()
        self.assertTrue(is_sm(again, "resumed"), to_xml(again))
        self.assertEqual(again.get("h"), "2", "the message and the ping")
        b.wait_closed()
        self.assertTrue(b.closed, "the connection it replaced is closed")
        with self.assertRaises(TimeoutError):
            extra = self.bodies(c, 1, timeout=0.5)
            self.fail(f"something was resent: {extra}")

    def test_a_resume_whose_connection_is_reset_leaves_the_session_resumable(self):
        user, _, password = self.new_account("smrst")
        peer, _, peer_password = self.new_account("smrst_p")
        a, full = self.login(user, password)
        token = self.enable(a).get("id")
        p, p_full = self.login(peer, peer_password)
        for i in range(3):
            p.send(message(full, f"r{i}", f"r{i}"))
        self.assertEqual(self.bodies(a, 3), ["r0", "r1", "r2"])
        # Handled, but its count not yet in the stored state: <resumed/> will wait for that write.
        a.send(message(p_full, "from a", "ra"))
        self.assertEqual(self.bodies(p, 1), ["from a"])
        since = self.server.stderr_offset()
        a.abort()
        self.wait_detached(since)
        b = self.authenticate(user, password)
        with self.server.holding_writes("device_states"):
            b.send(f"<resume xmlns='{NS_SM}' previd='{token}' h='0'/>")
            with self.assertRaises(TimeoutError):
                early = b.recv(timeout=0.7)
                self.fail(f"resumed before its count was stored: {to_xml(early)}")
            since = self.server.stderr_offset()
            b.reset()  # <resumed/> and the resent messages then go to a dead connection
        self.wait_detached(since)
        c = self.authenticate(user, password)
        c.send(f"<resume xmlns='{NS_SM}' previd='{token}' h='0'/>")
        resumed = c.recv()
        self.assertTrue(is_sm(resumed, "resumed"), "still resumable: " + to_xml(resumed))
        self.assertEqual(resumed.get("h"), "1")
        self.assertEqual(self.bodies(c, 3), ["r0", "r1", "r2"], "nothing acknowledged, so all again")
        p.send(message(full, "live", "r3"))
        self.assertEqual(self.bodies(c, 1), ["live"])

    def test_resume_replaces_a_connection_that_still_looks_alive(self):
        user, bare, password = self.new_account("smlive")
        peer, peer_bare, peer_password = self.new_account("smlive_p")
        a, full = self.login(user, password)
        token = self.enable(a).get("id")
        p, _ = self.login(peer, peer_password)
        p.send(message(full, "one", "l1"))
        self.assertEqual(self.bodies(a, 1), ["one"])
        b = self.authenticate(user, password)
        b.send(f"<resume xmlns='{NS_SM}' previd='{token}' h='0'/>")
        resumed = b.recv()
        self.assertTrue(is_sm(resumed, "resumed"), to_xml(resumed))
        self.assertEqual(self.bodies(b, 1), ["one"], "not acknowledged on the old connection")
        a.wait_closed()
        self.assertTrue(a.closed, "the old connection is closed")
        p.send(message(full, "two", "l2"))
        self.assertEqual(self.bodies(b, 1), ["two"])

    def test_token_of_another_account_or_unknown_fails(self):
        user, _, password = self.new_account("smown")
        thief, _, thief_password = self.new_account("smthief")
        a, _ = self.login(user, password)
        token = self.enable(a).get("id")
        for previd in (token, "0" * 32, "not-a-token"):
            t = self.authenticate(thief, thief_password)
            t.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>")
            failed = t.recv()
            self.assertTrue(is_sm(failed, "failed"), to_xml(failed))
            self.assertIsNotNone(failed.find(f"{{{NS_STANZAS}}}item-not-found"), to_xml(failed))
            t.bind("mine")  # the stream goes on as a fresh session
        a.send("<iq type='get' id='still'><ping xmlns='urn:xmpp:ping'/></iq>")
        self.assertEqual(a.recv_until(lambda e: local(e.tag) == "iq").get("type"), "result",
                         "the owner's session was not touched")

    def test_resume_before_authentication_fails(self):
        stream = connect_starttls(self.server)
        self.addCleanup(stream.abort)
        stream.send(f"<resume xmlns='{NS_SM}' previd='{'0' * 32}' h='0'/>")
        failed = stream.recv()
        self.assertTrue(is_sm(failed, "failed"), to_xml(failed))
        self.assertIsNotNone(failed.find(f"{{{NS_STANZAS}}}unexpected-request"))

    def test_clean_close_ends_the_session(self):
        user, _, password = self.new_account("smclose")
        a, _ = self.login(user, password)
        token = self.enable(a).get("id")
        a.close()
        b = self.authenticate(user, password)
        b.send(f"<resume xmlns='{NS_SM}' previd='{token}' h='0'/>")
        failed = b.recv()
        self.assertTrue(is_sm(failed, "failed"), "</stream:stream> ends a session for good")

    # -- expiry and limits -------------------------------------------------

    def test_expired_session_moves_unacknowledged_messages_offline(self):
        user, bare, password = self.new_account("smexp")
        peer, peer_bare, peer_password = self.new_account("smexp_p")
        a, full = self.login(user, password)
        token = self.enable(a, max_seconds=1).get("id")
        a.send("<presence/>")
        p, _ = self.login(peer, peer_password)
        p.send(message(bare, "while", "e1"))
        self.assertEqual(self.bodies(a, 1), ["while"])  # received, never acknowledged
        since = self.server.stderr_offset()
        a.abort()
        self.wait_detached(since)
        p.send(message(bare, "away", "e2"))  # the detached session still takes it
        self.server.wait_for_log(r"not resumed in 1 s", since=since, timeout=15)
        b = self.authenticate(user, password)
        b.send(f"<resume xmlns='{NS_SM}' previd='{token}' h='0'/>")
        self.assertTrue(is_sm(b.recv(), "failed"), "expired")
        b.bind("back")
        b.send("<presence/>")
        got = self.bodies(b, 2)
        self.assertEqual(sorted(got), ["away", "while"], "both come back from offline storage")

    def test_client_that_never_acknowledges_is_cut_off_without_loss(self):
        user, bare, password = self.new_account("smmax")
        peer, peer_bare, peer_password = self.new_account("smmax_p")
        a, full = self.login(user, password)
        self.assertTrue(is_sm(self.enable(a), "enabled"))
        a.send("<presence/>")
        p, _ = self.login(peer, peer_password)
        self.assertTrue(is_sm(self.enable(p, resume=False), "enabled"))
        for i in range(60):  # stream_management.max_unacked = 50 in this class
            p.send(message(bare, f"u{i}", f"u{i}"))
        err = a.recv_until(lambda e: local(e.tag) == "error", timeout=20)
        self.assertIsNotNone(err.find("{urn:ietf:params:xml:ns:xmpp-streams}policy-violation"), to_xml(err))
        self.assertIn("unacknowledged", err.findtext("{urn:ietf:params:xml:ns:xmpp-streams}text") or "")
        self.assertEqual(self.ack_h(p), 60)
        b, _ = self.login(user, password, resource="again")
        b.send("<presence/>")
        got = self.bodies(b, 60, timeout=20)
        self.assertEqual(sorted(got), sorted(f"u{i}" for i in range(60)), "nothing lost")

    def test_cut_off_while_sending_what_client_state_indication_held_loses_nothing(self):
        """XEP-0352 holds receipts for an inactive client; a message with a body sends them all
        first, and going over max_unacked on the way ends the session: the receipts and the
        message that let them out are all rerouted to offline storage."""
        user, bare, password = self.new_account("smcsi")
        peer, peer_bare, peer_password = self.new_account("smcsi_p")
        a, full = self.login(user, password)
        self.assertTrue(is_sm(self.enable(a, resume=False), "enabled"))
        a.send("<presence/>")
        a.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        a.send("<iq type='get' id='csi-sync'><ping xmlns='urn:xmpp:ping'/></iq>")  # handled in order
        a.recv_until(lambda e: e.get("id") == "csi-sync")
        p, _ = self.login(peer, peer_password)
        for i in range(55):  # held (csi.max_held is 500); max_unacked = 50 in this class
            p.send(f"<message to='{full}' id='r{i}'><received xmlns='urn:xmpp:receipts' id='x{i}'/></message>")
        p.send(message(full, "let-out", "let-out"))
        err = a.recv_until(lambda e: local(e.tag) == "error", timeout=20)
        self.assertIsNotNone(err.find("{urn:ietf:params:xml:ns:xmpp-streams}policy-violation"), to_xml(err))
        b, _ = self.login(user, password, resource="again")
        b.send("<presence/>")
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 56:
            elem = b.recv(max(0.01, deadline - time.monotonic()))
            if local(elem.tag) == "message":
                receipt = elem.find("{urn:xmpp:receipts}received")
                got.append(receipt.get("id") if receipt is not None else elem.findtext("{jabber:client}body"))
        self.assertEqual(sorted(got), sorted([f"x{i}" for i in range(55)] + ["let-out"]), "nothing lost")


class AckDelayTest(ServerTestCase):
    """stream_management.ack_delay_ms: the answer to a client's <r/> waits, at most that long, for
    a stanza to the same client, so both go out in one write."""

    SERVER_CONFIG = {"stream_management": {"ack_delay_ms": 1000}}

    def login_enabled(self, prefix):
        user, bare, password = self.new_account(prefix)
        stream, full = login_plain(self.server, user, password, resource="sm")
        self.addCleanup(stream.abort)
        stream.send(f"<enable xmlns='{NS_SM}'/>")
        self.assertTrue(is_sm(stream.recv_until(lambda e: ns_of(e.tag) == NS_SM), "enabled"))
        return stream, full

    def test_a_lone_answer_waits_for_the_delay_then_goes_out(self):
        a, _ = self.login_enabled("delaylone")
        start = time.monotonic()
        a.send(f"<r xmlns='{NS_SM}'/>")
        ack = a.recv_until(lambda e: is_sm(e, "a"))
        waited = time.monotonic() - start
        self.assertEqual(ack.get("h"), "0")
        self.assertGreaterEqual(waited, 0.9, "nothing else went to this client, so the <a/> waited")
        self.assertLess(waited, 5, "and then went out on its own")

    def test_an_answer_waiting_for_a_replaced_connection_does_not_precede_resumed(self):
        user, _, password = self.new_account("delayres")
        a, _ = login_plain(self.server, user, password, resource="sm")
        self.addCleanup(a.abort)
        a.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        token = a.recv_until(lambda e: ns_of(e.tag) == NS_SM).get("id")
        a.send(f"<r xmlns='{NS_SM}'/>")  # its answer waits for the delay
        time.sleep(0.2)  # the server has read the <r/> by now
        b = connect_starttls(self.server)
        self.addCleanup(b.abort)
        self.assertEqual(local(b.auth_plain(user, password).tag), "success")
        b.open()
        b.send(f"<resume xmlns='{NS_SM}' previd='{token}' h='0'/>")
        first = b.recv()
        self.assertTrue(is_sm(first, "resumed"), "the new stream starts with <resumed/>: " + to_xml(first))
        with self.assertRaises(TimeoutError):
            late = b.recv(timeout=1.5)
            self.fail(f"the old connection's answer came after all: {to_xml(late)}")

    def test_a_delivery_takes_the_waiting_answer_along(self):
        a, full = self.login_enabled("delayrcv")
        peer, _, peer_password = self.new_account("delaysnd")
        p, _ = login_plain(self.server, peer, peer_password, resource="p")
        self.addCleanup(p.abort)
        start = time.monotonic()
        a.send(f"<r xmlns='{NS_SM}'/>")
        time.sleep(0.2)  # the server has read the <r/> by now
        p.send(message(full, "hello", "d1"))
        got = []
        waited = None
        while len(got) < 2:
            elem = a.recv()
            got.append(elem)
            if is_sm(elem, "a"):
                waited = time.monotonic() - start
                self.assertEqual(elem.get("h"), "0")
        kinds = ["a" if is_sm(e, "a") else e.findtext("{jabber:client}body") for e in got]
        self.assertEqual(kinds, ["a", "hello"], "the <a/> was written first, in the delivery's write")
        self.assertLess(waited, 0.9, "the <a/> went out with the delivery, before its delay ran out")


    def test_a_later_answer_gets_its_own_full_delay(self):
        # The first answer rides with a delivery; the wait armed for it must
        # not cut the next answer's short (it used to send that one alone
        # when the first one's delay ran out).
        a, full = self.login_enabled("delaytwo")
        peer, peer_bare, peer_password = self.new_account("delaytwosnd")
        p, _ = login_plain(self.server, peer, peer_password, resource="p")
        self.addCleanup(p.abort)
        a.send(f"<r xmlns='{NS_SM}'/>")
        time.sleep(0.2)  # the server has read the <r/> by now
        p.send(message(full, "hello", "t1"))
        got = [a.recv(), a.recv()]
        kinds = ["a" if is_sm(e, "a") else e.findtext("{jabber:client}body") for e in got]
        self.assertEqual(kinds, ["a", "hello"], "the first <a/> rode with the delivery")
        # Acknowledged, so the server's once-a-second check has no <r/> to
        # send this client (the second <a/> would ride with it).
        a.send(f"<a xmlns='{NS_SM}' h='1'/>")
        time.sleep(0.4)  # 0.6 s into the first answer's delay
        start = time.monotonic()
        a.send(message(peer_bare + "/p", "to the peer", "t2") + f"<r xmlns='{NS_SM}'/>")
        late = a.recv_until(lambda e: is_sm(e, "a"))
        waited = time.monotonic() - start
        self.assertEqual(late.get("h"), "1")
        self.assertGreaterEqual(waited, 0.9, "the second <a/> waited its own delay, not the rest of the first's")
        self.assertLess(waited, 5)


class SlixmppStreamManagementTest(AsyncServerTestCase):

    async def test_slixmpp_plugin_enables_and_counts(self):
        alice_jid, alice_pw = self.account("slxa")
        bob_jid, bob_pw = self.account("slxb")
        enabled = []
        alice = self.client(alice_jid, alice_pw)
        alice.register_plugin("xep_0198")
        alice.add_event_handler("sm_enabled", enabled.append)
        await alice.login()
        alice.send_presence()
        bob = await self.online(bob_jid, bob_pw)
        sm = alice["xep_0198"]
        deadline = asyncio.get_running_loop().time() + 10
        while not enabled and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        self.assertTrue(enabled, "slixmpp enabled stream management")
        self.assertTrue(sm.sm_id, "with resumption")
        bodies = [f"s{i}" for i in range(20)]
        for body in bodies:
            alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
        for body in bodies:
            await bob.messages.wait_for(lambda m, b=body: m["body"] == b, f"message {body!r}")
        # The plugin asks every 5 stanzas; the server's count covers the presence, the 20
        # messages, and whatever slixmpp sent after enabling.
        while sm.last_ack < 21 and asyncio.get_running_loop().time() < deadline + 10:
            sm.request_ack()
            await asyncio.sleep(0.1)
        self.assertGreaterEqual(sm.last_ack, 21)
        self.assertLessEqual(sm.last_ack, sm.seq, "never more than it sent")
        self.assertEqual(len(sm.unacked_queue), sm.seq - sm.last_ack)


    async def test_slixmpp_resumes_after_its_connection_drops(self):
        alice_jid, alice_pw = self.account("slxr")
        bob_jid, bob_pw = self.account("slxs")
        loop = asyncio.get_running_loop()
        alice = self.client(alice_jid, alice_pw)
        alice.register_plugin("xep_0198")
        resumed, enabled = [], []
        alice.add_event_handler("session_resumed", resumed.append)
        alice.add_event_handler("sm_enabled", enabled.append)
        await alice.login()
        alice.send_presence()
        bob = await self.online(bob_jid, bob_pw)
        deadline = loop.time() + 10
        while not enabled and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self.assertTrue(enabled)
        await alice.sync()
        since = self.server.stderr_offset()
        alice.abort()  # the TCP connection drops; slixmpp keeps its resumption id
        self.server.wait_for_log(r"connection lost; resumable", since=since)
        bodies = [f"away {i}" for i in range(3)]
        for body in bodies:
            bob.send_message(mto=alice_jid, mbody=body, mtype="chat")
        await bob.sync()
        alice.connect(alice.target, force_starttls=True)
        for body in bodies:
            await alice.messages.wait_for(lambda m, b=body: m["body"] == b, f"message {body!r}")
        self.assertTrue(resumed, "slixmpp resumed the session (no new bind)")
        await alice.sync()
        got = [m["body"] for m in alice.messages.items if m["body"]]
        self.assertEqual(got, bodies, "each exactly once, in order")


class CrashTest(ServerTestCase):
    """G1 with acknowledgements: kill -9 under load loses no acknowledged message."""

    SERVER_CONFIG = {"limits": {"stanzas_per_second": 1000000, "stanza_burst": 1000000}}
    BATCH = 25

    def test_kill_9_loses_no_acknowledged_message(self):
        import threading

        sender, sender_bare, sender_pw = self.new_account("crash_s")
        recipient, recipient_bare, recipient_pw = self.new_account("crash_r")
        r, r_full = login_plain(self.server, recipient, recipient_pw, resource="phone")
        self.addCleanup(r.abort)
        r.send("<presence/>")
        s, _ = login_plain(self.server, sender, sender_pw, resource="laptop")
        self.addCleanup(s.abort)
        self.assertTrue(is_sm(StreamManagementTest.enable(self, s, resume=False), "enabled"))
        live: list = []

        def read_live():
            try:
                while True:
                    elem = r.recv(timeout=30)
                    if local(elem.tag) == "message" and elem.get("id"):
                        live.append(elem.get("id"))
            except Exception:  # the server died: the stream ends
                pass

        reader = threading.Thread(target=read_live, daemon=True)
        reader.start()
        acked = 0
        sent = 0
        killer = threading.Timer(1.5, self.server.kill)
        killer.start()
        try:
            # Two batches in flight: the kill lands while messages wait for their writes.
            while True:
                for _ in range(self.BATCH):
                    s.send(message(recipient_bare, f"c{sent}", f"c{sent}"))
                    sent += 1
                s.send(f"<r xmlns='{NS_SM}'/>")
                if sent > self.BATCH:
                    acked = int(s.recv_until(lambda e: is_sm(e, "a"), timeout=10).get("h"))
        except (OSError, AssertionError, TimeoutError):
            pass  # the connection died with the server
        killer.join()
        reader.join(timeout=10)
        self.assertGreater(acked, self.BATCH, "the server acknowledged messages before it died")
        self.server.start()
        back, _ = login_plain(self.server, recipient, recipient_pw, resource="phone")
        self.addCleanup(back.abort)
        archived = mam_message_ids(back, sender_bare)
        expected = [f"c{i}" for i in range(acked)]
        lost = sorted(set(expected) - set(archived) - set(live), key=lambda x: int(x[1:]))
        self.assertEqual(lost, [], f"{len(lost)} acknowledged messages lost of {acked} (sent {sent})")
        self.assertEqual(len(archived), len(set(archived)), "no duplicates in the archive")
        self.assertEqual(archived, sorted(archived, key=lambda x: int(x[1:])), "in the order sent")
        self.assertTrue(set(live) <= set(archived), "everything delivered live was archived first")
        sys.stderr.write(f"\n[crash] sent {sent}, acknowledged {acked}, archived {len(archived)}, "
                         f"delivered live {len(live)}, lost 0\n")


if __name__ == "__main__":
    unittest.main()
