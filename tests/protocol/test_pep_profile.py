"""Protocol test: what PEP carries for a user's profile, through slixmpp 1.8.3's plugins
(XEP-0084 avatars, XEP-0172 nick, XEP-0054 vCards, XEP-0048/XEP-0049 bookmarks) and, where
slixmpp has no plugin (XEP-0402, XEP-0398), hand-built payloads.

  AvatarTest          XEP-0084 with xep_0084: a contact advertising urn:xmpp:avatar:metadata+notify
                      gets the metadata event (info id, bytes, type, width, height); retrieve_avatar
                      fetches the data by id; nobody without urn:xmpp:avatar:data+notify hears of the
                      data node
  NickTest            XEP-0172 with xep_0172: the nick reaches a contact, and so does stop() (an
                      empty <nick/>)
  AvatarConversionTest
                      XEP-0398 PEP -> vCard: an avatar whose data node is open becomes the vCard
                      PHOTO (TYPE, BINVAL) seen by a contact through xep_0054; one whose data node is
                      not open leaves the vCard alone; empty metadata removes the PHOTO.
                      XEP-0398 vCard -> PEP: a vCard with a PHOTO published through xep_0054 becomes
                      a metadata event (id = SHA-1 hex of the image, bytes) and a data item
                      XEP-0153 / XEP-0398 §4: available presence (broadcast and directed) gets
                      <x xmlns='vcard-temp:x:update'><photo>SHA1</photo></x>, also into an <x/>
                      without <photo/>; an empty <photo/> stays empty; an account without avatar
                      gets no <x/>; urn:xmpp:pep-vcard-conversion:0 on the account
  BookmarksTest       XEP-0402 with the publish-options it requires: the event to another resource,
                      the XEP-0048 view through xep_0048 (jid = item id, name, autojoin, nick), a
                      retraction with notify leaves the view, urn:xmpp:bookmarks:1#compat,
                      another account gets <not-allowed/><closed-node/>.
                      #compat legacy -> XEP-0402: a private-storage set becomes items with publish
                      events; a second set notifies the removed (retract) and the changed one
                      (publish) but not the unchanged one; the <url/> entry is kept; a legacy
                      client saving back what it read leaves bookmarks a XEP-0402 client made (and
                      their <extensions/>) as they were, without events.
                      Migration: legacy bookmarks stored first (through the protocol, and as a
                      server before PEP left them in its database) are in the node after a
                      XEP-0402 client's first publish
  ProfileRestartTest  bookmarks (both views), the avatar (node, data, vCard PHOTO, presence hash)
                      and the contact's last-item delivery survive a graceful restart

Waiting for +notify: the server learns a resource's interests from its XEP-0115 caps (a
disco#info round trip, or its cache). Every client here also advertises PROBE+notify, and each
account has one item on PROBE, published before the client's first presence; the server sends
that item to the resource when it knows its caps (XEP-0163 §4.3.4), so once it has arrived the
server knows every +notify the client has (they are all in the same caps).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import unittest
import xml.etree.ElementTree as ET
import zlib
from typing import Callable, Optional

from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form
from slixmpp.plugins.xep_0030 import DiscoInfo
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from test_slixmpp import QUIET, WAIT, AsyncServerTestCase, Client, StanzaLog, roster_get, subscribe_and_approve

NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
NS_NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_AVATAR_DATA = "urn:xmpp:avatar:data"
NS_AVATAR_METADATA = "urn:xmpp:avatar:metadata"
NS_NICK = "http://jabber.org/protocol/nick"
NS_VCARD = "vcard-temp"
NS_VCARD_UPDATE = "vcard-temp:x:update"
NS_CONVERSION = "urn:xmpp:pep-vcard-conversion:0"
NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
NS_LEGACY = "storage:bookmarks"
NS_PRIVATE = "jabber:iq:private"
PROBE = "urn:nines:test:profile-probe"  # see the module docstring

BASE_PLUGINS = ("xep_0004", "xep_0060", "xep_0115", "xep_0163")
AVATAR = ("xep_0084",)  # advertises urn:xmpp:avatar:metadata+notify (register_pep at bind)
VCARD = ("xep_0054",)
LEGACY = ("xep_0049", "xep_0048")

# XEP-0402 §3: the publish-options every bookmark is published with.
BOOKMARK_OPTIONS = {"pubsub#persist_items": "true", "pubsub#max_items": "max",
                    "pubsub#send_last_published_item": "never", "pubsub#access_model": "whitelist"}


# --------------------------------------------------------------------------
# Payloads and forms


def png(seed: bytes) -> bytes:
    """A valid 1x1 PNG; `seed` (3 bytes, the colour) makes each image's SHA-1 different."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" + seed[:3]))
            + chunk(b"IEND", b""))


def new_image() -> tuple[bytes, str, str]:
    """(image, SHA-1 hex, base64) of a fresh PNG."""
    image = png(os.urandom(3))
    return image, hashlib.sha1(image).hexdigest(), base64.b64encode(image).decode()


