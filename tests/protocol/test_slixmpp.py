"""Protocol tests: the real nines binary driven by slixmpp (Debian python3-slixmpp 1.8.3).

Run: python3 -m unittest discover -s tests/protocol -p 'test_*.py' -v
(with a python3 that has slixmpp: Debian's /usr/bin/python3; see run.sh).

What each class covers, and the RFC/XEP text it checks:
  SaslLoginTest          SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN, one mechanism forced at a
                         time, over STARTTLS (RFC 6120 §5) and direct TLS (XEP-0368);
                         wrong password and unknown user -> <not-authorized/> (RFC 6120
                         §6.5.10); the SCRAM 'y' downgrade flag refused while -PLUS is
                         offered (RFC 5802 §6); slixmpp's -PLUS (tls-unique) refused.
  SaslWithoutPlusTest    the same 'y' flag accepted when the server offers no -PLUS.
  RosterSubscriptionTest roster set + push (RFC 6121 §2.3), the full subscription
                         handshake both ways to 'both' (RFC 6121 §3.1), roster pushes.
  MessageTest            online message with 'from' stamped as the sender's full JID
                         (RFC 6120 §8.1.2.1); offline storage with XEP-0203 delay,
                         in order, delivered once (XEP-0160).
  PresenceTest           presence broadcast to a subscribed contact with status text,
                         and unavailable on clean and abrupt disconnect (RFC 6121 §4).
  ServiceTest            XEP-0199 ping, XEP-0030 disco#info, XEP-0092 version.

slixmpp 1.8.3 and SCRAM-*-PLUS: its SCRAM always binds with 'tls-unique'
(slixmpp/util/sasl/mechanisms.py: gs2_cbind_flag = b'p=tls-unique'), which RFC 9266
forbids on TLS 1.3, and nines implements tls-exporter (RFC 9266) only. A successful
-PLUS login is therefore covered by test_raw_sasl.py, which does SCRAM-SHA-256-PLUS
with tls-exporter over a raw socket. Here we check that slixmpp's tls-unique attempt
is refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import inspect
import logging
import re
import time
import unittest
import xml.etree.ElementTree as ET
from typing import Callable, Optional

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from harness import (DOMAIN, Server, new_password, run_reporting_server, tls_client_context,
                     unique_user)

TEST_TIMEOUT = 90.0  # whole-test bound; every single wait below is bounded far tighter
LOGIN_TIMEOUT = 20.0
WAIT = 10.0  # for one expected stanza
QUIET = 1.5  # how long "nothing more arrives" is watched

NS_ROSTER = "jabber:iq:roster"
NS_DELAY = "urn:xmpp:delay"

# XEP-0082 DateTime: CCYY-MM-DDThh:mm:ss[.sss]TZD, TZD = Z or +-hh:mm. XEP-0203 requires UTC.
XEP0082_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)$")

# slixmpp logs expected failures (the negative SASL tests) at ERROR; the assertions say what matters.
logging.getLogger("slixmpp").setLevel(logging.CRITICAL)


class LoginFailed(AssertionError):
    pass


class StanzaLog:
    """Stanzas a client received, with bounded waits for one that matches."""

    def __init__(self, what: str):
        self.what = what
        self.items: list = []
        self._claimed: set[int] = set()
        self._waiters: list[asyncio.Future] = []

    def add(self, stanza) -> None:
        self.items.append(stanza)
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    def dump(self) -> str:
        return "\n".join(f"  [{i}] {s}" for i, s in enumerate(self.items)) or "  (nothing)"

    async def wait_for(self, pred: Callable, description: str, timeout: float = WAIT):
        """Returns (and claims) the first unclaimed stanza matching `pred`; fails after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, item in enumerate(self.items):
                if i not in self._claimed and pred(item):
                    self._claimed.add(i)
                    return item
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {description}; "
                                     f"{self.what} received:\n{self.dump()}")
            fut = loop.create_future()
            self._waiters.append(fut)
            await asyncio.wait([fut], timeout=remaining)

    async def assert_none(self, pred: Callable, description: str, within: float = QUIET) -> None:
        """Fails if an unclaimed stanza matching `pred` is or becomes present within `within`."""
        try:
            item = await self.wait_for(pred, description, timeout=within)
        except AssertionError:
            return
        raise AssertionError(f"unexpected {description}: {item}\n{self.what} received:\n{self.dump()}")


