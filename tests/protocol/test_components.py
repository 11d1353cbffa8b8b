"""Protocol test: XEP-0114 external components, over raw sockets.

  ComponentTest
    handshake    the server answers a jabber:component:accept header with a fresh stream id;
                 SHA-1(id + secret) in hex is accepted with <handshake/>; a wrong value gets
                 <not-authorized/>, a domain with no secret <host-unknown/>, a jabber:client
                 header <invalid-namespace/>
    one route    a second connection for a domain already served gets <conflict/>, and the
                 first keeps working
    routing      a client's message and IQ reach the component with the client's full JID;
                 the component's message, IQ result and ping reach the client and the server;
                 a message from the component for an offline user waits in offline storage
    checks       a stanza from another domain is <invalid-from/>; one without 'to'
                 <improper-addressing/>
    gone         while no component serves the domain, a client's message bounces with
                 <remote-server-not-found/>
  ComponentListenerTest
    no secrets   no listener at all (nothing on the ready line)
    shutdown     SIGTERM closes component streams with <system-shutdown/>
"""

from __future__ import annotations

import time
import unittest

from harness import (DOMAIN, NS_COMPONENT, Server, ServerTestCase,
                     component_handshake, connect_component, local, login_plain, open_component,
                     stanza_error, stream_error, to_xml)

SERVICE = "bot.localhost"
SECRET = "component-secret-0123456789"
OTHER = "other.localhost"
OTHER_SECRET = "another-secret-abcdefghij"