def info(image: bytes) -> dict:
    # slixmpp 1.8.3 cannot serialise int height/width (notes §8 bug 2): strings.
    return {"id": hashlib.sha1(image).hexdigest(), "type": "image/png", "bytes": str(len(image)),
            "height": "1", "width": "1"}


def form(form_type: str, fields: dict) -> Form:
    f = Form()
    f["type"] = "submit"
    f.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for var, value in fields.items():
        f.add_field(var=var, value=value)
    return f


def conference(name: str, autojoin: bool, nick: str, extensions: Optional[ET.Element] = None) -> ET.Element:
    """A XEP-0402 <conference/> (slixmpp has no xep_0402), with `extensions` in <extensions/>."""
    e = ET.Element(f"{{{NS_BOOKMARKS}}}conference", {"name": name, "autojoin": "true" if autojoin else "false"})
    ET.SubElement(e, f"{{{NS_BOOKMARKS}}}nick").text = nick
    if extensions is not None:
        ET.SubElement(e, f"{{{NS_BOOKMARKS}}}extensions").append(extensions)
    return e


def without_space(text: Optional[str]) -> str:
    return "".join((text or "").split())


# --------------------------------------------------------------------------
# Reading events and results


def event_items(msg, node: str) -> Optional[ET.Element]:
    """The <items node=NODE/> of a pubsub#event message, or None."""
    items = msg.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items")
    return items if items is not None and items.get("node") == node else None


def event_item(msg, node: str, item_id: str) -> Optional[ET.Element]:
    items = event_items(msg, node)
    if items is None:
        return None
    return next((i for i in items.findall(f"{{{NS_EVENT}}}item") if i.get("id") == item_id), None)


def event_payload(msg, node: str, item_id: str) -> Optional[ET.Element]:
    item = event_item(msg, node, item_id)
    return next(iter(item), None) if item is not None else None


def published(owner: str, node: str, item_id: Optional[str] = None) -> Callable:
    """A publish event of `owner`'s NODE (with item ITEM_ID, if given)."""
    def pred(msg) -> bool:
        items = event_items(msg, node)
        if str(msg["from"]) != owner or items is None:
            return False
        ids = [i.get("id") for i in items.findall(f"{{{NS_EVENT}}}item")]
        return bool(ids) and (item_id is None or item_id in ids)
    return pred


def retracted(owner: str, node: str, item_id: str) -> Callable:
    def pred(msg) -> bool:
        items = event_items(msg, node)
        return (str(msg["from"]) == owner and items is not None
                and item_id in [r.get("id") for r in items.findall(f"{{{NS_EVENT}}}retract")])
    return pred


def any_event(owner: str, node: str) -> Callable:
    return lambda msg: str(msg["from"]) == owner and event_items(msg, node) is not None


def result_items(iq, node: str) -> dict:
    """{item id: payload element or None} of a pubsub items result, checking its node."""
    items = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items")
    assert items is not None and items.get("node") == node, str(iq)
    out = {}
    for item in items.findall(f"{{{NS_PUBSUB}}}item"):
        children = list(item)
        out[item.get("id")] = children[0] if children else None
    return out


def bookmark_402(payload: Optional[ET.Element]) -> Optional[tuple]:
    """(name, autojoin as bool, nick) of a XEP-0402 <conference/>."""
    if payload is None or payload.tag != f"{{{NS_BOOKMARKS}}}conference":
        return None
    return (payload.get("name"), payload.get("autojoin") in ("true", "1"),
            payload.findtext(f"{{{NS_BOOKMARKS}}}nick"))


def legacy_view(iq) -> tuple[dict, list]:
    """({room jid: (name, autojoin, nick)}, [(url, name)]) of a private-storage bookmarks
    result, read through slixmpp's xep_0048 stanza classes."""
    storage = iq["private"]["bookmarks"]
    confs = {}
    for c in storage["conferences"]:
        confs[str(c["jid"])] = (c["name"], c["autojoin"], c["nick"])
    urls = [(u["url"], u["name"]) for u in storage["urls"]]
    return confs, urls


def error_of(e: IqError) -> tuple:
    """(condition, XEP-0060 application condition or None) of an IqError."""
    error = e.iq.xml.find("{jabber:client}error")
    app = None
    if error is not None:
        for child in error:
            if child.tag.startswith(f"{{{NS_PUBSUB_ERRORS}}}"):
                app = child.tag.split("}", 1)[1]
    return e.iq["error"]["condition"], app


def photo_state(presence) -> str:
    """'no x', 'x without photo', or the photo text ('' for an empty <photo/>)."""
    x = presence.xml.find(f"{{{NS_VCARD_UPDATE}}}x")
    if x is None:
        return "no x"
    photo = x.find(f"{{{NS_VCARD_UPDATE}}}photo")
    if photo is None:
        return "x without photo"
    return (photo.text or "").strip()


