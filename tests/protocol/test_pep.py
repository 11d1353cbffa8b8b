"""Protocol tests: XEP-0163 personal eventing (PEP) with XEP-0115 filtered notifications,
driven by slixmpp 1.8.3 (xep_0060, xep_0115, xep_0163, xep_0172, xep_0191, xep_0223) and,
where the plugins fall short or hide the wire format, by raw pubsub IQs with ET payloads.

  PepNotificationTest   XEP-0163 §4: a publish reaches every available resource that lists
                        NODE+notify in its verified caps, of the owner and of contacts with a
                        'from'/'both' subscription, as <message type='headline'
                        from='owner@bare'>; not a contact resource without +notify, not a
                        contact the owner is only subscribed to ('to'). §4.3.4: a resource
                        that comes online gets the newest item with an XEP-0203 <delay/>, once
                        per session (a later presence does not resend it), the owner's own
                        new resource too, and a contact the moment it becomes subscribed to the
                        owner. XEP-0191 §3: a contact the owner blocks gets neither
                        notifications nor the last item when it comes online, and cannot fetch
                        items (<service-unavailable/>).
  CapsVerificationTest  XEP-0115 §5.4/§6.2: the server asks a client disco#info with
                        node='NODE#VER' from its domain; an answer that does not hash to the
                        claimed ver (wrong features, or a repeated feature) is not trusted, so
                        that resource gets no notifications, while an honest one does; after
                        a liar's wrong answer for a ver, the next client claiming it is asked
                        (§5.4: "SHOULD check another entity"). §8.2: a ver the server has
                        verified is not asked again (a second client with the same ver sees no
                        query) and both clients are notified.
  PepAccessTest         XEP-0060 §6.5: items retrieval under each access model: presence
                        (contact reads; stranger and 'to'-only contact <not-authorized/> +
                        <presence-subscription-required/>), open (a stranger reads), roster
                        (allowed group reads, another group <not-authorized/> +
                        <not-in-roster-group/>), whitelist (<not-allowed/> + <closed-node/>),
                        the owner always; max_items (the newest N, oldest first) and item ids;
                        XEP-0163 §6.1 / XEP-0060 §5: disco#info of the bare JID (pubsub/pep and
                        the pubsub features) and disco#items (the nodes the asker may read; a
                        stranger gets <service-unavailable/>: services.cc MayDiscoverAccount).
  PepPublishOptionsTest XEP-0060 §7.1.5 publish-options: a publish creates the node with its
                        options; a conflicting one fails with <conflict/> +
                        <precondition-not-met/> (type cancel) and stores nothing; matching ones
                        ('1' as slixmpp sends booleans, and 'true') succeed; an unknown option
                        is a failed precondition. XEP-0223 through slixmpp's xep_0223
                        store()/retrieve(), unreadable (<closed-node/>) and unannounced to a
                        subscribed contact. max_items pruning keeps the newest N, and
                        republishing an id makes it the newest.
  PepNodeManagementTest retract with notify='true' (<retract id/> events, §7.2), purge (one
                        <purge/> event, §8.5), delete (<delete/> event, then <item-not-found/>,
                        §8.4), owner configure get/set (§8.2), create with <configure/> and
                        create of an existing node (<conflict/>, §8.1), another account's PEP:
                        publish and owner operations <forbidden/>, subscribe
                        <feature-not-implemented/> + <unsupported feature='subscribe'/>.
  PepItemSizeTest       limits.pep_item_size: a larger payload is <not-acceptable/> +
                        <payload-too-big/> (XEP-0060 §7.1.3.4) and creates nothing.
  PepDurabilityTest     items, their order and the node configuration survive kill -9; the
                        newest item still comes to a resource that comes online afterwards.

How the tests avoid races on capabilities: every client adds a feature unique to it (or, for
the shared-ver test, to its pair) before login, so its ver is new to the server and the
server must ask it. A client records, in an outgoing filter, its answer to the server's
disco#info query, then pings the server (RFC 6120 §10.1: the server processes the answer
before the ping; what the answer changes is queued on the account's loop before anything the
test does next). Only then is it relied on to have (or not have) +notify. "Nothing arrives"
is checked over StanzaLog.assert_none's bounded quiet period, after a positive control in
the same test has shown that the event did go out.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import secrets
import unittest
import xml.etree.ElementTree as ET
from typing import Callable, Iterable, Optional

from slixmpp.exceptions import IqError
from slixmpp.jid import JID
from slixmpp.plugins.xep_0004 import Form
from slixmpp.stanza import Iq
from slixmpp.xmlstream import ElementBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness import DOMAIN, local, ns_of
from test_slixmpp import (WAIT, XEP0082_UTC, AsyncServerTestCase, Client, StanzaLog,
                          parse_stamp, roster_get, roster_set, subscribe_and_approve)

NS_CLIENT = "jabber:client"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_OWNER = "http://jabber.org/protocol/pubsub#owner"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
NS_NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_DELAY = "urn:xmpp:delay"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_NICK = "http://jabber.org/protocol/nick"  # XEP-0172
NS_STATUS = "urn:nines:test:status"  # a node of the tests' own, with a payload of the same name

CAPS_NODE = "urn:nines:test:client"  # the XEP-0115 node of the hand-made caps clients
IDENTITY = ("client", "pc", "", "nines test")


# --------------------------------------------------------------------------
# XML helpers


def el(tag: str, attrs: Optional[dict] = None, *children: ET.Element, text: Optional[str] = None) -> ET.Element:
    e = ET.Element(tag, {k: v for k, v in (attrs or {}).items() if v is not None})
    e.extend(children)
    if text is not None:
        e.text = text
    return e


def status(text: str) -> ET.Element:
    """The payload of the tests' own node NS_STATUS."""
    return el(f"{{{NS_STATUS}}}status", text=text)


def data_form(form_type: str, fields: dict, ftype: str = "submit") -> ET.Element:
    """An XEP-0004 form written out by hand, so values go on the wire exactly as given."""
    x = el(f"{{{NS_DATA}}}x", {"type": ftype},
           el(f"{{{NS_DATA}}}field", {"var": "FORM_TYPE", "type": "hidden"},
              el(f"{{{NS_DATA}}}value", text=form_type)))
    for var, value in fields.items():
        field = ET.SubElement(x, f"{{{NS_DATA}}}field", {"var": var})
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            ET.SubElement(field, f"{{{NS_DATA}}}value").text = v
    return x


