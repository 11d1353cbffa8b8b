"""Protocol tests over raw sockets: exact XML for STARTTLS and SASL, against the real nines.

These cover what no client library here can: SCRAM-SHA-256-PLUS with RFC 9266
tls-exporter channel binding (slixmpp 1.8.3 only knows tls-unique; @xmpp/client
0.14 has no -PLUS mechanism), plus the raw STARTTLS + PLAIN path the other raw
tests build on. The SCRAM client is in harness.py (RFC 5802/7677 arithmetic only);
TLS for -PLUS is pyOpenSSL (Debian python3-openssl), because the stdlib ssl module
cannot export keying material.

Run: python3 -m unittest discover -s tests/protocol -p 'test_*.py' -v
"""

from __future__ import annotations

import secrets
import unittest

from harness import (DOMAIN, NS_SASL, NS_TLS, ServerTestCase, connect_direct_tls, connect_starttls,
                     failure_condition, local, login_plain, RawStream, to_xml)


class RawSaslTest(ServerTestCase):
    """Default config: SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1, PLAIN; TLS required."""

    def test_plain_not_offered_before_tls(self):
        """config.md: PLAIN is only ever offered over TLS; STARTTLS is offered on 5222."""
        with RawStream(*self.server.c2s) as stream:
            features = stream.open()
            self.assertIsNotNone(features.find(f"{{{NS_TLS}}}starttls"), to_xml(features))
            self.assertNotIn("PLAIN", stream.mechanisms(), to_xml(features))
            self.assertFalse([m for m in stream.mechanisms() if m.endswith("-PLUS")],
                             f"-PLUS offered without TLS: {to_xml(features)}")

    def test_mechanisms_after_starttls(self):
        """After STARTTLS, the configured mechanisms in order of preference (config.md [auth])."""
        with connect_starttls(self.server) as stream:
            self.assertEqual(stream.mechanisms(), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
                             to_xml(stream.features))

    def test_mechanisms_direct_tls(self):
        with connect_direct_tls(self.server) as stream:
            self.assertEqual(stream.mechanisms(), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
                             to_xml(stream.features))

    def test_plain_starttls_login_and_bind(self):
        """RFC 6120 §5 + §6 + §7 step by step: STARTTLS, PLAIN, stream restart, bind."""
        user, jid, password = self.new_account("raw")
        stream, full = login_plain(self.server, user, password, resource="rawres")
        with stream:
            self.assertEqual(full, f"{jid}/rawres")

    def test_plain_direct_tls_login_and_bind(self):
        user, jid, password = self.new_account("raw")
        stream, full = login_plain(self.server, user, password, direct_tls=True, resource="rawres")
        with stream:
            self.assertEqual(full, f"{jid}/rawres")

    def test_plain_wrong_password_not_authorized(self):
        user, _jid, password = self.new_account("raw")
        with connect_starttls(self.server) as stream:
            elem = stream.auth_plain(user, password + "-wrong")
            self.assertEqual(failure_condition(elem), "not-authorized", to_xml(elem))

    def _plus_login(self, stream: RawStream, user: str, jid: str, password: str) -> None:
        self.assertIn("SCRAM-SHA-256-PLUS", stream.mechanisms(), to_xml(stream.features))
        outcome = stream.auth_scram(user, password, "SCRAM-SHA-256-PLUS")
        self.assertTrue(outcome.succeeded, f"SCRAM-SHA-256-PLUS failed: {to_xml(outcome.final)}\n"
                                           f"{stream.transcript()}")
        self.assertTrue(outcome.server_verified,
                        "server-final (v=) missing or wrong: the server did not prove it knows the "
                        f"password (RFC 5802 §3)\n{stream.transcript()}")
        stream.open()
        self.assertEqual(stream.bind("plus"), f"{jid}/plus")

    def test_scram_sha_256_plus_tls_exporter_starttls(self):
        """RFC 5802 + RFC 7677 + RFC 9266: -PLUS with tls-exporter over STARTTLS."""
        user, jid, password = self.new_account("plus")
        with connect_starttls(self.server, tls="pyopenssl") as stream:
            self._plus_login(stream, user, jid, password)

    def test_scram_sha_256_plus_tls_exporter_direct_tls(self):
        user, jid, password = self.new_account("plus")
        with connect_direct_tls(self.server, tls="pyopenssl") as stream:
            self._plus_login(stream, user, jid, password)

    def test_scram_plus_wrong_binding_data_fails(self):
        """RFC 5802 §5.1 / RFC 9266: channel binding data that is not this connection's fails."""
        user, _jid, password = self.new_account("plus")
        with connect_starttls(self.server, tls="pyopenssl") as stream:
            outcome = stream.auth_scram(user, password, "SCRAM-SHA-256-PLUS", cb_data=secrets.token_bytes(32))
            self.assertFalse(outcome.succeeded, f"authenticated with forged channel binding:\n{stream.transcript()}")
            self.assertEqual(local(outcome.final.tag), "failure", stream.transcript())

    def test_scram_plus_binding_from_other_connection_fails(self):
        """A relay (man in the middle) would present its own connection's exporter: refused."""
        user, _jid, password = self.new_account("plus")
        with connect_starttls(self.server, tls="pyopenssl") as other:
            foreign = other.transport.tls_exporter()
        with connect_starttls(self.server, tls="pyopenssl") as stream:
            self.assertNotEqual(foreign, stream.transport.tls_exporter())
            outcome = stream.auth_scram(user, password, "SCRAM-SHA-256-PLUS", cb_data=foreign)
            self.assertEqual(local(outcome.final.tag), "failure", stream.transcript())

    def test_scram_sha_256_n_flag_raw(self):
        """Plain SCRAM-SHA-256 with gs2 flag 'n' and a verified server signature."""
        user, jid, password = self.new_account("scram")
        with connect_starttls(self.server) as stream:
            outcome = stream.auth_scram(user, password, "SCRAM-SHA-256")
            self.assertTrue(outcome.succeeded, stream.transcript())
            self.assertTrue(outcome.server_verified, stream.transcript())
            stream.open()
            self.assertEqual(stream.bind("n"), f"{jid}/n")

    def test_scram_y_flag_refused_raw(self):
        """RFC 5802 §6: 'y' while the server advertised -PLUS MUST fail (downgrade detected)."""
        user, _jid, password = self.new_account("scram")
        with connect_starttls(self.server) as stream:
            outcome = stream.auth_scram(user, password, "SCRAM-SHA-256", gs2_cbind="y")
            self.assertEqual(local(outcome.final.tag), "failure", stream.transcript())


if __name__ == "__main__":
    unittest.main(verbosity=2)
