"""Protocol tests of the server's lifecycle as streams see it (docs/cli.md, `nines serve`).

SIGTERM: "Listeners close at once; every stream gets
<stream:error><system-shutdown/></stream:error> and its closing tag; queued output is
flushed (at most 5 seconds); then the store drains and closes. Exit status 0."

Each test starts its own server, since it ends it.

Run: python3 -m unittest discover -s tests/protocol -p 'test_*.py' -v
"""

from __future__ import annotations

import socket
import struct
import tempfile
import time
import unittest

from harness import (NS_STREAM, NS_STREAMS_ERR, RawStream, Server, ServerTestCase, connect_direct_tls,
                     connect_starttls, local, login_plain, new_password, to_xml, unique_user)


def is_stream_error(elem) -> bool:
    return elem.tag == f"{{{NS_STREAM}}}error"


class ShutdownTest(unittest.TestCase):

    def setUp(self) -> None:
        self.server = Server(name="shutdown")
        self.server.start()
        self.streams: list[RawStream] = []

    def tearDown(self) -> None:
        for stream in self.streams:
            stream.close()
        if self.server.is_running():
            self.server.keep_tmp = True
            self.server.stop()

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            self.server.keep_tmp = True
            print(f"\n[harness] {self.id()} failed; server stderr follows\n{self.server.report()}")
        return outcome

    def _assert_system_shutdown(self, stream: RawStream, what: str) -> None:
        elem = stream.recv_until(is_stream_error, timeout=10)
        conditions = [local(child.tag) for child in elem if child.tag.startswith(f"{{{NS_STREAMS_ERR}}}")]
        self.assertIn("system-shutdown", conditions, f"{what}: stream error {to_xml(elem)}")
        stream.wait_closed(timeout=10)
        self.assertTrue(stream.saw_stream_end, f"{what}: no </stream:stream> after the stream error\n"
                                               f"{stream.transcript()}")

    def test_sigterm_sends_system_shutdown_to_every_stream_and_exits_0(self):
        user = unique_user("bye")
        password = new_password()
        self.server.add_user(user, password)

        authenticated, _jid = login_plain(self.server, user, password)  # STARTTLS + PLAIN + bind
        self.streams.append(authenticated)
        direct = connect_direct_tls(self.server)  # direct TLS, before authentication
        self.streams.append(direct)
        plaintext = RawStream(*self.server.c2s)  # before STARTTLS
        self.streams.append(plaintext)
        plaintext.open()

        self.server.terminate()
        self._assert_system_shutdown(authenticated, "bound session")
        self._assert_system_shutdown(direct, "unauthenticated direct-TLS stream")
        self._assert_system_shutdown(plaintext, "stream before STARTTLS")

        # "Listeners close at once": by the time streams are told, nobody new gets in.
        for name, address in (("c2s", self.server.c2s), ("c2s_tls", self.server.c2s_tls)):
            try:
                sock = socket.create_connection(address, timeout=5)
            except OSError:
                continue  # refused: the listener is closed
            sock.close()
            self.fail(f"{name} listener {address} still accepted a connection after the "
                      "streams were told system-shutdown")

        self.assertEqual(self.server.wait_stopped(), 0)

    def test_sigterm_with_no_connections_exits_0(self):
        self.server.terminate()
        self.assertEqual(self.server.wait_stopped(), 0)



class RestartTest(unittest.TestCase):

    def test_restart_keeps_accounts(self):
        """An account survives a graceful restart (the store drained and closed cleanly)."""
        data = tempfile.TemporaryDirectory(prefix="nines-restart-")
        self.addCleanup(data.cleanup)
        config = {"server": {"data_dir": data.name}}
        user = unique_user("persist")
        password = new_password()

        first = Server(config=config, name="restart")
        first.start()
        try:
            first.add_user(user, password)
            stream, jid = login_plain(first, user, password, resource="before")
            stream.close()
        finally:
            first.stop()

        again = Server(config=config, name="restart")
        again.start()
        try:
            stream, jid = login_plain(again, user, password, resource="after")
            with stream:
                self.assertEqual(jid, f"{user}@localhost/after")
        except BaseException:
            again.keep_tmp = True
            print(f"\n[harness] restart test failed; server stderr follows\n{again.report()}")
            raise
        finally:
            again.stop()


class AbruptPeerTest(ServerTestCase):
    """Peers that vanish must cost the server nothing but their own connection (G6)."""

    def _assert_still_serving(self, what: str) -> None:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and self.server.is_running():
            time.sleep(0.05)
        self.assertTrue(self.server.is_running(),
                        f"server died after {what}: exit status {self.server.process.returncode} "
                        f"(-13 is SIGPIPE)\n{self.server.report()}")
        user, jid, password = self.new_account("alive")
        stream, full = login_plain(self.server, user, password, resource="alive")
        with stream:
            self.assertEqual(full, f"{jid}/alive")

    def test_sigpipe_peer_closes_right_after_stream_end(self):
        """Regression: nines died of SIGPIPE (exit status -13) when a TLS peer sent
        </stream:stream> and closed its socket before the server wrote its own closing tag."""
        for _ in range(10):
            for connect in (connect_direct_tls, connect_starttls):
                stream = connect(self.server)
                stream.send("</stream:stream>")
                stream.abort()
            plain = RawStream(*self.server.c2s)
            plain.open()
            plain.send("</stream:stream>")
            plain.abort()
        self._assert_still_serving("peers closed right after </stream:stream>")

    def test_peer_reset_after_login(self):
        """A TCP reset (RST) from an authenticated, bound session."""
        user, _jid, password = self.new_account("reset")
        for _ in range(5):
            stream, _full = login_plain(self.server, user, password)
            sock = stream.transport.sock
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.abort()
        self._assert_still_serving("peers reset their connections")

    def test_peer_closes_during_tls_handshake(self):
        """TCP close in the middle of the direct-TLS handshake (ClientHello sent, nothing more)."""
        hello_only = 0
        for _ in range(10):
            sock = socket.create_connection(self.server.c2s_tls, timeout=5)
            # The first bytes of a TLS record header and a truncated ClientHello.
            sock.sendall(bytes.fromhex("160301020001"))
            sock.close()
            hello_only += 1
        self._assert_still_serving(f"{hello_only} truncated TLS handshakes")


if __name__ == "__main__":
    unittest.main(verbosity=2)
