"""Protocol test: XEP-0357 push notifications through a real XEP-0114 app server.

The app server is tests/protocol/app_server.py: slixmpp's ComponentXMPP connected to the
component port. Clients are raw streams.

  PushTest
    enable       disco#info on the account lists urn:xmpp:push:0; <enable/> with
                 publish-options is answered once stored; a missing node is <bad-request/>,
                 an app server the server cannot reach <remote-server-not-found/>
    offline      a device that logged out gets a notification per message, with the
                 urn:xmpp:push:summary form (message-count) and its publish-options, from
                 the user's bare JID; the message itself waits in offline storage
    detached     a device whose stream-management session is detached gets one
    inactive     an inactive device (XEP-0352) gets one, and the message too; once active, none
    disable      <disable/> stops them
    refusal      an app server answering with a 'cancel' error loses the registration
  PushRestartTest
    restart      registrations are stored: after a graceful restart and after kill -9, an
                 offline device still gets its notification
"""

from __future__ import annotations

import unittest

from app_server import AppServer
from harness import (DOMAIN, Server, ServerTestCase, local, login_plain, new_password, stanza_error, to_xml,
                     unique_user)

SERVICE = "push.localhost"
SECRET = "push-app-server-secret-0123"
NS_PUSH = "urn:xmpp:push:0"
NS_SM = "urn:xmpp:sm:3"
NS_CSI = "urn:xmpp:csi:0"
QUIET = 1.5  # how long "no notification" is watched

PUBLISH_OPTIONS = ("<x xmlns='jabber:x:data' type='submit'>"
                   "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
                   "<field var='secret'><value>device-token-42</value></field></x>")

CONFIG = {"components": {"port": 0, "secrets": [f"{SERVICE}={SECRET}"]}}


def enable_iq(node: str, *, jid: str = SERVICE, options: str = "", iq_id: str = "push1") -> str:
    return (f"<iq type='set' id='{iq_id}'><enable xmlns='{NS_PUSH}' jid='{jid}' node='{node}'>"
            f"{options}</enable></iq>")


def chat(to: str, body: str, mid: str) -> str:
    return f"<message to='{to}' type='chat' id='{mid}'><body>{body}</body></message>"


class PushCase:
    """Shared steps; mixed into test classes that have self.server."""

    def app_server(self) -> AppServer:
        app = AppServer(SERVICE, SECRET)
        self.addCleanup(app.close)
        app.connect(*self.server.components)
        return app

    def login(self, user, password, resource):
        stream, full = login_plain(self.server, user, password, resource=resource)
        self.addCleanup(stream.abort)
        return stream, full

    def ask(self, stream, iq: str, iq_id: str):
        stream.send(iq)
        return stream.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == iq_id)

    def enable(self, stream, node: str, options: str = ""):
        reply = self.ask(stream, enable_iq(node, options=options), "push1")
        self.assertEqual(reply.get("type"), "result", to_xml(reply))

    def account(self, prefix):
        user = unique_user(prefix)
        password = new_password()
        self.server.add_user(user, password)
        return user, f"{user}@{DOMAIN}", password

    def sender(self):
        user, bare, password = self.account("pushb")
        stream, full = self.login(user, password, "desk")
        return stream