class ComponentTest(ServerTestCase):
    SERVER_CONFIG = {"components": {"port": 0, "secrets": [f"{SERVICE}={SECRET}", f"{OTHER}={OTHER_SECRET}"]}}

    def component(self, domain=SERVICE, secret=SECRET):
        stream = connect_component(self.server, domain, secret)
        self.addCleanup(stream.abort)
        return stream

    def user(self, prefix="comp", resource="laptop"):
        user, bare, password = self.new_account(prefix)
        stream, full = login_plain(self.server, user, password, resource=resource)
        self.addCleanup(stream.abort)
        return stream, bare, full

    def expect_stream_error(self, stream, condition):
        elem = stream.recv_until(lambda e: local(e.tag) == "error")
        self.assertEqual(stream_error(elem), condition, to_xml(elem))
        stream.wait_closed()
        self.assertTrue(stream.closed)

    # -- handshake ------------------------------------------------------------

    def test_handshake_accepted_with_a_fresh_stream_id(self):
        first = open_component(self.server, SERVICE)
        self.addCleanup(first.abort)
        second = open_component(self.server, OTHER)
        self.addCleanup(second.abort)
        for s, domain in ((first, SERVICE), (second, OTHER)):
            self.assertEqual(s.stream_attrs.get("from"), domain)
            self.assertGreaterEqual(len(s.stream_attrs.get("id", "")), 16, s.stream_attrs)
        self.assertNotEqual(first.stream_attrs["id"], second.stream_attrs["id"])
        # Upper-case hex is the same digest.
        first.send(f"<handshake>{component_handshake(first.stream_attrs['id'], SECRET).upper()}</handshake>")
        self.assertEqual(first.recv().tag, f"{{{NS_COMPONENT}}}handshake")

    def test_wrong_secret_is_not_authorized(self):
        s = open_component(self.server, SERVICE)
        self.addCleanup(s.abort)
        s.send(f"<handshake>{component_handshake(s.stream_attrs['id'], 'not-the-secret-at-all')}</handshake>")
        self.expect_stream_error(s, "not-authorized")
        self.component()  # the domain is still free

    def test_unknown_domain_and_wrong_namespace(self):
        s = open_component(self.server, "stranger.localhost")
        self.addCleanup(s.abort)
        self.expect_stream_error(s, "host-unknown")
        s = open_component(self.server, SERVICE, ns="jabber:client")
        self.addCleanup(s.abort)
        self.expect_stream_error(s, "invalid-namespace")

    def test_second_connection_for_a_domain_is_a_conflict(self):
        first = self.component(OTHER, OTHER_SECRET)
        second = open_component(self.server, OTHER)
        self.addCleanup(second.abort)
        second.send(f"<handshake>{component_handshake(second.stream_attrs['id'], OTHER_SECRET)}</handshake>")
        self.expect_stream_error(second, "conflict")
        # The first still serves the domain.
        client, bare, full = self.user("compc")
        client.send(f"<message to='x@{OTHER}' id='c1' type='chat'><body>still there?</body></message>")
        got = first.recv_until(lambda e: local(e.tag) == "message")
        self.assertEqual(got.get("from"), full)
        first.close()

    # -- routing ----------------------------------------------------------------

    def test_stanzas_flow_both_ways(self):
        bot = self.component()
        client, bare, full = self.user("compr")
        client.send("<presence/>")
        client.send(f"<message to='echo@{SERVICE}' id='m1' type='chat'><body>hello bot</body></message>")
        got = bot.recv_until(lambda e: local(e.tag) == "message")
        self.assertEqual(got.tag, f"{{{NS_COMPONENT}}}message", "in the component namespace")
        self.assertEqual(got.get("from"), full)
        self.assertEqual(got.get("to"), f"echo@{SERVICE}")
        self.assertEqual(got.findtext(f"{{{NS_COMPONENT}}}body"), "hello bot")

        bot.send(f"<message from='echo@{SERVICE}' to='{full}' id='r1' type='chat'><body>hello human</body></message>")
        back = client.recv_until(lambda e: local(e.tag) == "message")
        self.assertEqual(back.get("from"), f"echo@{SERVICE}")
        self.assertEqual(back.findtext("{jabber:client}body"), "hello human")

        # A client's IQ to the component, and the component's answer.
        client.send(f"<iq type='get' to='{SERVICE}' id='q1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        q = bot.recv_until(lambda e: local(e.tag) == "iq")
        self.assertEqual((q.get("type"), q.get("id"), q.get("from")), ("get", "q1", full))
        bot.send(f"<iq type='result' from='{SERVICE}' to='{full}' id='q1'>"
                 "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='component' type='generic'/>"
                 "</query></iq>")
        r = client.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == "q1")
        self.assertEqual((r.get("type"), r.get("from")), ("result", SERVICE), to_xml(r))

        # The component asks the server.
        bot.send(f"<iq type='get' from='{SERVICE}' to='{DOMAIN}' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        pong = bot.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == "p1")
        self.assertEqual(pong.get("type"), "result", to_xml(pong))

    def test_message_for_an_offline_user_waits(self):
        bot = self.component()
        user, bare, password = self.new_account("compo")
        bot.send(f"<message from='news@{SERVICE}' to='{bare}' id='o1' type='chat'><body>while you were out</body></message>")
        # The component's stream is processed in order: a ping answered means the message was handled.
        bot.send(f"<iq type='get' from='{SERVICE}' to='{DOMAIN}' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>")
        bot.recv_until(lambda e: e.get("id") == "sync")
        time.sleep(0.3)  # the offline write is asynchronous; the login below reads it
        client, full = login_plain(self.server, user, password, resource="later")
        self.addCleanup(client.abort)
        client.send("<presence/>")
        got = client.recv_until(lambda e: local(e.tag) == "message")
        self.assertEqual(got.get("from"), f"news@{SERVICE}")
        self.assertEqual(got.findtext("{jabber:client}body"), "while you were out")
        self.assertIsNotNone(got.find("{urn:xmpp:delay}delay"), to_xml(got))

    def test_stanza_from_another_domain_is_invalid_from(self):
        bot = self.component()
        client, bare, full = self.user("compf")
        bot.send(f"<message from='mallory@{DOMAIN}' to='{full}'><body>forged</body></message>")
        self.expect_stream_error(bot, "invalid-from")
        with self.assertRaises(TimeoutError):
            client.recv_until(lambda e: local(e.tag) == "message", timeout=1.0)

    def test_stanza_without_to_is_improper_addressing(self):
        bot = self.component()
        bot.send(f"<message from='{SERVICE}'><body>to whom?</body></message>")
        self.expect_stream_error(bot, "improper-addressing")

    def test_message_for_a_component_that_is_not_connected_bounces(self):
        client, bare, full = self.user("compg")
        client.send(f"<message to='x@{SERVICE}' id='g1' type='chat'><body>anyone?</body></message>")
        err = client.recv_until(lambda e: local(e.tag) == "message" and e.get("type") == "error")
        self.assertEqual(err.get("id"), "g1")
        self.assertEqual(stanza_error(err), "remote-server-not-found", to_xml(err))
        # And after a component came and went.
        bot = self.component()
        bot.close()
        time.sleep(0.3)
        client.send(f"<message to='x@{SERVICE}' id='g2' type='chat'><body>gone?</body></message>")
        err = client.recv_until(lambda e: local(e.tag) == "message" and e.get("type") == "error")
        self.assertEqual(err.get("id"), "g2")
        self.assertEqual(stanza_error(err), "remote-server-not-found", to_xml(err))


class ComponentListenerTest(unittest.TestCase):
    def test_no_listener_without_secrets(self):
        server = Server(name="nocomponents")
        server.start()
        try:
            self.assertNotIn("components", server.listeners, server.stdout_lines[:1])
        finally:
            server.stop()

    def test_shutdown_closes_components_with_system_shutdown(self):
        server = Server(config={"components": {"port": 0, "secrets": [f"{SERVICE}={SECRET}"]}}, name="compstop")
        server.start()
        try:
            bot = connect_component(server, SERVICE, SECRET)
            server.terminate()
            elem = bot.recv_until(lambda e: local(e.tag) == "error")
            self.assertEqual(stream_error(elem), "system-shutdown", to_xml(elem))
            self.assertEqual(server.wait_stopped(), 0)
        except BaseException:
            server.keep_tmp = True
            raise
        finally:
            if server.is_running():
                server.stop()
            else:
                server._cleanup()


if __name__ == "__main__":
    unittest.main()