def presence_with_status(full: str, status: str) -> Callable:
    return lambda p: str(p["from"]) == full and p["type"] == "available" and p["status"] == status


# --------------------------------------------------------------------------


class ProfileTestCase(AsyncServerTestCase):
    """Clients with PEP plugins, ready for +notify; helpers for vCards and bookmarks."""

    probed: set  # accounts that have their PROBE item (kept across restarts: it is stored)

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.probed = set()

    async def pep_client(self, jid: str, password: str, resource: str, *, plugins=(), notify=(),
                         presence: bool = True) -> Client:
        """Logs in as jid/resource with slixmpp's PEP plugins (and `plugins`), advertises
        NODE+notify for each of `notify` (and PROBE) in its caps, gets the roster and, if
        `presence`, sends initial presence and waits until the server knows the caps."""
        c = self.client(f"{jid}/{resource}", password)
        for plugin in BASE_PLUGINS + tuple(plugins):
            c.register_plugin(plugin)
        c.events = StanzaLog(f"{jid}/{resource} PEP events")
        c.register_handler(Callback("test pep events", StanzaPath("message/pubsub_event"), c.events.add))
        await c.login()
        # Plugins that register_pep at bind (xep_0084, xep_0172) update the caps in background
        # tasks, which may still be running. The features added here go straight to disco;
        # update_caps runs last (again if a late task assigned an older hash), so the presence
        # carries the hash of all of them.
        for ns in (PROBE,) + tuple(notify):
            c["xep_0030"].add_feature(f"{ns}+notify")
        await self.settle_caps(c)
        await roster_get(c)
        if jid not in self.probed:
            probe = ET.Element(f"{{{PROBE}}}probe")
            await c["xep_0060"].publish(None, PROBE, id="ready", payload=probe, timeout=WAIT)
            self.probed.add(jid)
        if presence:
            await self.go_online(c)
        return c

    async def settle_caps(self, c: Client) -> None:
        caps = c["xep_0115"]
        for _ in range(10):
            await caps.update_caps(broadcast=False)
            await asyncio.sleep(0.05)  # background update_caps tasks finish (local work only)
            info_now = await c["xep_0030"].get_info(None, local=True)
            if not isinstance(info_now, DiscoInfo):
                info_now = info_now["disco_info"]
            if await caps.get_verstring(c.boundjid.full) == caps.generate_verstring(info_now, caps.hash):
                return
        self.fail(f"slixmpp's caps hash of {c.boundjid.full} does not settle")

    async def go_online(self, c: Client) -> None:
        c.send_presence()
        await c.events.wait_for(published(c.boundjid.bare, PROBE, "ready"),
                                f"the PROBE item at {c.boundjid.full} (the server knowing its caps)")

    async def contact_of(self, owner: Client, contact: Client) -> None:
        """`contact` subscribes to `owner`'s presence (and so to its PEP nodes), approved."""
        await subscribe_and_approve(self, contact, owner, "to", "from")

    # vCards

    async def vcard_photo(self, c: Client, bare: str) -> Optional[tuple]:
        """(TYPE, BINVAL without whitespace) of `bare`'s vCard as `c` gets it; None if the
        vCard has no PHOTO or there is no vCard."""
        try:
            iq = await c["xep_0054"].get_vcard(bare, timeout=WAIT)  # a str: a real query (notes §8 bug 9)
        except IqError as e:
            if e.iq["error"]["condition"] == "item-not-found":
                return None
            raise
        vcard = iq.xml.find(f"{{{NS_VCARD}}}vCard")
        self.assertIsNotNone(vcard, str(iq))
        photo = vcard.find(f"{{{NS_VCARD}}}PHOTO")
        if photo is None:
            return None
        return photo.findtext(f"{{{NS_VCARD}}}TYPE"), without_space(photo.findtext(f"{{{NS_VCARD}}}BINVAL"))

    async def wait_vcard_photo(self, c: Client, bare: str, want: Optional[tuple], what: str) -> None:
        """The conversion is done after the publish is answered: polls (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            got = await self.vcard_photo(c, bare)
            if got == want:
                return
            if loop.time() > deadline:
                self.fail(f"{what}: vCard PHOTO of {bare} is {got!r} after {WAIT}s, expected {want!r}")
            await asyncio.sleep(0.1)

    async def vcard_photo_stays(self, c: Client, bare: str, want: Optional[tuple], what: str) -> None:
        """The vCard PHOTO is `want` throughout a quiet period."""
        for _ in range(4):
            await asyncio.sleep(QUIET / 4)
            got = await self.vcard_photo(c, bare)
            if got != want:
                self.fail(f"{what}: vCard PHOTO of {bare} became {got!r}, expected it to stay {want!r}")

    # bookmarks

    async def publish_bookmark(self, c: Client, room: str, name: str, autojoin: bool, nick: str,
                               extensions: Optional[ET.Element] = None):
        return await c["xep_0060"].publish(None, NS_BOOKMARKS, id=room,
                                           payload=conference(name, autojoin, nick, extensions),
                                           options=form(NS_PUBLISH_OPTIONS, BOOKMARK_OPTIONS), timeout=WAIT)

    async def bookmark_items(self, c: Client, owner: Optional[str] = None) -> dict:
        """{room: (name, autojoin, nick)} of the XEP-0402 node."""
        iq = await c["xep_0060"].get_items(owner, NS_BOOKMARKS, timeout=WAIT)
        return {room: bookmark_402(payload) for room, payload in result_items(iq, NS_BOOKMARKS).items()}

    async def legacy_get(self, c: Client) -> tuple[dict, list]:
        return legacy_view(await c["xep_0048"].get_bookmarks(method="xep_0049", timeout=WAIT))

    async def legacy_set(self, c: Client, conferences: list, urls: list = ()) -> None:
        """A XEP-0048 <storage/> through XEP-0049: conferences (room, name, autojoin, nick)
        through xep_0048's stanza, each (url, name) as a raw <url/> element."""
        storage = c["xep_0048"].stanza.Bookmarks()
        for room, name, autojoin, nick in conferences:
            storage.add_conference(room, nick, name=name, autojoin=autojoin)
        for url, name in urls:
            storage.xml.append(ET.Element(f"{{{NS_LEGACY}}}url", {"url": url, "name": name}))
        await c["xep_0048"].set_bookmarks(storage, method="xep_0049", timeout=WAIT)

    async def own_features(self, c: Client) -> list:
        info_iq = await c["xep_0030"].get_info(jid=c.boundjid.bare, local=False, timeout=WAIT)
        return list(info_iq["disco_info"]["features"])