def form_values(x: Optional[ET.Element]) -> dict:
    """{var: [values]} of a data form element."""
    assert x is not None, "no data form"
    return {f.get("var"): [v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")]
            for f in x.findall(f"{{{NS_DATA}}}field")}


def stanza_error_of(stanza) -> tuple:
    """(type, defined condition, pubsub#errors condition, its 'feature') of a stanza's <error/>."""
    for child in stanza.xml:
        if local(child.tag) != "error":
            continue
        condition = next((local(c.tag) for c in child if ns_of(c.tag) == NS_STANZAS and local(c.tag) != "text"),
                         None)
        app = next((c for c in child if ns_of(c.tag) == NS_ERRORS), None)
        return (child.get("type"), condition, None if app is None else local(app.tag),
                None if app is None else app.get("feature"))
    return (None, None, None, None)


def items_of(result) -> list:
    """[(item id, payload element or None)] of a pubsub items result, in document order."""
    items = result.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items")
    assert items is not None, f"no <items/> in {result}"
    return [(i.get("id"), i[0] if len(i) else None) for i in items.findall(f"{{{NS_PUBSUB}}}item")]


def ids_of(result) -> list:
    return [item_id for item_id, _ in items_of(result)]


def caps_ver(identities: Iterable[tuple], features: Iterable[str]) -> str:
    """XEP-0115 §5.1 with sha-1, written here from the spec (not slixmpp's code)."""
    s = "".join(f"{c}/{t}/{lang}/{n}<" for c, t, lang, n in sorted(identities))
    s += "".join(f"{f}<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode("utf-8")).digest()).decode()


# Predicates on PEP event messages (XEP-0060 §7.1.2, §7.2.2.1, §8.4.2, §8.5.2).


def event_of(msg) -> Optional[ET.Element]:
    return msg.xml.find(f"{{{NS_EVENT}}}event")


def event_items(msg, node: str) -> Optional[ET.Element]:
    event = event_of(msg)
    items = event.find(f"{{{NS_EVENT}}}items") if event is not None else None
    return items if items is not None and items.get("node") == node else None


def published(node: str, item_id: Optional[str] = None, owner: Optional[str] = None) -> Callable:
    def pred(msg) -> bool:
        items = event_items(msg, node)
        if items is None or (owner is not None and str(msg["from"]) != owner):
            return False
        return any(item_id is None or i.get("id") == item_id for i in items.findall(f"{{{NS_EVENT}}}item"))
    return pred


def retracted(node: str, item_id: str) -> Callable:
    def pred(msg) -> bool:
        items = event_items(msg, node)
        return items is not None and any(r.get("id") == item_id for r in items.findall(f"{{{NS_EVENT}}}retract"))
    return pred


def node_event(kind: str, node: str) -> Callable:
    """<purge node/> or <delete node/> inside <event/>."""
    def pred(msg) -> bool:
        event = event_of(msg)
        found = event.find(f"{{{NS_EVENT}}}{kind}") if event is not None else None
        return found is not None and found.get("node") == node
    return pred


def any_event(msg) -> bool:
    return True


def item_payload(msg, node: str) -> Optional[ET.Element]:
    items = event_items(msg, node)
    item = items.find(f"{{{NS_EVENT}}}item") if items is not None else None
    return item[0] if item is not None and len(item) else None


class Secret(ElementBase):
    """A private payload for slixmpp's xep_0223 plugin (which wants an ElementBase)."""
    name = "secret"
    namespace = "urn:nines:test:secret"
    plugin_attrib = "secret"


# --------------------------------------------------------------------------
# Clients


def watch(c: Client) -> None:
    """Logs on the client: every PEP event message (slixmpp's 'message' event only fires for
    messages with a body), every disco#info query from the server (XEP-0115 §6.2), and every
    answer the client sends to one (an outgoing filter: it runs in send order, so a ping sent
    after it reaches the server after the answer)."""
    c.events = StanzaLog(f"{c.boundjid} PEP events")
    c.caps_queries = StanzaLog(f"{c.boundjid} disco#info queries from the server")
    c.caps_answers = StanzaLog(f"{c.boundjid} answers to the server's disco#info queries")
    c.register_handler(Callback("test PEP events", MatchXPath(f"{{{NS_CLIENT}}}message/{{{NS_EVENT}}}event"),
                                c.events.add))

    def note_query(iq) -> None:
        query = iq.xml.find(f"{{{NS_DISCO_INFO}}}query")
        if iq["type"] == "get" and str(iq["from"]) == DOMAIN and query is not None and query.get("node"):
            c.caps_queries.add(iq)

    def note_answer(stanza):
        if isinstance(stanza, Iq) and stanza["type"] == "result" and str(stanza["to"]) == DOMAIN:
            query = stanza.xml.find(f"{{{NS_DISCO_INFO}}}query")
            if query is not None and "#" in (query.get("node") or ""):
                c.caps_answers.add(stanza)
        return stanza

    c.register_handler(Callback("test caps queries", MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_DISCO_INFO}}}query"),
                                note_query))
    c.add_filter("out", note_answer)


async def pubsub_iq(c: Client, itype: str, *children: ET.Element, to: Optional[str] = None, ns: str = NS_PUBSUB):
    """<iq type=itype [to]><pubsub xmlns=ns>children</pubsub></iq>; the result, or IqError."""
    iq = c.Iq(stype=itype)
    if to is not None:
        iq["to"] = to
    iq.append(el(f"{{{ns}}}pubsub", {}, *children))
    return await iq.send(timeout=WAIT)


def publish(c: Client, node: str, item_id: Optional[str], payload: ET.Element, *,
            options: Optional[dict] = None, to: Optional[str] = None):
    children = [el(f"{{{NS_PUBSUB}}}publish", {"node": node},
                   el(f"{{{NS_PUBSUB}}}item", {"id": item_id}, payload))]
    if options is not None:
        children.append(el(f"{{{NS_PUBSUB}}}publish-options", {}, data_form(NS_PUBLISH_OPTIONS, options)))
    return pubsub_iq(c, "set", *children, to=to)


def get_items(c: Client, owner: Optional[str], node: str, *, max_items: Optional[int] = None,
              item_ids: Iterable[str] = ()):
    items = el(f"{{{NS_PUBSUB}}}items", {"node": node, "max_items": None if max_items is None else str(max_items)},
               *(el(f"{{{NS_PUBSUB}}}item", {"id": i}) for i in item_ids))
    return pubsub_iq(c, "get", items, to=owner)


async def node_config(c: Client, node: str) -> dict:
    result = await pubsub_iq(c, "get", el(f"{{{NS_OWNER}}}configure", {"node": node}), ns=NS_OWNER)
    configure = result.xml.find(f"{{{NS_OWNER}}}pubsub/{{{NS_OWNER}}}configure")
    assert configure is not None and configure.get("node") == node, str(result)
    return form_values(configure.find(f"{{{NS_DATA}}}x"))


async def disco(c: Client, to: str, ns: str):
    iq = c.Iq(stype="get")
    iq["to"] = to
    iq.append(el(f"{{{ns}}}query"))
    return await iq.send(timeout=WAIT)


