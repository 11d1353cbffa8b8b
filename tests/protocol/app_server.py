"""A small XEP-0357 push app server for the protocol tests, as an XEP-0114 component.

It is slixmpp's ComponentXMPP (Debian python3-slixmpp), run on its own asyncio loop in a
background thread so that synchronous tests can use it next to raw client streams. Every
notification it receives (an <iq type='set'> with a pubsub <publish/>, XEP-0357 §7) is
recorded as a Notification and answered with a result, or with an error for a node the
test told it to refuse (as a real app server does when a device unregistered).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Optional

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUSH = "urn:xmpp:push:0"
NS_DATA = "jabber:x:data"

logging.getLogger("slixmpp").setLevel(logging.CRITICAL)


@dataclass
class Notification:
    sender: str        # the iq's 'from': the user's bare JID
    node: str          # the publish node: the device's registration
    fields: dict       # the urn:xmpp:push:summary form, var -> value
    options: dict = field(default_factory=dict)  # publish-options form, var -> value
    xml: str = ""


def _form_fields(form: Optional[ET.Element]) -> dict:
    out = {}
    if form is None:
        return out
    for f in form.findall(f"{{{NS_DATA}}}field"):
        out[f.get("var")] = f.findtext(f"{{{NS_DATA}}}value") or ""
    return out


class AppServer:
    """connect() to a server's component port, then next() for each notification."""

    def __init__(self, domain: str, secret: str):
        self.domain = domain
        self.secret = secret
        self.refuse: dict[str, tuple[str, str]] = {}  # node -> (error type, condition)
        self._notifications: "queue.Queue[Notification]" = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="app-server", daemon=True)
        self._thread.start()
        self._xmpp: Optional[slixmpp.ComponentXMPP] = None

    # -- control, from the test's thread -------------------------------------

    def connect(self, host: str, port: int, timeout: float = 15.0) -> None:
        asyncio.run_coroutine_threadsafe(self._connect(host, port), self._loop).result(timeout)

    def disconnect(self, timeout: float = 10.0) -> None:
        if self._xmpp is not None:
            asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(timeout)

    def close(self) -> None:
        """Disconnects and ends the thread; safe to call twice."""
        if self._loop.is_closed():
            return
        try:
            self.disconnect()
        except Exception:  # noqa: BLE001 - best effort at cleanup
            pass
        # slixmpp leaves tasks running (its filter queue); end them on the loop, or they
        # complain when the loop is collected.
        try:
            asyncio.run_coroutine_threadsafe(self._cancel_tasks(), self._loop).result(5)
        except Exception:  # noqa: BLE001 - best effort at cleanup
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def next(self, timeout: float = 10.0) -> Notification:
        try:
            return self._notifications.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the app server got no notification within {timeout}s") from None

    def none_within(self, seconds: float) -> Optional[Notification]:
        """The first notification that arrives within `seconds`, or None."""
        try:
            return self._notifications.get(timeout=seconds)
        except queue.Empty:
            return None

    # -- on the loop -----------------------------------------------------------

    async def _connect(self, host: str, port: int) -> None:
        xmpp = slixmpp.ComponentXMPP(self.domain, self.secret, host, port)
        started = asyncio.Event()
        xmpp.add_event_handler("session_start", lambda _: started.set())
        xmpp.register_handler(Callback(
            "push notification",
            MatchXPath(f"{{{xmpp.default_ns}}}iq/{{{NS_PUBSUB}}}pubsub"),
            self._on_publish))
        xmpp.connect()
        await asyncio.wait_for(started.wait(), 10)
        self._xmpp = xmpp

    @staticmethod
    async def _cancel_tasks() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _disconnect(self) -> None:
        xmpp, self._xmpp = self._xmpp, None
        if xmpp is not None:
            await xmpp.disconnect(wait=1.0)

    def _on_publish(self, iq) -> None:
        pubsub = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub")
        publish = pubsub.find(f"{{{NS_PUBSUB}}}publish") if pubsub is not None else None
        if iq["type"] != "set" or publish is None:
            return
        form = publish.find(f"{{{NS_PUBSUB}}}item/{{{NS_PUSH}}}notification/{{{NS_DATA}}}x")
        options = pubsub.find(f"{{{NS_PUBSUB}}}publish-options/{{{NS_DATA}}}x")
        node = publish.get("node", "")
        self._notifications.put(Notification(sender=str(iq["from"]), node=node, fields=_form_fields(form),
                                             options=_form_fields(options),
                                             xml=ET.tostring(iq.xml, encoding="unicode")))
        reply = iq.reply(clear=True)
        if node in self.refuse:
            error_type, condition = self.refuse[node]
            reply["type"] = "error"
            reply["error"]["type"] = error_type
            reply["error"]["condition"] = condition
        reply.send()