def room(name: str) -> str:
    return f"{name}-{os.urandom(3).hex()}@conference.localhost"


# --------------------------------------------------------------------------


class AvatarTest(ProfileTestCase):

    async def test_metadata_event_data_by_id_and_no_data_events(self):
        """XEP-0084 §4.1-§4.3 through xep_0084; XEP-0163 §4 filtered notifications."""
        a_jid, a_pw = self.account("ava")
        b_jid, b_pw = self.account("avb")
        alice = await self.pep_client(a_jid, a_pw, "phone", plugins=AVATAR)
        bob = await self.pep_client(b_jid, b_pw, "desk", plugins=AVATAR)
        await self.contact_of(alice, bob)
        metadata_events = StanzaLog("bob's avatar_metadata_publish events")
        bob.add_event_handler("avatar_metadata_publish", metadata_events.add)

        image, sha1, b64 = new_image()
        await alice["xep_0084"].publish_avatar(image, timeout=WAIT)
        await alice["xep_0084"].publish_avatar_metadata(info(image), timeout=WAIT)

        msg = await metadata_events.wait_for(lambda m: str(m["from"]) == a_jid, f"avatar metadata from {a_jid}")
        item = msg["pubsub_event"]["items"]["item"]
        self.assertEqual(item["id"], sha1)
        infos = list(item["avatar_metadata"]["items"])
        self.assertEqual(len(infos), 1, str(msg))
        self.assertEqual((infos[0]["id"], infos[0]["type"], infos[0]["bytes"], infos[0]["width"], infos[0]["height"]),
                         (sha1, "image/png", len(image), 1, 1))
        # The owner's own resource advertises metadata+notify too (XEP-0163 §4: (3)).
        await alice.events.wait_for(published(a_jid, NS_AVATAR_METADATA, sha1), "alice's own metadata event")

        # The contact fetches the picture by the id it was told (§4.3).
        got = await bob["xep_0084"].retrieve_avatar(a_jid, sha1, timeout=WAIT)
        items = list(got["pubsub"]["items"])
        self.assertEqual([i["id"] for i in items], [sha1], str(got))
        self.assertEqual(items[0]["avatar_data"]["value"], image)
        self.assertEqual(without_space(items[0].xml.find(f"{{{NS_AVATAR_DATA}}}data").text), b64)

        # Neither asked for urn:xmpp:avatar:data+notify, so nobody hears of the data node.
        await bob.events.assert_none(any_event(a_jid, NS_AVATAR_DATA), "avatar data event at bob")
        await alice.events.assert_none(any_event(a_jid, NS_AVATAR_DATA), "avatar data event at alice", within=0.1)