async def quiet(*checks) -> None:
    """Runs several StanzaLog.assert_none checks over the same quiet period; reports every one
    that failed."""
    outcomes = await asyncio.gather(*checks, return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    for o in failed:
        if not isinstance(o, AssertionError):
            raise o
    if failed:
        raise AssertionError("\n\n".join(str(o) for o in failed))


class PepCase(AsyncServerTestCase):
    """Helpers; the test classes below each get their own server."""

    async def pep_client(self, jid: str, password: str, resource: str, *, notify=(NS_NICK,),
                         caps_tag: Optional[str] = None, plugins=(), presence: bool = True) -> Client:
        """A slixmpp client whose XEP-0115 caps list NODE+notify for each of `notify` (nick
        through xep_0172, which also publishes nicks; the others as plain features), plus a
        feature unique to `caps_tag` so that its ver is new to the server. With `presence`,
        it sends initial presence and waits until it has answered the server's disco#info."""
        c = self.client(f"{jid}/{resource}", password)
        for plugin in ("xep_0004", "xep_0060", "xep_0115", "xep_0163", *plugins):
            c.register_plugin(plugin)
        if NS_NICK in notify:
            c.register_plugin("xep_0172")  # at bind: the nick payload, and nick+notify
        watch(c)
        # Features added before login belong to the requested full JID, which is the bound one;
        # adding them all before any of slixmpp's background update_caps tasks run means every
        # ver it computes is the final one.
        c["xep_0030"].add_feature(f"urn:nines:test:caps:{caps_tag or secrets.token_hex(8)}")
        for ns in notify:
            if ns != NS_NICK:
                c["xep_0030"].add_feature(f"{ns}+notify")
        await c.login()
        await c["xep_0115"].update_caps(broadcast=False)  # the first presence carries <c/>
        await roster_get(c)
        if presence:
            await self.available(c)
        return c

    async def available(self, c: Client, *, asked: bool = True, **presence) -> None:
        """Sends available presence; if the server is to ask for the caps, waits until the
        client has answered; then a ping, so the server has processed the answer."""
        c.send_presence(**presence)
        if asked:
            await c.caps_answers.wait_for(lambda iq: True, "the answer to the server's XEP-0115 disco#info query")
        await c.sync()

    async def caps_client(self, jid: str, password: str, resource: str, features: list) -> Client:
        """A client whose disco#info answers are written here, not by slixmpp: identity
        IDENTITY and exactly `features` (repeats included), for any node."""
        c = self.client(f"{jid}/{resource}", password)
        c.remove_handler("Disco Info")
        watch(c)

        def answer(iq) -> None:
            if iq["type"] != "get":
                return
            query = iq.xml.find(f"{{{NS_DISCO_INFO}}}query")
            reply = iq.reply(clear=True)
            answer_query = el(f"{{{NS_DISCO_INFO}}}query", {"node": query.get("node")},
                              el(f"{{{NS_DISCO_INFO}}}identity",
                                 {"category": IDENTITY[0], "type": IDENTITY[1], "name": IDENTITY[3]}))
            for f in features:
                answer_query.append(el(f"{{{NS_DISCO_INFO}}}feature", {"var": f}))
            reply.append(answer_query)
            reply.send()

        c.register_handler(Callback("test disco#info answers",
                                    MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_DISCO_INFO}}}query"), answer))
        await c.login()
        await roster_get(c)
        return c

    def send_caps_presence(self, c: Client, ver: str) -> None:
        p = c.make_presence()
        p.append(el(f"{{{NS_CAPS}}}c", {"hash": "sha-1", "node": CAPS_NODE, "ver": ver}))
        p.send()

    async def mutual(self, owner: Client, contact: Client) -> None:
        """Subscriptions both ways: 'both' on both rosters."""
        await subscribe_and_approve(self, contact, owner, "to", "from")
        await subscribe_and_approve(self, owner, contact, "both", "both")

    async def assertIqError(self, request, etype: str, condition: str, app: Optional[str] = None,
                            feature: Optional[str] = None):
        """Awaits an IQ that must fail with this error type, condition and pubsub#errors condition."""
        try:
            result = await request
        except IqError as e:
            self.assertEqual(stanza_error_of(e.iq), (etype, condition, app, feature), str(e.iq))
            return e.iq
        self.fail(f"expected <{condition}/>{f' + <{app}/>' if app else ''}, got {result}")


# --------------------------------------------------------------------------
# Notifications


class PepNotificationTest(PepCase):

    async def test_publish_reaches_notify_resources_of_owner_and_subscribed_contacts_only(self):
        """XEP-0163 §4: owner and 'from'/'both' contacts, filtered by +notify; from = bare JID."""
        a_jid, a_pw = self.account("pepa")
        b_jid, b_pw = self.account("pepb")
        d_jid, d_pw = self.account("pepd")
        alice = await self.pep_client(a_jid, a_pw, "phone")
        alice_plain = await self.pep_client(a_jid, a_pw, "watch", notify=())
        bob = await self.pep_client(b_jid, b_pw, "desk")
        bob_plain = await self.pep_client(b_jid, b_pw, "plain", notify=())
        dave = await self.pep_client(d_jid, d_pw, "desk")
        await self.mutual(alice, bob)
        # Alice is subscribed to dave, dave not to alice: her roster has him as 'to'.
        await subscribe_and_approve(self, alice, dave, "to", "from")

        result = await alice["xep_0172"].publish_nick("Alice A.", timeout=WAIT)
        self.assertEqual(result["type"], "result")
        for c in (bob, alice):
            msg = await c.events.wait_for(published(NS_NICK, "current"), f"alice's nick at {c.boundjid}")
            self.assertEqual(str(msg["from"]), a_jid, "XEP-0163 §4.3.1: from the owner's bare JID")
            self.assertEqual(str(msg["to"]), c.boundjid.full, "to the full JID of the interested resource")
            self.assertEqual(msg["type"], "headline")
            self.assertEqual(msg["pubsub_event"]["items"]["item"]["nick"]["nick"], "Alice A.")
        await quiet(bob_plain.events.assert_none(any_event, "an event at a resource without +notify"),
                    alice_plain.events.assert_none(any_event, "an event at the owner's resource without +notify"),
                    dave.events.assert_none(any_event, "an event at a contact alice is only subscribed to"),
                    bob.events.assert_none(any_event, "a second event at bob"),
                    alice.events.assert_none(any_event, "a second event at alice"))

    async def test_last_item_on_initial_presence_once_with_delay(self):
        """§4.3.4: the newest item to a resource that comes online, the owner's own included;
        XEP-0203 delay; not again on a later presence of the same session."""
        a_jid, a_pw = self.account("pepa")
        b_jid, b_pw = self.account("pepb")
        alice = await self.pep_client(a_jid, a_pw, "phone", notify=(NS_NICK, NS_STATUS))
        bob = await self.pep_client(b_jid, b_pw, "desk", notify=(NS_STATUS,))
        await self.mutual(alice, bob)

        before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        await publish(alice, NS_STATUS, "s1", status("first"), options={"pubsub#max_items": "3"})
        await publish(alice, NS_STATUS, "s2", status("second"))
        for item_id in ("s1", "s2"):
            live = await bob.events.wait_for(published(NS_STATUS, item_id), f"live event {item_id}")
            self.assertIsNone(live.xml.find(f"{{{NS_DELAY}}}delay"), f"a live event has a delay: {live}")
        after = dt.datetime.now(dt.timezone.utc)

        tablet = await self.pep_client(b_jid, b_pw, "tablet", notify=(NS_STATUS,))
        laptop = await self.pep_client(a_jid, a_pw, "laptop", notify=(NS_STATUS,))
        for c in (tablet, laptop):
            msg = await c.events.wait_for(published(NS_STATUS, owner=a_jid), f"the last item at {c.boundjid}")
            items = event_items(msg, NS_STATUS).findall(f"{{{NS_EVENT}}}item")
            self.assertEqual([i.get("id") for i in items], ["s2"], f"only the newest item: {msg}")
            self.assertEqual(item_payload(msg, NS_STATUS).text, "second")
            self.assertEqual(msg["type"], "headline")
            delay = msg.xml.find(f"{{{NS_DELAY}}}delay")
            self.assertIsNotNone(delay, f"the last published item has no XEP-0203 delay: {msg}")
            self.assertRegex(delay.get("stamp") or "", XEP0082_UTC, str(msg))
            when = parse_stamp(delay.get("stamp"))
            self.assertGreaterEqual(when, before - dt.timedelta(seconds=2), str(msg))
            self.assertLessEqual(when, after + dt.timedelta(seconds=2), str(msg))

        # A later presence of the same session is not an initial presence (§4.3.3).
        for c in (tablet, laptop):
            await self.available(c, asked=False, pshow="away", pstatus="later")
        await quiet(tablet.events.assert_none(any_event, "the last item again after a presence update"),
                    laptop.events.assert_none(any_event, "the last item again after a presence update"),
                    bob.events.assert_none(any_event, "anything more at bob"))

    async def test_a_new_subscriber_gets_the_last_item_at_once(self):
        """§4.3.4: the last item goes to new subscribers, not only to resources coming online."""
        a_jid, a_pw = self.account("pepa")
        b_jid, b_pw = self.account("pepb")
        alice = await self.pep_client(a_jid, a_pw, "phone")
        bob = await self.pep_client(b_jid, b_pw, "desk")
        await alice["xep_0172"].publish_nick("Alice before", timeout=WAIT)
        await alice.events.wait_for(published(NS_NICK, "current"), "alice's own event")
        await bob.events.assert_none(any_event, "an event at bob before he subscribes")
        await subscribe_and_approve(self, bob, alice, "to", "from")
        msg = await bob.events.wait_for(published(NS_NICK, "current", owner=a_jid),
                                        "alice's last nick once bob is subscribed to her")
        self.assertEqual(msg["pubsub_event"]["items"]["item"]["nick"]["nick"], "Alice before")
        self.assertIsNotNone(msg.xml.find(f"{{{NS_DELAY}}}delay"), str(msg))

    async def test_blocked_contact_gets_no_notifications_and_no_last_item(self):
        """XEP-0191 §3 / XEP-0163 §4.3.3: nothing of alice's reaches a contact she blocks."""
        a_jid, a_pw = self.account("pepa")
        b_jid, b_pw = self.account("pepb")
        c_jid, c_pw = self.account("pepc")
        alice = await self.pep_client(a_jid, a_pw, "phone", plugins=("xep_0191",))
        bob = await self.pep_client(b_jid, b_pw, "desk")
        carol = await self.pep_client(c_jid, c_pw, "desk")
        await self.mutual(alice, bob)
        await self.mutual(alice, carol)

        await alice["xep_0191"].block(JID(b_jid), timeout=WAIT)
        await alice["xep_0172"].publish_nick("Alice", timeout=WAIT)
        await carol.events.wait_for(published(NS_NICK, owner=a_jid), "alice's nick at carol")
        await alice.events.wait_for(published(NS_NICK, owner=a_jid), "alice's nick at her own phone")

        # A new resource of each contact: carol's gets the last item, bob's must not.
        bob_tablet = await self.pep_client(b_jid, b_pw, "tablet")
        carol_tablet = await self.pep_client(c_jid, c_pw, "tablet")
        await carol_tablet.events.wait_for(published(NS_NICK, owner=a_jid), "alice's last nick at carol's tablet")
        # Nor may he fetch it: XEP-0191 §3.4, an IQ get from a blocked entity is refused.
        self.assertEqual(ids_of(await get_items(carol, a_jid, NS_NICK)), ["current"])
        await self.assertIqError(get_items(bob, a_jid, NS_NICK), "cancel", "service-unavailable")
        await quiet(bob.events.assert_none(any_event, "alice's nick at bob, whom she blocks"),
                    bob_tablet.events.assert_none(any_event, "alice's last nick at the tablet of bob, whom she blocks"))