class Client(slixmpp.ClientXMPP):
    """A slixmpp client pinned to one nines listener, with logs of what it receives.

    mech: force this SASL mechanism (slixmpp's `sasl_mech`, i.e. feature_mechanisms.use_mech).
    channel_binding: if False, the client does not hand slixmpp the TLS channel-binding
      data, so SCRAM sends the gs2 flag 'n' ("client does not support channel binding").
      If True, slixmpp behaves as it does by default: flag 'y' for plain SCRAM, and
      'p=tls-unique' for -PLUS.
    """

    def __init__(self, jid: str, password: str, address: tuple, *, direct_tls: bool = False,
                 mech: Optional[str] = None, channel_binding: bool = False):
        super().__init__(jid, password, sasl_mech=mech)
        self.target = address
        self.direct_tls = direct_tls
        self.ssl_context = tls_client_context()  # the server's certificate is self-signed
        self.whitespace_keepalive = False
        self.auto_authorize = None  # subscription requests are handled by the tests
        self.auto_subscribe = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0092")
        self.register_plugin("xep_0199", {"keepalive": False})
        self.register_plugin("xep_0203")
        if not channel_binding:
            mechanisms = self["feature_mechanisms"]
            default = mechanisms._default_credentials

            def without_binding(required, optional):
                creds = default(required, optional)
                creds.pop("channel_binding", None)
                return creds

            mechanisms.sasl_callback = without_binding

        self.messages = StanzaLog(f"{jid} messages")
        self.presences = StanzaLog(f"{jid} presences")
        self.roster_pushes = StanzaLog(f"{jid} roster pushes")
        self.auth_failures: list = []
        self.stream_errors: list = []
        self._login: Optional[asyncio.Future] = None

        self.add_event_handler("message", self.messages.add)
        self.add_event_handler("message_error", self.messages.add)
        self.add_event_handler("presence", self.presences.add)
        self.add_event_handler("failed_auth", self.auth_failures.append)
        self.add_event_handler("stream_error", self.stream_errors.append)
        self.register_handler(Callback("test roster push", StanzaPath("iq@type=set/roster"),
                                       self.roster_pushes.add))
        self.add_event_handler("session_start", lambda _: self._settle(None))
        self.add_event_handler("failed_all_auth",
                               lambda _: self._settle(LoginFailed(f"authentication failed: {self._failures()}")))
        self.add_event_handler("no_auth", lambda _: self._settle(LoginFailed("no usable SASL mechanism offered")))
        self.add_event_handler("connection_failed",
                               lambda e: self._settle(LoginFailed(f"connection failed: {e}")))
        self.add_event_handler("disconnected",
                               lambda r: self._settle(LoginFailed(
                                   f"disconnected before session start ({r}); "
                                   f"auth failures: {self._failures()}; stream errors: {self.stream_errors}")))

    def _failures(self) -> list:
        return [str(f) for f in self.auth_failures]

    def _settle(self, error: Optional[Exception]) -> None:
        if self._login is not None and not self._login.done():
            if error is None:
                self._login.set_result(None)
            else:
                self._login.set_exception(error)

    async def get_dns_records(self, domain, port=None):
        # slixmpp resolves the JID's domain even when an address is given (and then uses its
        # default port 5222); pin it to the listener the server reported instead.
        host, port = self.target
        return [(domain, host, port)]

    async def login(self, timeout: float = LOGIN_TIMEOUT) -> "Client":
        """Connects, negotiates TLS, SASL and bind; raises LoginFailed or TimeoutError."""
        self._login = asyncio.get_running_loop().create_future()
        self.connect(self.target, use_ssl=self.direct_tls, force_starttls=not self.direct_tls)
        try:
            await asyncio.wait_for(asyncio.shield(self._login), timeout)
        except asyncio.TimeoutError:
            raise LoginFailed(f"no session within {timeout}s; auth failures: {self._failures()}") from None
        return self

    @property
    def used_mechanism(self) -> Optional[str]:
        mech = self["feature_mechanisms"].mech
        return mech.name if mech is not None else None

    async def sync(self) -> None:
        """Round-trips a ping to the server: everything sent before it has been processed
        (RFC 6120 §10.1, in-order processing)."""
        await self["xep_0199"].send_ping(DOMAIN, timeout=WAIT)

    async def close(self, timeout: float = 5.0) -> None:
        """Closes the stream (bounded) and the TCP connection."""
        if self.transport is not None:
            try:
                await asyncio.wait_for(self.disconnect(wait=2.0), timeout)
            except (asyncio.TimeoutError, Exception):
                pass
        self.cancel_connection_attempt()
        if self.transport is not None:
            self.abort()