class PushTest(PushCase, ServerTestCase):
    SERVER_CONFIG = CONFIG

    def test_enable_is_advertised_and_checked(self):
        user, bare, password = self.account("pushe")
        phone, _ = self.login(user, password, "phone")
        info = self.ask(phone, f"<iq type='get' to='{bare}' id='d1'>"
                               "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>", "d1")
        features = [f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")]
        self.assertIn(NS_PUSH, features)
        missing = self.ask(phone, f"<iq type='set' id='b1'><enable xmlns='{NS_PUSH}' jid='{SERVICE}'/></iq>", "b1")
        self.assertEqual((missing.get("type"), stanza_error(missing)), ("error", "bad-request"), to_xml(missing))
        far = self.ask(phone, enable_iq("n", jid="push.example.net", iq_id="b2"), "b2")
        self.assertEqual((far.get("type"), stanza_error(far)), ("error", "remote-server-not-found"), to_xml(far))
        self.enable(phone, "node-e")

    def test_offline_device_is_notified_with_summary_and_options(self):
        app = self.app_server()
        user, bare, password = self.account("pusho")
        phone, _ = self.login(user, password, "phone")
        self.enable(phone, "node-offline", PUBLISH_OPTIONS)
        phone.close()
        bob = self.sender()
        bob.send(chat(bare, "are you there?", "o1"))
        n = app.next()
        self.assertEqual(n.sender, bare)
        self.assertEqual(n.node, "node-offline")
        self.assertEqual(n.fields.get("FORM_TYPE"), "urn:xmpp:push:summary", n.xml)
        self.assertEqual(n.fields.get("message-count"), "1", n.xml)
        self.assertNotIn("last-message-body", n.fields, "push.include_body is off by default")
        self.assertEqual(n.options.get("secret"), "device-token-42", n.xml)
        bob.send(chat(bare, "hello?", "o2"))
        self.assertEqual(app.next().fields.get("message-count"), "2")
        # The phone wakes up and finds both messages.
        phone, _ = self.login(user, password, "phone")
        phone.send("<presence/>")
        bodies = [phone.recv_until(lambda e: local(e.tag) == "message").findtext("{jabber:client}body")
                  for _ in range(2)]
        self.assertEqual(bodies, ["are you there?", "hello?"])
        self.assertIsNone(app.none_within(QUIET), "an awake device is not notified")

    def test_detached_device_is_notified(self):
        app = self.app_server()
        user, bare, password = self.account("pushd")
        phone, _ = self.login(user, password, "phone")
        phone.send("<presence/>")
        phone.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        enabled = phone.recv_until(lambda e: e.tag == f"{{{NS_SM}}}enabled")
        self.assertEqual(enabled.get("resume"), "true")
        self.enable(phone, "node-detached")
        since = self.server.stderr_offset()
        phone.abort()  # the network went away: the session waits to be resumed
        self.server.wait_for_log(r"connection lost; resumable", since=since)
        bob = self.sender()
        bob.send(chat(bare, "wake up", "d1"))
        n = app.next()
        self.assertEqual((n.node, n.fields.get("message-count")), ("node-detached", "1"), n.xml)

    def test_inactive_device_is_notified_until_active(self):
        app = self.app_server()
        user, bare, password = self.account("pushi")
        phone, full = self.login(user, password, "phone")
        phone.send("<presence/>")
        self.enable(phone, "node-inactive")
        phone.send(f"<inactive xmlns='{NS_CSI}'/>")
        self.ask(phone, "<iq type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>", "sync")
        bob = self.sender()
        bob.send(chat(full, "in your pocket", "i1"))
        n = app.next()
        self.assertEqual(n.node, "node-inactive")
        got = phone.recv_until(lambda e: local(e.tag) == "message")
        self.assertEqual(got.findtext("{jabber:client}body"), "in your pocket", "the message still goes out")
        phone.send(f"<active xmlns='{NS_CSI}'/>")
        self.ask(phone, "<iq type='get' id='sync2'><ping xmlns='urn:xmpp:ping'/></iq>", "sync2")
        bob.send(chat(full, "on screen", "i2"))
        phone.recv_until(lambda e: local(e.tag) == "message")
        self.assertIsNone(app.none_within(QUIET), "an active device is not notified")

    def test_disable_stops_notifications(self):
        app = self.app_server()
        user, bare, password = self.account("pushx")
        phone, _ = self.login(user, password, "phone")
        self.enable(phone, "node-x")
        reply = self.ask(phone, f"<iq type='set' id='x1'><disable xmlns='{NS_PUSH}' jid='{SERVICE}' node='node-x'/></iq>",
                         "x1")
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        phone.close()
        bob = self.sender()
        bob.send(chat(bare, "nobody wakes", "x1"))
        self.assertIsNone(app.none_within(QUIET))

    def test_app_server_refusal_removes_the_registration(self):
        app = self.app_server()
        app.refuse["node-gone"] = ("cancel", "item-not-found")
        user, bare, password = self.account("pushr")
        phone, _ = self.login(user, password, "phone")
        self.enable(phone, "node-gone")
        phone.close()
        bob = self.sender()
        bob.send(chat(bare, "first", "r1"))
        self.assertEqual(app.next().node, "node-gone")
        self.server.wait_for_log(r"refused a notification for " + bare)
        bob.send(chat(bare, "second", "r2"))
        self.assertIsNone(app.none_within(QUIET), "the registration is gone")


class PushRestartTest(PushCase, unittest.TestCase):
    def setUp(self):
        self.server = Server(config=CONFIG, name="pushrestart")
        self.server.start()
        self.addCleanup(self._stop)

    def _stop(self):
        if self.server.is_running():
            self.server.stop()

    def test_registrations_survive_restarts(self):
        user, bare, password = self.account("pushs")
        phone, _ = self.login(user, password, "phone")
        self.enable(phone, "node-survives", PUBLISH_OPTIONS)
        phone.close()
        for restart in ("graceful", "kill -9"):
            if restart == "graceful":
                self.server.stop_keeping_data()
            else:
                self.server.kill()
            self.server.start()
            app = self.app_server()
            bob = self.sender()
            bob.send(chat(bare, f"after a {restart} restart", "s1"))
            n = app.next()
            self.assertEqual(n.node, "node-survives", restart)
            self.assertEqual(n.options.get("secret"), "device-token-42", restart)
            app.close()
            bob.abort()


if __name__ == "__main__":
    unittest.main()