# --------------------------------------------------------------------------
# XEP-0115 verification


class CapsVerificationTest(PepCase):

    async def test_only_answers_that_hash_to_the_ver_count(self):
        """§5.4: a ver the disco#info answer does not hash to (other features, or a repeated
        feature, which makes the answer ill-formed) gives no +notify; a correct one does."""
        a_jid, a_pw = self.account("capa")
        b_jid, b_pw = self.account("capb")
        alice = await self.pep_client(a_jid, a_pw, "phone")
        setup = await self.online(b_jid, b_pw, resource="setup")
        await self.mutual(alice, setup)

        base = [NS_DISCO_INFO, NS_CAPS, f"{NS_NICK}+notify"]
        tag = secrets.token_hex(6)
        # Honest: the ver is the hash of what it answers.
        honest_features = base + [f"urn:nines:test:honest:{tag}"]
        honest_ver = caps_ver([IDENTITY], honest_features)
        # Liar: claims the hash of a different feature set than it answers.
        liar_features = base + [f"urn:nines:test:liar:{tag}"]
        liar_ver = caps_ver([IDENTITY], liar_features + ["urn:nines:test:not-answered"])
        # Repeater: answers a feature twice (§5.4 3.3: ill-formed), with the ver of the
        # deduplicated list, which a lax server would accept.
        repeat_features = base + [f"urn:nines:test:repeat:{tag}", f"{NS_NICK}+notify"]
        repeat_ver = caps_ver([IDENTITY], set(repeat_features))

        clients = []
        for resource, features, ver in (("honest", honest_features, honest_ver), ("liar", liar_features, liar_ver),
                                        ("repeat", repeat_features, repeat_ver)):
            c = await self.caps_client(b_jid, b_pw, resource, features)
            self.send_caps_presence(c, ver)
            answer = await c.caps_answers.wait_for(lambda iq: True, f"{resource}'s answer to the server")
            await c.sync()
            query = c.caps_queries.items[0]
            self.assertEqual(query.xml.find(f"{{{NS_DISCO_INFO}}}query").get("node"), f"{CAPS_NODE}#{ver}",
                             "XEP-0115 §6.2: the query names node#ver")
            self.assertEqual(str(query["to"]), c.boundjid.full, "asked at the full JID that sent the presence")
            self.assertEqual(answer.xml.find(f"{{{NS_DISCO_INFO}}}query").get("node"), f"{CAPS_NODE}#{ver}")
            clients.append(c)
        honest, liar, repeat = clients

        await alice["xep_0172"].publish_nick("Alice", timeout=WAIT)
        msg = await honest.events.wait_for(published(NS_NICK, "current"), "alice's nick at the honest client")
        self.assertEqual(str(msg["from"]), a_jid)
        await quiet(liar.events.assert_none(any_event, "an event at a client whose caps did not verify"),
                    repeat.events.assert_none(any_event, "an event at a client whose caps answer repeats a feature"))

    async def test_a_wrong_answer_does_not_shut_out_an_honest_client_with_the_same_ver(self):
        """§5.4 3.8: an answer that does not verify is invalid and "SHOULD check another entity
        that advertises the same verification string"; caps.h: one client must not poison a
        ver for all. A liar claiming an honest client's ver first must not leave the honest
        client, online next, without notifications."""
        a_jid, a_pw = self.account("capa")
        b_jid, b_pw = self.account("capb")
        alice = await self.pep_client(a_jid, a_pw, "phone")
        setup = await self.online(b_jid, b_pw, resource="setup")
        await self.mutual(alice, setup)
        tag = secrets.token_hex(6)
        honest_features = [NS_DISCO_INFO, NS_CAPS, f"{NS_NICK}+notify", f"urn:nines:test:honest:{tag}"]
        ver = caps_ver([IDENTITY], honest_features)

        liar = await self.caps_client(b_jid, b_pw, "liar", [NS_DISCO_INFO, NS_CAPS, f"{NS_NICK}+notify"])
        self.send_caps_presence(liar, ver)
        await liar.caps_answers.wait_for(lambda iq: True, "the liar's answer to the server")
        await liar.sync()

        honest = await self.caps_client(b_jid, b_pw, "honest", honest_features)
        self.send_caps_presence(honest, ver)
        await honest.caps_answers.wait_for(
            lambda iq: True, "the server asking the honest client, since the liar's answer for the same ver "
                             "did not verify")
        await honest.sync()
        await alice["xep_0172"].publish_nick("Alice", timeout=WAIT)
        await honest.events.wait_for(published(NS_NICK, "current", owner=a_jid), "alice's nick at the honest client")
        await liar.events.assert_none(any_event, "an event at the liar")

    async def test_a_verified_ver_is_not_asked_again_and_serves_both(self):
        """§8.2: the server caches a verified ver; the second client with it is not asked,
        and gets notifications as the first does."""
        a_jid, a_pw = self.account("capa")
        b_jid, b_pw = self.account("capb")
        alice = await self.pep_client(a_jid, a_pw, "phone")
        tag = secrets.token_hex(8)
        first = await self.pep_client(b_jid, b_pw, "first", caps_tag=tag)
        self.assertEqual(len(first.caps_queries.items), 1, first.caps_queries.dump())
        second = await self.pep_client(b_jid, b_pw, "second", caps_tag=tag, presence=False)
        self.assertEqual(await second["xep_0115"].get_verstring(), await first["xep_0115"].get_verstring(),
                         "the two clients should claim the same ver")
        await self.available(second, asked=False)
        await second.caps_queries.assert_none(lambda iq: True, "a disco#info query for a ver already verified")
        await self.mutual(alice, first)

        await alice["xep_0172"].publish_nick("Alice", timeout=WAIT)
        for c in (first, second):
            await c.events.wait_for(published(NS_NICK, "current", owner=a_jid), f"alice's nick at {c.boundjid}")