class NickTest(ProfileTestCase):

    async def test_nick_and_its_stop_reach_a_contact(self):
        """XEP-0172 §4.5 and §5 through xep_0172: publish, then stop() (an empty <nick/>)."""
        a_jid, a_pw = self.account("nka")
        b_jid, b_pw = self.account("nkb")
        alice = await self.pep_client(a_jid, a_pw, "phone", plugins=("xep_0172",))
        bob = await self.pep_client(b_jid, b_pw, "desk", plugins=("xep_0172",))
        nicks = StanzaLog("bob's user_nick_publish events")
        bob.add_event_handler("user_nick_publish", nicks.add)
        await self.contact_of(alice, bob)

        await alice["xep_0172"].publish_nick("Alice Ä.", timeout=WAIT)
        msg = await nicks.wait_for(lambda m: str(m["from"]) == a_jid, "the nick event")
        self.assertEqual(msg["pubsub_event"]["items"]["item"]["nick"]["nick"], "Alice Ä.")

        await alice["xep_0172"].stop(timeout=WAIT)
        msg = await nicks.wait_for(lambda m: str(m["from"]) == a_jid, "the event of the empty nick")
        payload = msg.xml.find(f"{{{NS_EVENT}}}event/{{{NS_EVENT}}}items/{{{NS_EVENT}}}item/{{{NS_NICK}}}nick")
        self.assertIsNotNone(payload, str(msg))
        self.assertEqual(payload.text or "", "", "stop() publishes an empty <nick/>")


class AvatarConversionTest(ProfileTestCase):

    async def test_pep_avatar_becomes_vcard_photo_only_from_an_open_node(self):
        """XEP-0398 §3 PEP -> vCard; §5: only an open data node; empty metadata removes it."""
        a_jid, a_pw = self.account("p2va")
        b_jid, b_pw = self.account("p2vb")
        alice = await self.pep_client(a_jid, a_pw, "phone", plugins=AVATAR + VCARD)
        bob = await self.pep_client(b_jid, b_pw, "desk", plugins=VCARD)
        await self.contact_of(alice, bob)

        image, sha1, b64 = new_image()
        await alice["xep_0084"].publish_avatar(
            image, options=form(NS_PUBLISH_OPTIONS, {"pubsub#access_model": "open"}), timeout=WAIT)
        await alice["xep_0084"].publish_avatar_metadata(info(image), timeout=WAIT)
        await self.wait_vcard_photo(bob, a_jid, ("image/png", b64), "an open avatar converted")

        # The data node no longer open: a new picture stays out of the vCard.
        await alice["xep_0060"].set_node_config(
            None, NS_AVATAR_DATA, form(NS_NODE_CONFIG, {"pubsub#access_model": "presence"}), timeout=WAIT)
        image2, _, _ = new_image()
        await alice["xep_0084"].publish_avatar(image2, timeout=WAIT)
        await alice["xep_0084"].publish_avatar_metadata(info(image2), timeout=WAIT)
        await self.vcard_photo_stays(bob, a_jid, ("image/png", b64), "an avatar from a presence-only node")

        # Empty metadata (XEP-0084 §4.5: no avatar) removes the PHOTO.
        await alice["xep_0084"].stop(timeout=WAIT)
        await self.wait_vcard_photo(bob, a_jid, None, "the avatar withdrawn")

    async def test_vcard_photo_becomes_pep_avatar(self):
        """XEP-0398 §3 vCard -> PEP: data item by SHA-1, metadata notified to a contact."""
        a_jid, a_pw = self.account("v2pa")
        b_jid, b_pw = self.account("v2pb")
        alice = await self.pep_client(a_jid, a_pw, "phone", plugins=VCARD)
        bob = await self.pep_client(b_jid, b_pw, "desk", plugins=AVATAR + VCARD)
        await self.contact_of(alice, bob)

        image, sha1, b64 = new_image()
        vcard = alice["xep_0054"].make_vcard()
        vcard["FN"] = "Alice Example"
        vcard["PHOTO"]["TYPE"] = "image/png"
        vcard["PHOTO"]["BINVAL"] = image
        await alice["xep_0054"].publish_vcard(vcard, timeout=WAIT)

        msg = await bob.events.wait_for(published(a_jid, NS_AVATAR_METADATA), "the metadata event of the vCard photo")
        item = event_item(msg, NS_AVATAR_METADATA, sha1)
        self.assertIsNotNone(item, f"metadata item id is the SHA-1 hex of the image: {msg}")
        infos = item.findall(f"{{{NS_AVATAR_METADATA}}}metadata/{{{NS_AVATAR_METADATA}}}info")
        self.assertEqual([(i.get("id"), i.get("bytes"), i.get("type")) for i in infos],
                         [(sha1, str(len(image)), "image/png")], str(msg))

        got = await bob["xep_0060"].get_item(a_jid, NS_AVATAR_DATA, sha1, timeout=WAIT)
        items = result_items(got, NS_AVATAR_DATA)
        self.assertEqual(list(items), [sha1], str(got))
        self.assertEqual(items[sha1].tag, f"{{{NS_AVATAR_DATA}}}data")
        self.assertEqual(without_space(items[sha1].text), b64)
        # The vCard itself is as it was set.
        self.assertEqual(await self.vcard_photo(bob, a_jid), ("image/png", b64))

    async def test_presence_carries_the_avatar_hash(self):
        """XEP-0398 §4 / XEP-0153 §3.2: the server fills in the hash; account feature (§2)."""
        a_jid, a_pw = self.account("hsha")
        b_jid, b_pw = self.account("hshb")
        c_jid, c_pw = self.account("hshc")
        alice = await self.pep_client(a_jid, a_pw, "phone", plugins=AVATAR)
        bob = await self.pep_client(b_jid, b_pw, "desk")
        carol = await self.pep_client(c_jid, c_pw, "desk")
        await self.contact_of(alice, bob)
        await subscribe_and_approve(self, alice, bob, "both", "both")

        self.assertIn(NS_CONVERSION, await self.own_features(alice))

        # No avatar: nothing added.
        bob.send_presence(pstatus="bob without avatar")
        p = await alice.presences.wait_for(presence_with_status(bob.boundjid.full, "bob without avatar"),
                                           "bob's presence")
        self.assertEqual(photo_state(p), "no x", f"an account without avatar gets no <x/>: {p}")

        image, sha1, _ = new_image()
        await alice["xep_0084"].publish_avatar(image, timeout=WAIT)
        await alice["xep_0084"].publish_avatar_metadata(info(image), timeout=WAIT)

        # The client says nothing about avatars: the server adds the hash.
        alice.send_presence(pstatus="plain")
        p = await bob.presences.wait_for(presence_with_status(alice.boundjid.full, "plain"), "alice's plain presence")
        self.assertEqual(photo_state(p), sha1, str(p))

        # <x/> without <photo/> ("not ready", XEP-0153 §4.2) is filled in (XEP-0398 §4).
        pres = alice.make_presence(pstatus="not ready")
        pres.append(ET.Element(f"{{{NS_VCARD_UPDATE}}}x"))
        pres.send()
        p = await bob.presences.wait_for(presence_with_status(alice.boundjid.full, "not ready"), "alice's <x/> presence")
        self.assertEqual(photo_state(p), sha1, str(p))

        # An empty <photo/> ("no avatar shown") is the client's word: left empty.
        pres = alice.make_presence(pstatus="empty photo")
        x = ET.Element(f"{{{NS_VCARD_UPDATE}}}x")
        ET.SubElement(x, f"{{{NS_VCARD_UPDATE}}}photo")
        pres.append(x)
        pres.send()
        p = await bob.presences.wait_for(presence_with_status(alice.boundjid.full, "empty photo"),
                                         "alice's empty-photo presence")
        self.assertEqual(photo_state(p), "", str(p))

        # Directed presence too (XEP-0398 §4), to someone without a subscription.
        alice.send_presence(pto=c_jid, pstatus="directed")
        p = await carol.presences.wait_for(presence_with_status(alice.boundjid.full, "directed"),
                                           "alice's directed presence")
        self.assertEqual(photo_state(p), sha1, str(p))