def roster_items(iq) -> dict:
    """{bare jid: {'subscription', 'ask', 'name', 'groups'}} from a roster query, read from the XML."""
    items = {}
    query = iq.xml.find(f"{{{NS_ROSTER}}}query")
    if query is None:
        return items
    for item in query.findall(f"{{{NS_ROSTER}}}item"):
        items[item.get("jid")] = {
            "subscription": item.get("subscription", "none"),  # RFC 6121 §2.1.2.5: absent means none
            "ask": item.get("ask"),
            "name": item.get("name"),
            "groups": sorted((g.text or "") for g in item.findall(f"{{{NS_ROSTER}}}group")),
        }
    return items


def push_for(bare: str, **expected) -> Callable:
    """Matches a roster push whose item `bare` has the expected attributes."""
    def pred(iq) -> bool:
        item = roster_items(iq).get(bare)
        return item is not None and all(item.get(k) == v for k, v in expected.items())
    return pred


def parse_stamp(stamp: str) -> dt.datetime:
    value = stamp.replace("Z", "+00:00")
    return dt.datetime.fromisoformat(value)


class AsyncServerTestCase(unittest.IsolatedAsyncioTestCase):
    """One nines server per class; clients are closed after each test; every test is bounded."""

    SERVER_CONFIG: Optional[dict] = None
    server: Server

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, fn in list(vars(cls).items()):
            if name.startswith("test") and inspect.iscoroutinefunction(fn):
                setattr(cls, name, _bounded(fn))

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.server = Server(config=cls.SERVER_CONFIG, name=cls.__name__.lower())
        cls.server.start()

    @classmethod
    def tearDownClass(cls) -> None:
        server = cls.__dict__.get("server")
        if server is not None:
            server.stop()
        super().tearDownClass()

    def run(self, result=None):
        return run_reporting_server(self, result, super().run)

    async def asyncSetUp(self) -> None:
        # IsolatedAsyncioTestCase runs the loop in debug mode, which logs every slow callback
        # (slixmpp's pure-python SCRAM); that is noise here.
        asyncio.get_running_loop().set_debug(False)
        self.clients: list[Client] = []

    async def asyncTearDown(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)

    def account(self, prefix: str) -> tuple:
        """A new account: (bare JID, password)."""
        user = unique_user(prefix)
        password = new_password()
        self.server.add_user(user, password)
        return f"{user}@{DOMAIN}", password

    def client(self, jid: str, password: str, *, direct_tls: bool = False, **kwargs) -> Client:
        address = self.server.c2s_tls if direct_tls else self.server.c2s
        c = Client(jid, password, address, direct_tls=direct_tls, **kwargs)
        self.clients.append(c)
        return c

    async def online(self, jid: str, password: str, *, resource: Optional[str] = None,
                     roster: bool = True, presence: bool = True, **kwargs) -> Client:
        """Logs in (optionally as jid/resource) and, as a typical client does, requests the
        roster (which makes it an "interested resource" that gets roster pushes, RFC 6121
        §2.1.6) and sends initial presence; then syncs."""
        c = self.client(f"{jid}/{resource}" if resource else jid, password, **kwargs)
        await c.login()
        if roster:
            await roster_get(c)
        if presence:
            c.send_presence()
            await c.sync()
        return c