# --------------------------------------------------------------------------
# Retrieval, access models, discovery


class PepAccessTest(PepCase):

    async def test_presence_model_contact_reads_stranger_and_to_only_contact_do_not(self):
        """XEP-0060 §6.5.9.6 (presence access model) and §6.5.1 (the owner)."""
        a_jid, a_pw = self.account("acca")
        b_jid, b_pw = self.account("accb")
        c_jid, c_pw = self.account("accc")
        d_jid, d_pw = self.account("accd")
        alice = await self.online(a_jid, a_pw, resource="phone")
        bob = await self.online(b_jid, b_pw, resource="desk")
        carol = await self.online(c_jid, c_pw, resource="desk")
        dave = await self.online(d_jid, d_pw, resource="desk")
        await subscribe_and_approve(self, bob, alice, "to", "from")   # bob sees alice's presence
        await subscribe_and_approve(self, alice, dave, "to", "from")  # only alice sees dave's
        await publish(alice, NS_STATUS, "s1", status("presence only"))  # default: presence model

        for reader in (alice, bob):
            got = items_of(await get_items(reader, a_jid, NS_STATUS))
            self.assertEqual([(i, p.text) for i, p in got], [("s1", "presence only")], str(reader.boundjid))
        for outsider in (carol, dave):
            await self.assertIqError(get_items(outsider, a_jid, NS_STATUS), "auth", "not-authorized",
                                     "presence-subscription-required")
        await self.assertIqError(get_items(bob, a_jid, "urn:nines:test:no-such-node"), "cancel", "item-not-found")

    async def test_open_node_is_readable_by_a_stranger(self):
        a_jid, a_pw = self.account("acca")
        c_jid, c_pw = self.account("accc")
        alice = await self.online(a_jid, a_pw, resource="phone", presence=False)
        carol = await self.online(c_jid, c_pw, resource="desk", presence=False)
        await publish(alice, NS_STATUS, "o1", status("for everyone"), options={"pubsub#access_model": "open"})
        self.assertEqual(ids_of(await get_items(carol, a_jid, NS_STATUS)), ["o1"])

    async def test_roster_model_allows_listed_groups_only(self):
        """XEP-0060 §6.5.9.7: roster access model, pubsub#roster_groups_allowed."""
        a_jid, a_pw = self.account("acca")
        b_jid, b_pw = self.account("accb")
        w_jid, w_pw = self.account("accw")
        alice = await self.online(a_jid, a_pw, resource="phone")
        bob = await self.online(b_jid, b_pw, resource="desk")
        walt = await self.online(w_jid, w_pw, resource="desk")
        await subscribe_and_approve(self, bob, alice, "to", "from")
        await subscribe_and_approve(self, walt, alice, "to", "from")
        await roster_set(alice, b_jid, "Bob", ["Family"])
        await roster_set(alice, w_jid, "Walt", ["Work"])
        await publish(alice, NS_STATUS, "r1", status("family only"),
                      options={"pubsub#access_model": "roster", "pubsub#roster_groups_allowed": ["Family", "Friends"]})

        self.assertEqual(ids_of(await get_items(bob, a_jid, NS_STATUS)), ["r1"])
        self.assertEqual(ids_of(await get_items(alice, None, NS_STATUS)), ["r1"])
        await self.assertIqError(get_items(walt, a_jid, NS_STATUS), "auth", "not-authorized", "not-in-roster-group")

    async def test_whitelist_model_is_the_owner_alone(self):
        """XEP-0060 §6.5.9.8: whitelist, and nobody else is on it."""
        a_jid, a_pw = self.account("acca")
        b_jid, b_pw = self.account("accb")
        alice = await self.online(a_jid, a_pw, resource="phone")
        bob = await self.online(b_jid, b_pw, resource="desk")
        await self.mutual(alice, bob)
        await publish(alice, NS_STATUS, "w1", status("mine"), options={"pubsub#access_model": "whitelist"})
        await self.assertIqError(get_items(bob, a_jid, NS_STATUS), "cancel", "not-allowed", "closed-node")
        self.assertEqual(ids_of(await get_items(alice, a_jid, NS_STATUS)), ["w1"], "to the bare JID")
        self.assertEqual(ids_of(await get_items(alice, None, NS_STATUS)), ["w1"], "with no 'to'")

    async def test_max_items_and_item_ids_retrieval(self):
        """XEP-0060 §6.5.7 (the N most recent) and §6.5.8 (by id; unknown ids are left out)."""
        a_jid, a_pw = self.account("acca")
        b_jid, b_pw = self.account("accb")
        alice = await self.online(a_jid, a_pw, resource="phone")
        bob = await self.online(b_jid, b_pw, resource="desk")
        await subscribe_and_approve(self, bob, alice, "to", "from")
        await publish(alice, NS_STATUS, "m1", status("one"), options={"pubsub#max_items": "10"})
        for n, text in ((2, "two"), (3, "three"), (4, "four")):
            await publish(alice, NS_STATUS, f"m{n}", status(text))

        self.assertEqual(ids_of(await get_items(bob, a_jid, NS_STATUS)), ["m1", "m2", "m3", "m4"], "oldest first")
        self.assertEqual(ids_of(await get_items(bob, a_jid, NS_STATUS, max_items=2)), ["m3", "m4"])
        got = items_of(await get_items(bob, a_jid, NS_STATUS, item_ids=["m3", "m1", "nope"]))
        self.assertEqual(sorted((i, p.text) for i, p in got), [("m1", "one"), ("m3", "three")])
        self.assertEqual(items_of(await get_items(bob, a_jid, NS_STATUS, item_ids=["nope"])), [],
                         "§6.5.9.12: no such item, an empty <items/>")
        await self.assertIqError(get_items(bob, a_jid, NS_STATUS, max_items=-1), "modify", "bad-request")

    async def test_disco_info_and_items_of_the_account(self):
        """XEP-0163 §6.1, XEP-0060 §5.2: the account is a pubsub/pep service; its items are
        the nodes the asker may read."""
        a_jid, a_pw = self.account("acca")
        b_jid, b_pw = self.account("accb")
        c_jid, c_pw = self.account("accc")
        alice = await self.online(a_jid, a_pw, resource="phone")
        bob = await self.online(b_jid, b_pw, resource="desk")
        carol = await self.online(c_jid, c_pw, resource="desk", presence=False)
        await subscribe_and_approve(self, bob, alice, "to", "from")

        info = (await disco(alice, a_jid, NS_DISCO_INFO)).xml.find(f"{{{NS_DISCO_INFO}}}query")
        identities = {(i.get("category"), i.get("type")) for i in info.findall(f"{{{NS_DISCO_INFO}}}identity")}
        self.assertIn(("pubsub", "pep"), identities)
        self.assertIn(("account", "registered"), identities)
        features = {f.get("var") for f in info.findall(f"{{{NS_DISCO_INFO}}}feature")}
        for f in ("publish", "publish-options", "access-open", "access-presence", "access-roster",
                  "access-whitelist", "auto-create", "create-nodes", "create-and-configure", "config-node",
                  "delete-items", "delete-nodes", "filtered-notifications", "item-ids", "last-published",
                  "persistent-items", "purge-nodes", "retract-items", "retrieve-items", "pubsub-on-a-jid"):
            self.assertIn(f"{NS_PUBSUB}#{f}", features, sorted(features))
        # Explicit subscriptions answer <feature-not-implemented/>, so they are not advertised.
        self.assertNotIn(f"{NS_PUBSUB}#subscribe", features)

        nodes = {"urn:nines:test:presence": None, "urn:nines:test:open": "open",
                 "urn:nines:test:private": "whitelist"}
        for node, model in nodes.items():
            await publish(alice, node, "x", status(node), options={"pubsub#access_model": model} if model else None)

        async def listed(c: Client) -> set:
            query = (await disco(c, a_jid, NS_DISCO_ITEMS)).xml.find(f"{{{NS_DISCO_ITEMS}}}query")
            items = query.findall(f"{{{NS_DISCO_ITEMS}}}item")
            for item in items:
                self.assertEqual(item.get("jid"), a_jid, str(query))
            return {item.get("node") for item in items}

        self.assertEqual(await listed(alice), set(nodes), "the owner sees every node")
        self.assertEqual(await listed(bob), {"urn:nines:test:presence", "urn:nines:test:open"})
        # Not to a stranger: the account answers disco only to itself and to those subscribed
        # to its presence (services.cc MayDiscoverAccount, RFC 6121 §8.5.2.1.3), though the
        # open node itself is readable (test_open_node_is_readable_by_a_stranger).
        await self.assertIqError(disco(carol, a_jid, NS_DISCO_ITEMS), "cancel", "service-unavailable")