class BookmarksTest(ProfileTestCase):

    async def test_xep0402_publish_legacy_view_retract_and_access(self):
        """XEP-0402 §3 publish with its options and §4.2 retract, seen by another resource
        and through the XEP-0048 view (§5.3 #compat); whitelist access."""
        a_jid, a_pw = self.account("bk4a")
        b_jid, b_pw = self.account("bk4b")
        phone = await self.pep_client(a_jid, a_pw, "phone", plugins=LEGACY, notify=(NS_BOOKMARKS,))
        laptop = await self.pep_client(a_jid, a_pw, "laptop", plugins=LEGACY, notify=(NS_BOOKMARKS,))
        bob = await self.pep_client(b_jid, b_pw, "desk", notify=(NS_BOOKMARKS,))

        self.assertIn(f"{NS_BOOKMARKS}#compat", await self.own_features(phone))

        team = room("team")
        await self.publish_bookmark(phone, team, "The Team", True, "ally")
        for c in (laptop, phone):
            msg = await c.events.wait_for(published(a_jid, NS_BOOKMARKS, team), f"the bookmark event at {c.boundjid}")
            self.assertEqual(bookmark_402(event_payload(msg, NS_BOOKMARKS, team)),
                             ("The Team", True, "ally"), str(msg))

        confs, _ = await self.legacy_get(laptop)
        self.assertEqual(confs, {team: ("The Team", True, "ally")})

        # Whitelist: another account may not read it (XEP-0060 §6.5.9 closed node).
        with self.assertRaises(IqError) as caught:
            await bob["xep_0060"].get_items(a_jid, NS_BOOKMARKS, timeout=WAIT)
        self.assertEqual(error_of(caught.exception), ("not-allowed", "closed-node"), str(caught.exception.iq))
        await bob.events.assert_none(any_event(a_jid, NS_BOOKMARKS), "a bookmark event at another account",
                                     within=0.1)

        await phone["xep_0060"].retract(None, NS_BOOKMARKS, team, notify=True, timeout=WAIT)
        await laptop.events.wait_for(retracted(a_jid, NS_BOOKMARKS, team), "the retract event at the laptop")
        confs, _ = await self.legacy_get(laptop)
        self.assertEqual(confs, {}, "a retracted bookmark leaves the XEP-0048 view")
        self.assertEqual(await self.bookmark_items(phone), {})

    async def test_legacy_set_becomes_items_and_notifies_only_changes(self):
        """XEP-0402 §5.3.2: a private-storage set updates the items, notifying what changed."""
        a_jid, a_pw = self.account("bklg")
        legacy = await self.pep_client(a_jid, a_pw, "old", plugins=LEGACY)
        modern = await self.pep_client(a_jid, a_pw, "new", notify=(NS_BOOKMARKS,))
        gone, changed, kept = room("gone"), room("changed"), room("kept")
        docs = ("https://docs.example.org/", "Docs")

        await self.legacy_set(legacy, [(gone, "Gone", True, "al"), (changed, "Before", False, "al"),
                                       (kept, "Kept", True, "ally")], [docs])
        for r in (gone, changed, kept):
            await modern.events.wait_for(published(a_jid, NS_BOOKMARKS, r), f"the publish event of {r}")
        self.assertEqual(await self.bookmark_items(modern),
                         {gone: ("Gone", True, "al"), changed: ("Before", False, "al"), kept: ("Kept", True, "ally")})

        await self.legacy_set(legacy, [(changed, "After", True, "al"), (kept, "Kept", True, "ally")], [docs])
        await modern.events.wait_for(retracted(a_jid, NS_BOOKMARKS, gone), f"the retract event of {gone}")
        msg = await modern.events.wait_for(published(a_jid, NS_BOOKMARKS, changed), f"the publish event of {changed}")
        self.assertEqual(bookmark_402(event_payload(msg, NS_BOOKMARKS, changed)),
                         ("After", True, "al"), str(msg))
        await modern.events.assert_none(published(a_jid, NS_BOOKMARKS, kept), f"an event for the unchanged {kept}")
        self.assertEqual(await self.bookmark_items(modern),
                         {changed: ("After", True, "al"), kept: ("Kept", True, "ally")})

        confs, urls = await self.legacy_get(legacy)
        self.assertEqual(confs, {changed: ("After", True, "al"), kept: ("Kept", True, "ally")})
        self.assertEqual(urls, [docs], "the <url/> bookmark, which XEP-0402 cannot hold, is kept")

    async def test_legacy_resave_leaves_unchanged_xep0402_bookmarks_alone(self):
        """XEP-0402 §5.3.2 (SHOULD NOT notify unchanged items): a legacy client saving back the
        list it read, plus one room, changes nothing of what a XEP-0402 client saved, its
        <extensions/> included, and notifies only the added room."""
        a_jid, a_pw = self.account("bkrs")
        modern = await self.pep_client(a_jid, a_pw, "new", notify=(NS_BOOKMARKS,))
        legacy = await self.pep_client(a_jid, a_pw, "old", plugins=LEGACY)
        plain, extended, added = room("plain"), room("extended"), room("added")
        state = ET.Element("{urn:example:client-state}state", {"pinned": "true"})
        await self.publish_bookmark(modern, plain, "Plain", False, "al")
        await self.publish_bookmark(modern, extended, "Extended", True, "al", extensions=state)
        for r in (plain, extended):
            await modern.events.wait_for(published(a_jid, NS_BOOKMARKS, r), f"the publish event of {r}")

        confs, _ = await self.legacy_get(legacy)
        self.assertEqual(confs, {plain: ("Plain", False, "al"), extended: ("Extended", True, "al")})
        await self.legacy_set(legacy, [(r, *v) for r, v in confs.items()] + [(added, "Added", True, "al")])
        await modern.events.wait_for(published(a_jid, NS_BOOKMARKS, added), f"the publish event of {added}")
        await modern.events.assert_none(lambda m: published(a_jid, NS_BOOKMARKS, plain)(m)
                                        or published(a_jid, NS_BOOKMARKS, extended)(m),
                                        "an event for a bookmark the legacy client did not change")

        iq = await modern["xep_0060"].get_items(None, NS_BOOKMARKS, timeout=WAIT)
        items = result_items(iq, NS_BOOKMARKS)
        self.assertEqual(set(items), {plain, extended, added})
        kept = items[extended].find(f"{{{NS_BOOKMARKS}}}extensions/{{urn:example:client-state}}state")
        self.assertIsNotNone(kept, f"the <extensions/> of an unchanged bookmark are kept: {iq}")

    async def test_legacy_bookmarks_are_in_the_node_after_the_first_xep0402_publish(self):
        """XEP-0402 §5.3: moving to XEP-0402 does not hide what was saved the old way."""
        # Saved through XEP-0049 on this server.
        a_jid, a_pw = self.account("bkmg")
        legacy = await self.pep_client(a_jid, a_pw, "old", plugins=LEGACY)
        old1, old2, new = room("old1"), room("old2"), room("new")
        await self.legacy_set(legacy, [(old1, "Old one", True, "al"), (old2, "Old two", False, "al")],
                              [("https://example.org/", "Example")])
        modern = await self.pep_client(a_jid, a_pw, "new", notify=(NS_BOOKMARKS,))
        await self.publish_bookmark(modern, new, "New", True, "ally")
        self.assertEqual(await self.bookmark_items(modern),
                         {old1: ("Old one", True, "al"), old2: ("Old two", False, "al"), new: ("New", True, "ally")})
        confs, urls = await self.legacy_get(legacy)
        self.assertEqual(set(confs), {old1, old2, new})
        self.assertEqual(urls, [("https://example.org/", "Example")])

        # Saved by the server before it had PEP: a private_storage row and no node. (The row
        # is written as the schema v7 table keeps it: key 'NAMESPACE NAME', the element.)
        b_jid, b_pw = self.account("bkup")
        user = b_jid.split("@", 1)[0]
        old3 = room("old3")
        stored = (f"<storage xmlns='storage:bookmarks'><conference jid='{old3}' name='From before' autojoin='true'>"
                  f"<nick>bee</nick></conference><url url='https://example.net/' name='Net'/></storage>")
        self.server.sql("INSERT INTO private_storage (username, key, xml) VALUES (?, ?, ?)",
                        (user, "storage:bookmarks storage", stored))
        modern = await self.pep_client(b_jid, b_pw, "new", plugins=LEGACY, notify=(NS_BOOKMARKS,))
        new2 = room("new2")
        await self.publish_bookmark(modern, new2, "New", False, "bee")
        self.assertEqual(await self.bookmark_items(modern),
                         {old3: ("From before", True, "bee"), new2: ("New", False, "bee")})
        confs, urls = await self.legacy_get(modern)
        self.assertEqual(confs, {old3: ("From before", True, "bee"), new2: ("New", False, "bee")})
        self.assertEqual(urls, [("https://example.net/", "Net")])