def _bounded(fn):
    @functools.wraps(fn)
    async def wrapper(self, *args, **kwargs):
        try:
            return await asyncio.wait_for(fn(self, *args, **kwargs), TEST_TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError(f"test exceeded its {TEST_TIMEOUT}s bound") from None
    return wrapper


# --------------------------------------------------------------------------
# SASL


def _login_test(mech: str, direct_tls: bool):
    async def test(self):
        jid, password = self.account("login")
        c = self.client(jid, password, direct_tls=direct_tls, mech=mech)
        await c.login()
        self.assertEqual(c.used_mechanism, mech)
        self.assertEqual(c.boundjid.bare, jid)
        self.assertTrue(c.boundjid.resource, "server bound an empty resource")
        self.assertIsNotNone(c.transport.get_extra_info("ssl_object"), "session is not encrypted")
        await c.sync()  # the session works after login
    transport = "direct_tls" if direct_tls else "starttls"
    test.__name__ = f"test_login_{mech.lower().replace('-', '_')}_{transport}"
    test.__doc__ = f"{mech} over {'direct TLS (XEP-0368)' if direct_tls else 'STARTTLS'} logs in and binds."
    return test


class SaslLoginTest(AsyncServerTestCase):
    """Default config: SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1, PLAIN offered."""

    async def _expect_failure(self, jid: str, password: str, **kwargs) -> Client:
        c = self.client(jid, password, **kwargs)
        with self.assertRaises(LoginFailed) as caught:
            await c.login()
        self.assertFalse(c.authenticated, f"client authenticated despite: {caught.exception}")
        self.assertTrue(c.auth_failures, f"no SASL <failure/> received: {caught.exception}")
        return c

    async def test_wrong_password_scram_sha_256_not_authorized(self):
        jid, password = self.account("wrongpw")
        c = await self._expect_failure(jid, password + "x", mech="SCRAM-SHA-256")
        self.assertEqual(c.auth_failures[0]["condition"], "not-authorized", str(c.auth_failures[0]))

    async def test_wrong_password_plain_not_authorized(self):
        jid, password = self.account("wrongpw")
        c = await self._expect_failure(jid, "not-" + password, mech="PLAIN")
        self.assertEqual(c.auth_failures[0]["condition"], "not-authorized", str(c.auth_failures[0]))

    async def test_wrong_password_direct_tls_not_authorized(self):
        jid, password = self.account("wrongpw")
        c = await self._expect_failure(jid, password + "x", mech="SCRAM-SHA-1", direct_tls=True)
        self.assertEqual(c.auth_failures[0]["condition"], "not-authorized", str(c.auth_failures[0]))

    async def test_unknown_user_not_authorized(self):
        """RFC 6120 §6.5.10: the same condition as a wrong password (no account enumeration)."""
        c = await self._expect_failure(f"{unique_user('nobody')}@{DOMAIN}", new_password(),
                                       mech="SCRAM-SHA-256")
        self.assertEqual(c.auth_failures[0]["condition"], "not-authorized", str(c.auth_failures[0]))

    async def test_scram_y_flag_refused_while_plus_offered_starttls(self):
        """RFC 5802 §6: gs2 flag 'y' with a server that supports channel binding MUST fail.

        slixmpp by default sends 'y' for non-PLUS SCRAM over TLS; this server offers
        SCRAM-SHA-256-PLUS, so accepting 'y' would let a downgrade go unnoticed.
        """
        jid, password = self.account("yflag")
        await self._expect_failure(jid, password, mech="SCRAM-SHA-256", channel_binding=True)

    async def test_scram_y_flag_refused_while_plus_offered_direct_tls(self):
        jid, password = self.account("yflag")
        await self._expect_failure(jid, password, mech="SCRAM-SHA-1", channel_binding=True,
                                   direct_tls=True)

    async def test_slixmpp_plus_with_tls_unique_refused(self):
        """slixmpp's SCRAM-SHA-256-PLUS binds with 'tls-unique'; nines supports tls-exporter
        only (RFC 9266), so it must not authenticate (RFC 5802 §5.1: unsupported binding type)."""
        jid, password = self.account("tlsunique")
        await self._expect_failure(jid, password, mech="SCRAM-SHA-256-PLUS", channel_binding=True)


for _mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
    for _direct in (False, True):
        _test = _login_test(_mech, _direct)
        setattr(SaslLoginTest, _test.__name__, _bounded(_test))
del _mech, _direct, _test


class SaslWithoutPlusTest(AsyncServerTestCase):
    """auth.mechanisms without -PLUS: the 'y' flag is then legitimate (RFC 5802 §6)."""

    SERVER_CONFIG = {"auth": {"mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]}}

    async def test_scram_sha_256_y_flag_accepted_starttls(self):
        jid, password = self.account("yok")
        c = self.client(jid, password, mech="SCRAM-SHA-256", channel_binding=True)
        await c.login()
        self.assertEqual(c.used_mechanism, "SCRAM-SHA-256")
        self.assertEqual(c.boundjid.bare, jid)

    async def test_scram_sha_1_y_flag_accepted_direct_tls(self):
        jid, password = self.account("yok")
        c = self.client(jid, password, mech="SCRAM-SHA-1", channel_binding=True, direct_tls=True)
        await c.login()
        self.assertEqual(c.used_mechanism, "SCRAM-SHA-1")
        self.assertEqual(c.boundjid.bare, jid)


# --------------------------------------------------------------------------
# Roster and subscriptions


async def roster_set(client: Client, jid: str, name: str, groups: list[str]) -> None:
    """RFC 6121 §2.3: <iq type='set'><query xmlns='jabber:iq:roster'><item .../></query></iq>."""
    iq = client.Iq(stype="set")
    query = ET.Element(f"{{{NS_ROSTER}}}query")
    item = ET.SubElement(query, f"{{{NS_ROSTER}}}item", {"jid": jid, "name": name})
    for group in groups:
        ET.SubElement(item, f"{{{NS_ROSTER}}}group").text = group
    iq.append(query)
    result = await iq.send(timeout=WAIT)
    assert result["type"] == "result", str(result)


async def roster_get(client: Client) -> dict:
    iq = client.Iq(stype="get")
    iq.append(ET.Element(f"{{{NS_ROSTER}}}query"))
    result = await iq.send(timeout=WAIT)
    assert result["type"] == "result", str(result)
    return roster_items(result)


def presence_from(full_or_bare: str, ptype: str) -> Callable:
    return lambda p: str(p["from"]) == full_or_bare and p["type"] == ptype


async def subscribe_and_approve(test: unittest.TestCase, user: Client, contact: Client,
                                user_sub_after: str, contact_sub_after: str) -> None:
    """RFC 6121 §3.1: `user` subscribes to `contact`'s presence and `contact` approves.

    Checks each step: the user's roster push with ask='subscribe', the request arriving
    stamped with the user's bare JID, the contact's push after approval, the approval
    arriving at the user, the user's push, and the contact's current presence.
    """
    u, c = user.boundjid.bare, contact.boundjid.bare
    user.send_presence(pto=c, ptype="subscribe")
    # §3.1.2: the user's server pushes the item with ask='subscribe' (state unchanged).
    await user.roster_pushes.wait_for(push_for(c, ask="subscribe"), f"roster push of {c} with ask='subscribe'")
    # §3.1.3: delivered to the contact, 'from' stamped as the user's bare JID.
    await contact.presences.wait_for(presence_from(u, "subscribe"), f"<presence type='subscribe' from='{u}'/>")

    contact.send_presence(pto=u, ptype="subscribed")
    # §3.1.5: the contact's server pushes the new state to the contact.
    await contact.roster_pushes.wait_for(push_for(u, subscription=contact_sub_after),
                                         f"roster push of {u} with subscription='{contact_sub_after}'")
    # §3.1.6: the user receives the approval from the contact's bare JID, and a push.
    await user.presences.wait_for(presence_from(c, "subscribed"), f"<presence type='subscribed' from='{c}'/>")
    await user.roster_pushes.wait_for(push_for(c, subscription=user_sub_after, ask=None),
                                      f"roster push of {c} with subscription='{user_sub_after}' and no ask")
    # §3.1.5: the contact's server sends the contact's current presence to the user.
    await user.presences.wait_for(presence_from(contact.boundjid.full, "available"),
                                  f"available presence from {contact.boundjid.full}")


class RosterSubscriptionTest(AsyncServerTestCase):

    async def test_roster_set_is_pushed_and_stored(self):
        """RFC 6121 §2.3.2-§2.3.3: roster set -> result + push to the user; §2.2 get returns it."""
        alice_jid, alice_pw = self.account("alice")
        bob_jid, _ = self.account("bob")
        alice = await self.online(alice_jid, alice_pw)
        await roster_set(alice, bob_jid, "Bob", ["Friends"])
        push = await alice.roster_pushes.wait_for(push_for(bob_jid), f"roster push for {bob_jid}")
        self.assertIn(str(push["from"]), ("", alice_jid), "roster push from someone else (RFC 6121 §2.1.6)")
        self.assertEqual(roster_items(push)[bob_jid],
                         {"subscription": "none", "ask": None, "name": "Bob", "groups": ["Friends"]})
        self.assertEqual((await roster_get(alice))[bob_jid],
                         {"subscription": "none", "ask": None, "name": "Bob", "groups": ["Friends"]})

    async def test_subscription_handshake_to_both(self):
        alice_jid, alice_pw = self.account("alice")
        bob_jid, bob_pw = self.account("bob")
        alice = await self.online(alice_jid, alice_pw)
        bob = await self.online(bob_jid, bob_pw)

        await roster_set(alice, bob_jid, "Bob", ["Friends"])
        await alice.roster_pushes.wait_for(push_for(bob_jid, subscription="none"), "roster push of Bob")

        # alice -> bob, bob approves: alice 'to', bob 'from'.
        await subscribe_and_approve(self, alice, bob, user_sub_after="to", contact_sub_after="from")
        # bob -> alice, alice approves: both 'both'.
        await subscribe_and_approve(self, bob, alice, user_sub_after="both", contact_sub_after="both")

        alice_roster = await roster_get(alice)
        self.assertEqual(alice_roster.get(bob_jid),
                         {"subscription": "both", "ask": None, "name": "Bob", "groups": ["Friends"]})
        self.assertEqual(set(alice_roster), {bob_jid})
        bob_roster = await roster_get(bob)
        self.assertEqual(bob_roster.get(alice_jid, {}).get("subscription"), "both", bob_roster)
        self.assertIsNone(bob_roster[alice_jid]["ask"])

        # The state is durable: a fresh session of alice reads the same roster.
        alice2 = await self.online(alice_jid, alice_pw, resource="second", presence=False)
        self.assertEqual((await roster_get(alice2)).get(bob_jid, {}).get("subscription"), "both")


# --------------------------------------------------------------------------
# Messages


class MessageTest(AsyncServerTestCase):

    async def test_online_message_from_is_full_jid(self):
        """RFC 6120 §8.1.2.1: the server stamps 'from' with the sender's full JID."""
        alice_jid, alice_pw = self.account("alice")
        bob_jid, bob_pw = self.account("bob")
        bob = await self.online(bob_jid, bob_pw, resource="desk")
        alice = await self.online(alice_jid, alice_pw, resource="phone")

        alice.send_message(mto=bob_jid, mbody="hello bob", mtype="chat")
        msg = await bob.messages.wait_for(lambda m: m["body"] == "hello bob", "message 'hello bob'")
        self.assertEqual(str(msg["from"]), alice.boundjid.full)
        self.assertEqual(str(msg["from"]), f"{alice_jid}/phone")
        self.assertEqual(msg["to"].bare, bob_jid)
        self.assertEqual(msg["type"], "chat")
        self.assertFalse(msg.xml.find(f"{{{NS_DELAY}}}delay") is not None, f"online message has a delay: {msg}")

        # To the full JID as well, and back the other way.
        bob.send_message(mto=alice.boundjid.full, mbody="hi alice", mtype="chat")
        back = await alice.messages.wait_for(lambda m: m["body"] == "hi alice", "message 'hi alice'")
        self.assertEqual(str(back["from"]), f"{bob_jid}/desk")
        self.assertEqual(str(back["to"]), alice.boundjid.full)

    async def test_offline_message_has_delay_and_order(self):
        """XEP-0160 offline storage; XEP-0203 <delay xmlns='urn:xmpp:delay' from='localhost' stamp=.../>."""
        alice_jid, alice_pw = self.account("alice")
        bob_jid, bob_pw = self.account("bob")
        alice = await self.online(alice_jid, alice_pw, resource="phone")
        alice_full = alice.boundjid.full

        before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        bodies = [f"while you were out {i}" for i in range(1, 4)]
        for body in bodies:
            alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
        await alice.sync()
        await alice.close()
        after_send = dt.datetime.now(dt.timezone.utc)

        bob = await self.online(bob_jid, bob_pw)  # initial presence triggers delivery
        received = []
        for body in bodies:
            received.append(await bob.messages.wait_for(lambda m, b=body: m["body"] == b,
                                                        f"offline message {body!r}"))
        self.assertEqual([m["body"] for m in bob.messages.items if m["body"] in bodies], bodies,
                         "offline messages arrived out of order")
        for msg in received:
            self.assertEqual(str(msg["from"]), alice_full)
            delay = msg.xml.find(f"{{{NS_DELAY}}}delay")
            self.assertIsNotNone(delay, f"offline message without XEP-0203 delay: {msg}")
            self.assertEqual(delay.get("from"), DOMAIN, f"delay 'from' should be the server domain: {msg}")
            stamp = delay.get("stamp") or ""
            self.assertRegex(stamp, XEP0082_UTC, f"delay stamp is not XEP-0082 UTC: {msg}")
            when = parse_stamp(stamp)
            self.assertGreaterEqual(when, before - dt.timedelta(seconds=2), f"stamp too early: {msg}")
            self.assertLessEqual(when, after_send + dt.timedelta(seconds=2), f"stamp too late: {msg}")
        await bob.messages.assert_none(lambda m: m["body"] in bodies, "duplicate offline message")

    async def test_offline_messages_delivered_once(self):
        """XEP-0160 §3: delivered messages are removed from offline storage."""
        alice_jid, alice_pw = self.account("alice")
        bob_jid, bob_pw = self.account("bob")
        alice = await self.online(alice_jid, alice_pw)
        alice.send_message(mto=bob_jid, mbody="only once", mtype="chat")
        await alice.sync()

        bob = await self.online(bob_jid, bob_pw, resource="first")
        await bob.messages.wait_for(lambda m: m["body"] == "only once", "offline message 'only once'")
        await bob.close()

        bob_again = await self.online(bob_jid, bob_pw, resource="second")
        await bob_again.sync()
        await bob_again.messages.assert_none(lambda m: m["body"] == "only once",
                                             "offline message delivered a second time")


# --------------------------------------------------------------------------
# Presence


class PresenceTest(AsyncServerTestCase):

    async def _friends(self):
        alice_jid, alice_pw = self.account("alice")
        bob_jid, bob_pw = self.account("bob")
        alice = await self.online(alice_jid, alice_pw, resource="setup")
        bob = await self.online(bob_jid, bob_pw, resource="desk")
        await subscribe_and_approve(self, alice, bob, "to", "from")
        await subscribe_and_approve(self, bob, alice, "both", "both")
        await alice.close()
        await bob.presences.wait_for(presence_from(alice.boundjid.full, "unavailable"),
                                     f"unavailable from {alice.boundjid.full}")
        return (alice_jid, alice_pw), bob

    async def test_available_with_status_and_unavailable_on_close(self):
        """RFC 6121 §4.2.2 broadcast of initial presence; §4.5.2 unavailable when the session ends."""
        (alice_jid, alice_pw), bob = await self._friends()
        alice = await self.online(alice_jid, alice_pw, resource="phone", presence=False)
        alice.send_presence(pstatus="Gone fishing", pshow="away", ppriority=5)
        pres = await bob.presences.wait_for(presence_from(alice.boundjid.full, "away"),
                                            f"away presence from {alice.boundjid.full}")
        self.assertIsNone(pres.xml.get("type"), f"available presence carries a type: {pres}")
        self.assertEqual(pres["status"], "Gone fishing")
        self.assertEqual(pres["show"], "away")
        self.assertEqual(pres["priority"], 5)

        await alice.close()  # closes the stream with </stream:stream>
        gone = await bob.presences.wait_for(presence_from(alice.boundjid.full, "unavailable"),
                                            f"unavailable from {alice.boundjid.full}")
        self.assertEqual(gone.xml.get("type"), "unavailable")

    async def test_contact_presence_on_login(self):
        """RFC 6121 §4.2.2/§4.3: on initial presence the server probes the user's contacts and
        delivers the current presence of each of their available resources."""
        (alice_jid, alice_pw), bob = await self._friends()
        bob_jid = bob.boundjid.bare
        alice = await self.online(alice_jid, alice_pw, resource="laptop", presence=False)
        alice.send_presence(pstatus="at my desk", pshow="dnd")
        await bob.presences.wait_for(presence_from(alice.boundjid.full, "dnd"),
                                     f"dnd presence from {alice.boundjid.full}")
        await bob.close()

        bob2 = await self.online(bob_jid, bob.password, resource="phone")
        pres = await bob2.presences.wait_for(presence_from(alice.boundjid.full, "dnd"),
                                             f"alice's current presence after bob's login")
        self.assertEqual(pres["status"], "at my desk")

    async def test_unavailable_on_connection_loss(self):
        """RFC 6121 §4.5.2 (and RFC 6120 §4.4): a TCP close without </stream:stream> also ends it."""
        (alice_jid, alice_pw), bob = await self._friends()
        alice = await self.online(alice_jid, alice_pw, resource="tablet", presence=False)
        alice.send_presence(pstatus="here")
        await bob.presences.wait_for(lambda p: str(p["from"]) == alice.boundjid.full and p["status"] == "here",
                                     f"presence with status 'here' from {alice.boundjid.full}")
        alice.abort()  # TCP close, no stream close
        await bob.presences.wait_for(presence_from(alice.boundjid.full, "unavailable"),
                                     f"unavailable from {alice.boundjid.full} after connection loss")


# --------------------------------------------------------------------------
# Server services


class ServiceTest(AsyncServerTestCase):

    async def test_ping_server(self):
        """XEP-0199 §4.2: <iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq> -> result."""
        jid, pw = self.account("pinger")
        c = await self.online(jid, pw, presence=False)
        started = time.monotonic()
        result = await c["xep_0199"].send_ping(DOMAIN, timeout=WAIT)
        self.assertEqual(result["type"], "result", str(result))
        self.assertEqual(str(result["from"]), DOMAIN)
        self.assertLess(time.monotonic() - started, WAIT)

    async def test_disco_info_server_features(self):
        """XEP-0030 §3.1: disco#info on the server; identity server/im and the expected features."""
        jid, pw = self.account("disco")
        c = await self.online(jid, pw, presence=False)
        result = await c["xep_0030"].get_info(jid=DOMAIN, local=False, cached=False, timeout=WAIT)
        self.assertEqual(result["type"], "result", str(result))
        info = result["disco_info"]
        features = set(info["features"])
        for feature in ("http://jabber.org/protocol/disco#info", "urn:xmpp:ping", "jabber:iq:version",
                        "vcard-temp"):
            self.assertIn(feature, features, f"disco#info result: {result}")
        identities = {(cat, typ) for cat, typ, _lang, _name in info["identities"]}
        self.assertIn(("server", "im"), identities, f"disco#info result: {result}")

    async def test_software_version(self):
        """XEP-0092: the server answers jabber:iq:version with its configured name."""
        jid, pw = self.account("version")
        c = await self.online(jid, pw, presence=False)
        result = await c["xep_0092"].get_version(DOMAIN, timeout=WAIT)
        self.assertEqual(result["type"], "result", str(result))
        self.assertEqual(result["software_version"]["name"], "nines", str(result))
        self.assertTrue(result["software_version"]["version"], str(result))


if __name__ == "__main__":
    unittest.main(verbosity=2)