# --------------------------------------------------------------------------
# publish-options, XEP-0223, max_items


class PepPublishOptionsTest(PepCase):

    async def test_publish_options_create_then_act_as_preconditions(self):
        """XEP-0060 §7.1.5."""
        a_jid, a_pw = self.account("opta")
        alice = await self.pep_client(a_jid, a_pw, "phone", notify=(), presence=False)
        node = NS_STATUS
        await publish(alice, node, "p1", status("one"),
                      options={"pubsub#access_model": "open", "pubsub#max_items": "3"})
        config = await node_config(alice, node)
        self.assertEqual(config["pubsub#access_model"], ["open"], config)
        self.assertEqual(config["pubsub#max_items"], ["3"], config)

        for options in ({"pubsub#access_model": "presence"}, {"pubsub#max_items": "4"},
                        {"pubsub#access_model": "open", "pubsub#notify_retract": "false"}):
            await self.assertIqError(publish(alice, node, "bad", status("x"), options=options),
                                     "cancel", "conflict", "precondition-not-met")

        # Matching options: booleans as slixmpp writes them ('1') ...
        form = Form()
        form["type"] = "submit"
        form.add_field(var="FORM_TYPE", ftype="hidden", value=NS_PUBLISH_OPTIONS)
        form.add_field(var="pubsub#access_model", value="open")
        form.add_field(var="pubsub#persist_items", value=True)
        form.add_field(var="pubsub#max_items", value="3")
        sent = form.xml.find(f"{{{NS_DATA}}}field[@var='pubsub#persist_items']/{{{NS_DATA}}}value")
        self.assertEqual(sent.text, "1", "slixmpp writes True as '1'")
        await alice["xep_0060"].publish(None, node, id="p2", payload=status("two"), options=form, timeout=WAIT)
        # ... and as 'true'.
        await publish(alice, node, "p3", status("three"),
                      options={"pubsub#access_model": "open", "pubsub#persist_items": "true",
                               "pubsub#notify_retract": "1", "pubsub#max_items": "3"})

        # An option this service does not know is a precondition it cannot meet.
        await self.assertIqError(publish(alice, node, "bad", status("x"), options={"pubsub#frobnicate": "1"}),
                                 "cancel", "conflict", "precondition-not-met")
        await self.assertIqError(publish(alice, "urn:nines:test:new", "n1", status("x"),
                                         options={"pubsub#frobnicate": "1"}),
                                 "cancel", "conflict", "precondition-not-met")
        await self.assertIqError(get_items(alice, None, "urn:nines:test:new"), "cancel", "item-not-found")

        self.assertEqual(ids_of(await get_items(alice, None, node)), ["p1", "p2", "p3"],
                         "the failed publishes stored nothing")
        self.assertEqual((await node_config(alice, node))["pubsub#access_model"], ["open"])

    async def test_xep0223_private_storage_round_trip_and_privacy(self):
        """XEP-0223 through slixmpp: whitelist + persist_items as publish-options."""
        a_jid, a_pw = self.account("opta")
        b_jid, b_pw = self.account("optb")
        node = "urn:nines:test:secret"
        alice = await self.pep_client(a_jid, a_pw, "phone", notify=(node,), plugins=("xep_0223",))
        bob = await self.pep_client(b_jid, b_pw, "desk", notify=(node,))
        await self.mutual(alice, bob)

        secret = Secret()
        secret.xml.text = "the combination is 1234"
        await alice["xep_0223"].store(secret, node=node, id="current", timeout=WAIT)
        secret.xml.text = "the combination is 4321"
        await alice["xep_0223"].store(secret, node=node, id="current", timeout=WAIT)  # preconditions met
        got = items_of(await alice["xep_0223"].retrieve(node, id="current", timeout=WAIT))
        self.assertEqual([(i, p.tag, p.text) for i, p in got],
                         [("current", f"{{{Secret.namespace}}}secret", "the combination is 4321")])
        self.assertEqual((await node_config(alice, node))["pubsub#access_model"], ["whitelist"])
        await alice.events.wait_for(published(node, "current"), "the owner's own +notify resource hears of it")

        await self.assertIqError(get_items(bob, a_jid, node), "cancel", "not-allowed", "closed-node")
        await bob.events.assert_none(any_event, "an event of alice's private node at a subscribed contact")

    async def test_max_items_prunes_oldest_and_republish_makes_newest(self):
        """XEP-0060 §7.1.2.5 (retract-oldest) and §7.1.2: an existing id is overwritten."""
        a_jid, a_pw = self.account("opta")
        alice = await self.online(a_jid, a_pw, resource="phone", presence=False)
        node = NS_STATUS
        await publish(alice, node, "i1", status("one"), options={"pubsub#max_items": "2"})
        await publish(alice, node, "i2", status("two"))
        await publish(alice, node, "i3", status("three"), to=a_jid)  # to the own bare JID: the same
        self.assertEqual(ids_of(await get_items(alice, None, node)), ["i2", "i3"])

        await publish(alice, node, "i2", status("two again"))
        got = items_of(await get_items(alice, None, node))
        self.assertEqual([(i, p.text) for i, p in got], [("i3", "three"), ("i2", "two again")])
        await publish(alice, node, "i4", status("four"))
        self.assertEqual(ids_of(await get_items(alice, None, node)), ["i2", "i4"], "i3 was now the oldest")