class ProfileRestartTest(ProfileTestCase):
    """One test: it restarts the class's server."""

    async def test_bookmarks_and_avatar_survive_a_graceful_restart(self):
        a_jid, a_pw = self.account("rsta")
        b_jid, b_pw = self.account("rstb")
        alice = await self.pep_client(a_jid, a_pw, "phone", plugins=AVATAR + VCARD + LEGACY, notify=(NS_BOOKMARKS,))
        bob = await self.pep_client(b_jid, b_pw, "desk", plugins=AVATAR + VCARD)
        await self.contact_of(alice, bob)

        legacy_room, new_room = room("legacy"), room("modern")
        link = ("https://example.org/wiki", "Wiki")
        await self.legacy_set(alice, [(legacy_room, "Legacy", True, "al")], [link])
        await self.publish_bookmark(alice, new_room, "Modern", False, "ally")
        image, sha1, b64 = new_image()
        await alice["xep_0084"].publish_avatar(
            image, options=form(NS_PUBLISH_OPTIONS, {"pubsub#access_model": "open"}), timeout=WAIT)
        await alice["xep_0084"].publish_avatar_metadata(info(image), timeout=WAIT)
        await bob.events.wait_for(published(a_jid, NS_AVATAR_METADATA, sha1), "the metadata event before the restart")
        await self.wait_vcard_photo(bob, a_jid, ("image/png", b64), "converted before the restart")
        bookmarks = {legacy_room: ("Legacy", True, "al"), new_room: ("Modern", False, "ally")}

        await asyncio.gather(alice.close(), bob.close())
        self.server.stop_keeping_data()
        self.server.start()

        # bob first: on his initial presence he gets alice's last metadata (XEP-0163 §4.3.4).
        bob = await self.pep_client(b_jid, b_pw, "desk", plugins=AVATAR + VCARD)
        await bob.events.wait_for(published(a_jid, NS_AVATAR_METADATA, sha1), "alice's metadata after the restart")
        got = await bob["xep_0084"].retrieve_avatar(a_jid, sha1, timeout=WAIT)
        self.assertEqual([i["avatar_data"]["value"] for i in got["pubsub"]["items"]], [image])
        self.assertEqual(await self.vcard_photo(bob, a_jid), ("image/png", b64))

        alice = await self.pep_client(a_jid, a_pw, "laptop", plugins=LEGACY, notify=(NS_BOOKMARKS,))
        p = await bob.presences.wait_for(lambda p: str(p["from"]) == alice.boundjid.full and p["type"] == "available",
                                         "alice's presence after the restart")
        self.assertEqual(photo_state(p), sha1, f"the avatar hash after the restart: {p}")
        self.assertEqual(await self.bookmark_items(alice), bookmarks)
        confs, urls = await self.legacy_get(alice)
        self.assertEqual(confs, bookmarks)
        self.assertEqual(urls, [link])


if __name__ == "__main__":
    unittest.main()