# --------------------------------------------------------------------------
# Node management


class PepNodeManagementTest(PepCase):

    async def pair(self, node: str):
        """Alice and bob, subscribed both ways, each with a +notify resource for `node`."""
        a_jid, a_pw = self.account("mgta")
        b_jid, b_pw = self.account("mgtb")
        alice = await self.pep_client(a_jid, a_pw, "phone", notify=(node,))
        bob = await self.pep_client(b_jid, b_pw, "desk", notify=(node,))
        await self.mutual(alice, bob)
        return alice, bob

    async def test_retract_with_notify_sends_retract_events(self):
        """XEP-0060 §7.2.2.1."""
        alice, bob = await self.pair(NS_STATUS)
        a_jid = alice.boundjid.bare
        await publish(alice, NS_STATUS, "r1", status("one"), options={"pubsub#max_items": "5"})
        await publish(alice, NS_STATUS, "r2", status("two"))
        for c in (alice, bob):
            for item_id in ("r1", "r2"):
                await c.events.wait_for(published(NS_STATUS, item_id), f"{item_id} at {c.boundjid}")

        retract = el(f"{{{NS_PUBSUB}}}retract", {"node": NS_STATUS, "notify": "true"},
                     el(f"{{{NS_PUBSUB}}}item", {"id": "r1"}))
        await pubsub_iq(alice, "set", retract)
        for c in (alice, bob):
            msg = await c.events.wait_for(retracted(NS_STATUS, "r1"), f"<retract id='r1'/> at {c.boundjid}")
            self.assertEqual(str(msg["from"]), a_jid)
        self.assertEqual(ids_of(await get_items(bob, a_jid, NS_STATUS)), ["r2"])
        await self.assertIqError(pubsub_iq(alice, "set", retract), "cancel", "item-not-found")
        await bob.events.assert_none(any_event, "a second event for one retraction")

    async def test_purge_sends_one_purge_event(self):
        """XEP-0060 §8.5: one <purge/>, never per-item retracts."""
        alice, bob = await self.pair(NS_STATUS)
        a_jid = alice.boundjid.bare
        await publish(alice, NS_STATUS, "p1", status("one"), options={"pubsub#max_items": "5"})
        await publish(alice, NS_STATUS, "p2", status("two"))
        for item_id in ("p1", "p2"):
            await bob.events.wait_for(published(NS_STATUS, item_id), f"{item_id} at bob")

        await alice["xep_0060"].purge(None, NS_STATUS, timeout=WAIT)
        for c in (alice, bob):
            msg = await c.events.wait_for(node_event("purge", NS_STATUS), f"<purge/> at {c.boundjid}")
            self.assertEqual(str(msg["from"]), a_jid)
        self.assertEqual(items_of(await get_items(bob, a_jid, NS_STATUS)), [])
        self.assertEqual((await node_config(alice, NS_STATUS))["pubsub#max_items"], ["5"], "the node stays")
        await bob.events.assert_none(lambda m: not published(NS_STATUS)(m), "a retract event besides the purge")

    async def test_delete_node_sends_delete_event_then_item_not_found(self):
        """XEP-0060 §8.4."""
        alice, bob = await self.pair(NS_STATUS)
        a_jid = alice.boundjid.bare
        await publish(alice, NS_STATUS, "d1", status("one"))
        await bob.events.wait_for(published(NS_STATUS, "d1"), "d1 at bob")

        await alice["xep_0060"].delete_node(None, NS_STATUS, timeout=WAIT)
        for c in (alice, bob):
            msg = await c.events.wait_for(node_event("delete", NS_STATUS), f"<delete/> at {c.boundjid}")
            self.assertEqual(str(msg["from"]), a_jid)
        await self.assertIqError(get_items(bob, a_jid, NS_STATUS), "cancel", "item-not-found")
        await self.assertIqError(get_items(alice, None, NS_STATUS), "cancel", "item-not-found")
        await self.assertIqError(alice["xep_0060"].delete_node(None, NS_STATUS, timeout=WAIT), "cancel",
                                 "item-not-found")

    async def test_configure_get_and_set(self):
        """XEP-0060 §8.2: the form has the node's values; a submitted form changes them."""
        a_jid, a_pw = self.account("mgta")
        c_jid, c_pw = self.account("mgtc")
        alice = await self.pep_client(a_jid, a_pw, "phone", notify=(), presence=False)
        carol = await self.online(c_jid, c_pw, resource="desk", presence=False)
        await publish(alice, NS_STATUS, "c1", status("one"),
                      options={"pubsub#max_items": "4", "pubsub#notify_retract": "0", "pubsub#title": "Status"})

        config = await node_config(alice, NS_STATUS)
        self.assertEqual(config["FORM_TYPE"], [NS_NODE_CONFIG])
        expected = {"pubsub#access_model": ["presence"], "pubsub#max_items": ["4"], "pubsub#title": ["Status"],
                    "pubsub#send_last_published_item": ["on_sub_and_presence"]}
        for var, values in expected.items():
            self.assertEqual(config.get(var), values, f"{var} in {config}")
        self.assertIn(config.get("pubsub#notify_retract"), (["0"], ["false"]), config)
        self.assertIn(config.get("pubsub#persist_items"), (["1"], ["true"]), config)
        await self.assertIqError(get_items(carol, a_jid, NS_STATUS), "auth", "not-authorized",
                                 "presence-subscription-required")

        form = Form()
        form["type"] = "submit"
        form.add_field(var="pubsub#access_model", value="open")
        await alice["xep_0060"].set_node_config(None, NS_STATUS, form, timeout=WAIT)
        config = await node_config(alice, NS_STATUS)
        self.assertEqual(config["pubsub#access_model"], ["open"])
        self.assertEqual(config["pubsub#max_items"], ["4"], "fields not in the form keep their values")
        self.assertEqual(ids_of(await get_items(carol, a_jid, NS_STATUS)), ["c1"], "the node is open now")

        bad = data_form(NS_NODE_CONFIG, {"pubsub#access_model": "authorize"})
        await self.assertIqError(pubsub_iq(alice, "set", el(f"{{{NS_OWNER}}}configure", {"node": NS_STATUS}, bad),
                                           ns=NS_OWNER), "modify", "not-acceptable")
        self.assertEqual((await node_config(alice, NS_STATUS))["pubsub#access_model"], ["open"])
        await self.assertIqError(node_config(alice, "urn:nines:test:none"), "cancel", "item-not-found")

    async def test_create_with_configure_and_create_existing(self):
        """XEP-0060 §8.1.3 (create and configure) and §8.1.1 (<conflict/>)."""
        a_jid, a_pw = self.account("mgta")
        alice = await self.pep_client(a_jid, a_pw, "phone", notify=(), presence=False)
        node = "urn:nines:test:created"
        form = Form()
        form["type"] = "submit"
        form.add_field(var="pubsub#access_model", value="whitelist")
        form.add_field(var="pubsub#max_items", value="7")
        await alice["xep_0060"].create_node(None, node, config=form, timeout=WAIT)
        config = await node_config(alice, node)
        self.assertEqual((config["pubsub#access_model"], config["pubsub#max_items"]), (["whitelist"], ["7"]))
        self.assertEqual(items_of(await get_items(alice, None, node)), [], "a new node has no items")

        await self.assertIqError(alice["xep_0060"].create_node(None, node, timeout=WAIT), "cancel", "conflict")
        await self.assertIqError(pubsub_iq(alice, "set", el(f"{{{NS_PUBSUB}}}create")),
                                 "modify", "not-acceptable", "nodeid-required")
        plain = "urn:nines:test:plain"
        await alice["xep_0060"].create_node(None, plain, timeout=WAIT)
        self.assertEqual((await node_config(alice, plain))["pubsub#access_model"], ["presence"],
                         "XEP-0163 §5: presence is the default access model")

    async def test_another_accounts_pep_is_not_writable_or_subscribable(self):
        """XEP-0060 §7.1.3.1 (<forbidden/>) and §6.1.3.x: subscriptions are not offered."""
        a_jid, a_pw = self.account("mgta")
        b_jid, b_pw = self.account("mgtb")
        alice = await self.online(a_jid, a_pw, resource="phone")
        bob = await self.online(b_jid, b_pw, resource="desk")
        await self.mutual(alice, bob)
        await publish(alice, NS_STATUS, "mine", status("alice's"))

        await self.assertIqError(publish(bob, NS_STATUS, "mine", status("bob's"), to=a_jid), "auth", "forbidden")
        await self.assertIqError(publish(bob, "urn:nines:test:bobs", "x", status("bob's"), to=a_jid), "auth",
                                 "forbidden")
        await self.assertIqError(pubsub_iq(bob, "set", el(f"{{{NS_OWNER}}}purge", {"node": NS_STATUS}),
                                           to=a_jid, ns=NS_OWNER), "auth", "forbidden")
        await self.assertIqError(pubsub_iq(bob, "set", el(f"{{{NS_OWNER}}}delete", {"node": NS_STATUS}),
                                           to=a_jid, ns=NS_OWNER), "auth", "forbidden")
        await self.assertIqError(pubsub_iq(bob, "get", el(f"{{{NS_OWNER}}}configure", {"node": NS_STATUS}),
                                           to=a_jid, ns=NS_OWNER), "auth", "forbidden")
        got = items_of(await get_items(bob, a_jid, NS_STATUS))
        self.assertEqual([(i, p.text) for i, p in got], [("mine", "alice's")], "nothing changed")

        subscribe = el(f"{{{NS_PUBSUB}}}subscribe", {"node": NS_STATUS, "jid": b_jid})
        await self.assertIqError(pubsub_iq(bob, "set", subscribe, to=a_jid), "cancel", "feature-not-implemented",
                                 "unsupported", "subscribe")


class PepItemSizeTest(PepCase):
    SERVER_CONFIG = {"limits": {"pep_item_size": 1024}}

    async def test_payload_over_the_limit_is_refused(self):
        """limits.pep_item_size; XEP-0060 §7.1.3.4."""
        a_jid, a_pw = self.account("siza")
        alice = await self.online(a_jid, a_pw, resource="phone", presence=False)
        await self.assertIqError(publish(alice, NS_STATUS, "big", status("x" * 1500)), "modify", "not-acceptable",
                                 "payload-too-big")
        await self.assertIqError(get_items(alice, None, NS_STATUS), "cancel", "item-not-found")
        await publish(alice, NS_STATUS, "small", status("x" * 600))
        await self.assertIqError(publish(alice, NS_STATUS, "small", status("y" * 1500)), "modify", "not-acceptable",
                                 "payload-too-big")
        got = items_of(await get_items(alice, None, NS_STATUS))
        self.assertEqual([(i, p.text) for i, p in got], [("small", "x" * 600)])


class PepDurabilityTest(PepCase):

    async def test_items_and_config_survive_kill_9(self):
        a_jid, a_pw = self.account("dura")
        c_jid, c_pw = self.account("durc")
        alice = await self.pep_client(a_jid, a_pw, "phone", notify=(NS_NICK, NS_STATUS))
        await publish(alice, NS_STATUS, "k1", status("one"),
                      options={"pubsub#access_model": "open", "pubsub#max_items": "3", "pubsub#title": "Kept"})
        for n in (2, 3, 4):
            await publish(alice, NS_STATUS, f"k{n}", status(f"item {n}"))
        await publish(alice, NS_STATUS, "k2", status("two again"))
        await alice["xep_0172"].publish_nick("Alice", timeout=WAIT)
        before = await node_config(alice, NS_STATUS)
        await alice.close()

        self.server.kill()  # SIGKILL: the results above came after the writes were durable
        self.server.start()

        again = await self.pep_client(a_jid, a_pw, "laptop", notify=(NS_NICK, NS_STATUS))
        for node, item_id in ((NS_NICK, "current"), (NS_STATUS, "k2")):
            await again.events.wait_for(published(node, item_id, owner=a_jid), f"the last item of {node} after restart")
        got = items_of(await get_items(again, None, NS_STATUS))
        self.assertEqual([(i, p.text) for i, p in got], [("k3", "item 3"), ("k4", "item 4"), ("k2", "two again")])
        self.assertEqual(await node_config(again, NS_STATUS), before)
        carol = await self.online(c_jid, c_pw, resource="desk", presence=False)
        self.assertEqual(ids_of(await get_items(carol, a_jid, NS_STATUS)), ["k3", "k4", "k2"], "still open")
        self.assertEqual(ids_of(await get_items(again, None, NS_NICK)), ["current"])


if __name__ == "__main__":
    unittest.main()
