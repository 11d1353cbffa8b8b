"""Bad input gets a clear error and loses nothing (DESIGN.md G5/G6), over raw sockets.

Each test sends hostile or broken input to the real `nines` binary and asserts:
  * the exact RFC 6120 §4.9.3 stream error condition (the child of <stream:error/>)
    arrives before the connection closes, or the exact stanza error / SASL failure
    where the stream is meant to survive;
  * the connection is then closed by the server;
  * the server is still up and still serving *other* logged-in users: two witness
    clients that logged in before the bad input still get a ping answered by the
    server and still exchange a message.

The limits come from docs/config.md [limits]; each class sets the ones it tests small.
Server memory is read from /proc/<pid>/status (VmRSS).

Every wait is bounded (socket timeouts, deadlines); nothing here can hang.

Run: cd tests/protocol && python3 -m unittest -v test_bad_input
"""

from __future__ import annotations

import itertools
import select
import socket
import ssl
import threading
import time
import unittest
import xml.etree.ElementTree as ET
from typing import Callable, Optional

from harness import (DOMAIN, NS_CLIENT, NS_SASL, NS_STANZAS, NS_STREAM, NS_STREAMS_ERR, RawStream, ServerTestCase,
                     StreamClosed, connect_starttls, failure_condition, local, login_plain, ns_of, to_xml,
                     unique_user, new_password)

NS_PING = "urn:xmpp:ping"
NS_REGISTER = "jabber:iq:register"

# A well-formed client stream header (RFC 6120 §4.7), as the harness sends it.
HEADER = (f"<stream:stream to='{DOMAIN}' version='1.0' xml:lang='en' "
          f"xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}'>")
XML_DECL = "<?xml version='1.0'?>"

_ids = itertools.count(1)


def next_id(prefix: str = "t") -> str:
    return f"{prefix}{next(_ids)}"


# --------------------------------------------------------------------------
# Helpers


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB (/proc/<pid>/status VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid = pid
        self.interval = interval
        self.before = rss_kb(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except (OSError, AssertionError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.peak = max(self.peak, rss_kb(self.pid))
        except (OSError, AssertionError):
            pass

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 1024.0


def stream_error_condition(elem: ET.Element) -> Optional[str]:
    """The defined condition of a <stream:error/> (RFC 6120 §4.9.3), or None if `elem` is not one."""
    if elem.tag != f"{{{NS_STREAM}}}error":
        return None
    for child in elem:
        if ns_of(child.tag) == NS_STREAMS_ERR and local(child.tag) != "text":
            return local(child.tag)
    return "(no condition)"


def stream_error_text(elem: ET.Element) -> str:
    return elem.findtext(f"{{{NS_STREAMS_ERR}}}text") or ""


def stanza_error(elem: ET.Element) -> tuple:
    """(type, condition) of a stanza's <error/> child (RFC 6120 §8.3), or (None, None)."""
    err = elem.find(f"{{{NS_CLIENT}}}error")
    if err is None:
        return None, None
    for child in err:
        if ns_of(child.tag) == NS_STANZAS and local(child.tag) != "text":
            return err.get("type"), local(child.tag)
    return err.get("type"), None


def send_raw(stream: RawStream, data: bytes) -> bool:
    """Sends bytes as they are (possibly not UTF-8). Returns False if the server had already
    closed the connection (it may cut a hostile peer off while the peer is still sending)."""
    stream.log.append("C: " + repr(data[:300]) + ("..." if len(data) > 300 else ""))
    try:
        stream.transport.sendall(data, stream.timeout)
        return True
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
        return False


def send_text(stream: RawStream, data: str) -> bool:
    return send_raw(stream, data.encode("utf-8"))


class _RecordingTransport:
    """Wraps a RawStream transport and keeps every byte received, for failure reports."""

    def __init__(self, inner):
        self.inner = inner
        self.received = bytearray()

    def recv(self, size: int, timeout: float) -> bytes:
        data = self.inner.recv(size, timeout)
        self.received += data
        return data

    def __getattr__(self, name):
        return getattr(self.inner, name)


def record_input(stream: RawStream) -> _RecordingTransport:
    """From now on, keep the raw bytes `stream` receives (stream.transport.received)."""
    if not isinstance(stream.transport, _RecordingTransport):
        stream.transport = _RecordingTransport(stream.transport)
    return stream.transport


def wait_tcp_closed(stream: RawStream, timeout: float = 10.0) -> bool:
    """Reads (and ignores) whatever follows until the server closes the TCP connection.
    Returns True on close, False if it is still open after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            data = stream.transport.recv(65536, remaining)
        except (socket.timeout, TimeoutError):
            return False
        except (OSError, ssl.SSLError):
            return True
        if not data:
            return True


def ping(stream: RawStream, timeout: float = 10.0) -> float:
    """XEP-0199 ping to the server; asserts an IQ result; returns the round trip in seconds."""
    pid = next_id("ping")
    start = time.monotonic()
    stream.send(f"<iq type='get' id='{pid}' to='{DOMAIN}'><ping xmlns='{NS_PING}'/></iq>")
    reply = stream.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == pid, timeout=timeout)
    rtt = time.monotonic() - start
    if reply.get("type") != "result":
        raise AssertionError(f"ping answered with {to_xml(reply)}")
    return rtt


def tcp_state(server_port: int, client_port: int) -> Optional[str]:
    """The kernel state (/proc/net/tcp 'st', hex) of the server's side of the loopback
    connection from `client_port`, or None if the kernel no longer has that socket."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4:
                continue
            lport = int(fields[1].rsplit(":", 1)[1], 16)
            rport = int(fields[2].rsplit(":", 1)[1], 16)
            if lport == server_port and rport == client_port:
                return fields[3]
    return None


TCP_ESTABLISHED = "01"


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --------------------------------------------------------------------------
# Base class: witnesses and assertions


class BadInputCase(ServerTestCase):
    """A server per class, plus two witness accounts logged in before every test.

    After the bad input, `assert_still_serving()` proves the witnesses' sessions survived:
    the server answers a ping from each and a message from one reaches the other.
    """

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.witness_accounts = []
        for _ in range(2):
            user, password = unique_user("witness"), new_password()
            cls.server.add_user(user, password)
            cls.witness_accounts.append((user, password))

    def setUp(self) -> None:
        super().setUp()
        self._streams: list = []
        (ua, pa), (ub, pb) = self.witness_accounts
        self.wa, self.wa_jid = self.track(*login_plain(self.server, ua, pa, resource=next_id("wa")))
        self.wb, self.wb_jid = self.track(*login_plain(self.server, ub, pb, resource=next_id("wb")))

    def tearDown(self) -> None:
        for stream in self._streams:
            try:
                stream.abort()
            except Exception:
                pass
        super().tearDown()

    def track(self, stream: RawStream, *rest):
        """Registers a stream to be closed after the test; returns its arguments unchanged."""
        self._streams.append(stream)
        return (stream, *rest) if rest else stream

    def login_new(self, prefix: str = "user", resource: str = "raw") -> tuple:
        """A fresh account, logged in and bound over STARTTLS + PLAIN. Returns (stream, full JID)."""
        user, _jid, password = self.new_account(prefix)
        return self.track(*login_plain(self.server, user, password, resource=resource))

    def raw(self) -> RawStream:
        """A plain TCP connection to the STARTTLS port; nothing sent yet."""
        return self.track(RawStream(*self.server.c2s))

    # -- assertions ------------------------------------------------------

    def expect_stream_error(self, stream: RawStream, condition: str, timeout: float = 10.0,
                            what: str = "") -> ET.Element:
        """Reads until a <stream:error/>; asserts its condition is `condition`, that it came
        before the connection closed, and that the server then closes the connection."""
        deadline = time.monotonic() + timeout
        seen = []
        recorder = record_input(stream)
        while True:
            remaining = deadline - time.monotonic()
            try:
                elem = stream.recv(max(remaining, 0.001))
            except ET.ParseError as e:
                self.fail(f"{what}: expected <stream:error><{condition}/>, but what the server sent is not "
                          f"well-formed XML on this stream ({e}); raw bytes received: "
                          f"{bytes(recorder.received)!r}\n{stream.transcript()}")
            except StreamClosed:
                self.fail(f"{what}: connection closed without a <stream:error/> "
                          f"(expected <{condition}/>); got {[to_xml(e) for e in seen]}\n{stream.transcript()}")
            except TimeoutError:
                self.fail(f"{what}: no <stream:error/> within {timeout}s (expected <{condition}/>)\n"
                          f"{stream.transcript()}")
            got = stream_error_condition(elem)
            if got is not None:
                break
            seen.append(elem)
        self.assertEqual(got, condition, f"{what}: wrong stream error condition: {to_xml(elem)}\n"
                                         f"{stream.transcript()}")
        self.assertTrue(stream.stream_attrs, f"{what}: stream error without a stream header\n{stream.transcript()}")
        self.assertTrue(wait_tcp_closed(stream, timeout=10.0),
                        f"{what}: server did not close the connection after <{condition}/>\n{stream.transcript()}")
        return elem

    def assert_still_serving(self) -> None:
        """The server process is alive and the witnesses' sessions (logged in before the bad
        input) still work: the server answers their pings and a message goes a -> b."""
        self.assertTrue(self.server.is_running(), f"server died\n{self.server.report()}")
        for stream in (self.wa, self.wb):
            ping(stream)
        mid = next_id("witness")
        self.wa.send(f"<message to='{self.wb_jid}' type='chat' id='{mid}'><body>still here {mid}</body></message>")
        got = self.wb.recv_until(lambda e: local(e.tag) == "message" and e.get("id") == mid, timeout=10)
        self.assertEqual(got.findtext(f"{{{NS_CLIENT}}}body"), f"still here {mid}", to_xml(got))

    def assert_not_received(self, mid: str) -> None:
        """Witness b never got a stanza with id `mid` (call after assert_still_serving)."""
        leaked = [line for line in self.wb.log if line.startswith("S: ") and f'id="{mid}"' in line]
        self.assertFalse(leaked, f"stanza {mid!r} from the bad input reached another user: {leaked}")

    def assert_delivered(self, stream: RawStream, xml: str, mid: str) -> ET.Element:
        """`stream` sends `xml` (a message with id `mid` to witness b); b must receive it."""
        stream.send(xml)
        return self.wb.recv_until(lambda e: local(e.tag) == "message" and e.get("id") == mid, timeout=10)


# --------------------------------------------------------------------------
# 1 + 2: stanza size, depth, attribute count, name length


class ParserLimitsTest(BadInputCase):
    """config.md [limits]: stanza_size, depth, attributes, name_length and their _preauth
    counterparts; exceeding any of them is <policy-violation/>."""

    SERVER_CONFIG = {"limits": {
        "stanza_size": 4096, "stanza_size_preauth": 1024,
        "depth": 8, "depth_preauth": 4,
        "attributes": 8,
        "name_length": 32,
    }}

    def _message(self, mid: str, body: str = "", extra: str = "") -> str:
        return (f"<message to='{self.wb_jid}' type='chat' id='{mid}'>"
                f"<body>{body}</body>{extra}</message>")

    def test_stanza_over_size_cap_after_auth(self):
        stream, _ = self.login_new("big")
        # Control: a 3000-byte stanza (over the pre-auth cap, under the post-auth cap) is delivered.
        mid = next_id("ok")
        xml = self._message(mid, "y" * 3000)
        self.assertGreater(len(xml), 1024)
        self.assertLess(len(xml), 4096)
        got = self.assert_delivered(stream, xml, mid)
        self.assertEqual(got.findtext(f"{{{NS_CLIENT}}}body"), "y" * 3000)
        # Over the cap: 5000 bytes.
        mid = next_id("big")
        xml = self._message(mid, "x" * 5000)
        self.assertGreater(len(xml), 4096)
        send_text(stream, xml)
        self.expect_stream_error(stream, "policy-violation", what="5000-byte stanza after auth")
        self.assert_still_serving()
        self.assert_not_received(mid)

    def test_huge_stanza_cut_off_early(self):
        """An 8 MiB stanza: refused as soon as the cap is crossed, not buffered to the end."""
        stream, _ = self.login_new("huge")
        with RssSampler(self.server.process.pid) as rss:
            stream.send(f"<message to='{self.wb_jid}' type='chat' id='huge'><body>")
            chunk = b"z" * 65536
            sent = 0
            for _ in range(128):
                if not send_raw(stream, chunk):
                    break
                sent += len(chunk)
            self.expect_stream_error(stream, "policy-violation", what=f"8 MiB stanza ({sent} bytes got out)")
        self.assertLess(rss.growth_mb, 50, f"server RSS grew by {rss.growth_mb:.1f} MB")
        self.assert_still_serving()

    def test_preauth_size_cap_is_smaller(self):
        """Before auth a 2000-byte stanza is refused (stanza_size_preauth=1024); the same size
        is accepted after auth (stanza_size=4096)."""
        pad = "p" * 1900
        # Pre-auth control: a small in-band registration query is answered (with a stanza error:
        # registration is disabled), so the stream itself works pre-auth.
        stream = self.track(connect_starttls(self.server))
        send_text(stream, f"<iq type='get' id='small'><query xmlns='{NS_REGISTER}'/></iq>")
        reply = stream.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == "small")
        self.assertEqual(reply.get("type"), "error", to_xml(reply))
        # Pre-auth: 2000 bytes.
        big = f"<iq type='get' id='{pad}'><query xmlns='{NS_REGISTER}'/></iq>"
        self.assertTrue(1024 < len(big) < 4096)
        send_text(stream, big)
        self.expect_stream_error(stream, "policy-violation", what="2000-byte stanza before auth")
        # Post-auth: the same 2000 bytes in an IQ ping is answered.
        stream, _ = self.login_new("post")
        big = f"<iq type='get' id='{pad}' to='{DOMAIN}'><ping xmlns='{NS_PING}'/></iq>"
        self.assertTrue(1024 < len(big) < 4096)
        stream.send(big)
        reply = stream.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == pad)
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        self.assert_still_serving()

    def test_depth_cap_after_auth(self):
        stream, _ = self.login_new("deep")
        # Control: depth 8 exactly (message + 7 nested elements) is delivered.
        mid = next_id("d8")
        nest = "<x xmlns='urn:test:nest'>" + "<x>" * 6 + "</x>" * 6 + "</x>"
        got = self.assert_delivered(stream, self._message(mid, "ok", nest), mid)
        self.assertIsNotNone(got.find("{urn:test:nest}x"), to_xml(got))
        # Depth 9.
        nest = "<x xmlns='urn:test:nest'>" + "<x>" * 7 + "</x>" * 7 + "</x>"
        send_text(stream, self._message(next_id("d9"), "deep", nest))
        self.expect_stream_error(stream, "policy-violation", what="depth 9 with depth=8")
        self.assert_still_serving()

    def test_very_deep_nesting_after_auth(self):
        """100 000 open tags: refused, no crash (stack) and no unbounded allocation."""
        stream, _ = self.login_new("deeper")
        with RssSampler(self.server.process.pid) as rss:
            send_text(stream, f"<message to='{self.wb_jid}' id='abyss'>" + "<a>" * 100000)
            self.expect_stream_error(stream, "policy-violation", what="100000 nested elements")
        self.assertLess(rss.growth_mb, 50, f"server RSS grew by {rss.growth_mb:.1f} MB")
        self.assert_still_serving()

    def test_depth_cap_before_auth(self):
        stream = self.track(connect_starttls(self.server))
        # Depth 4 (iq/query/a/b) is fine pre-auth: answered with a stanza error.
        send_text(stream, f"<iq type='get' id='d4'><query xmlns='{NS_REGISTER}'><a><b/></a></query></iq>")
        reply = stream.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == "d4")
        self.assertEqual(reply.get("type"), "error", to_xml(reply))
        # Depth 5 is refused.
        send_text(stream, f"<iq type='get' id='d5'><query xmlns='{NS_REGISTER}'><a><b><c/></b></a></query></iq>")
        self.expect_stream_error(stream, "policy-violation", what="depth 5 with depth_preauth=4")
        # ... while depth 5 after auth is delivered (depth=8).
        stream, _ = self.login_new("deep5")
        mid = next_id("d5ok")
        self.assert_delivered(stream,
                              self._message(mid, "ok", "<a xmlns='urn:test'><b><c/></b></a>"), mid)
        self.assert_still_serving()

    def test_attribute_count_cap(self):
        stream, _ = self.login_new("attrs")
        # Control: 7 attributes (the xmlns declaration counts) on one element.
        mid = next_id("a7")
        attrs = " ".join(f"a{i}='v'" for i in range(6))
        got = self.assert_delivered(stream, self._message(mid, "ok", f"<x xmlns='urn:test' {attrs}/>"),
                                    mid)
        self.assertIsNotNone(got.find("{urn:test}x"), to_xml(got))
        # 12 attributes.
        attrs = " ".join(f"a{i}='v'" for i in range(11))
        send_text(stream, self._message(next_id("a12"), "many", f"<x xmlns='urn:test' {attrs}/>"))
        self.expect_stream_error(stream, "policy-violation", what="12 attributes with attributes=8")
        self.assert_still_serving()

    def test_attribute_count_cap_on_stanza_element(self):
        stream, _ = self.login_new("attrs")
        attrs = " ".join(f"a{i}='v'" for i in range(20))
        send_text(stream, f"<message to='{self.wb_jid}' id='{next_id()}' {attrs}><body>x</body></message>")
        self.expect_stream_error(stream, "policy-violation", what="23 attributes on <message/>")
        self.assert_still_serving()

    def test_element_name_length_cap(self):
        stream, _ = self.login_new("names")
        # Control: a 30-byte element name.
        mid = next_id("n30")
        name = "n" * 30
        got = self.assert_delivered(stream, self._message(mid, "ok", f"<{name} xmlns='urn:test'/>"), mid)
        self.assertIsNotNone(got.find(f"{{urn:test}}{name}"), to_xml(got))
        # A 40-byte element name.
        name = "n" * 40
        send_text(stream, self._message(next_id("n40"), "long", f"<{name} xmlns='urn:test'/>"))
        self.expect_stream_error(stream, "policy-violation", what="40-byte element name with name_length=32")
        self.assert_still_serving()

    def test_attribute_name_length_cap(self):
        stream, _ = self.login_new("names")
        name = "m" * 40
        send_text(stream, self._message(next_id("an40"), "long", f"<x xmlns='urn:test' {name}='v'/>"))
        self.expect_stream_error(stream, "policy-violation", what="40-byte attribute name with name_length=32")
        self.assert_still_serving()

    def test_huge_name_before_auth(self):
        """A 1 MiB element name before auth (name_length_preauth default 64)."""
        stream = self.raw()
        send_text(stream, XML_DECL + HEADER)
        stream.recv()  # features
        with RssSampler(self.server.process.pid) as rss:
            send_raw(stream, b"<" + b"q" * (1 << 20))
            self.expect_stream_error(stream, "policy-violation", what="1 MiB element name before auth")
        self.assertLess(rss.growth_mb, 50, f"server RSS grew by {rss.growth_mb:.1f} MB")
        self.assert_still_serving()


# --------------------------------------------------------------------------
# 3: RFC 6120 §11.1 restricted XML


BILLION_LAUGHS = (
    "<?xml version='1.0'?>\n"
    "<!DOCTYPE lolz [\n"
    " <!ENTITY lol 'lol'>\n"
    " <!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\n"
    + "".join(f" <!ENTITY lol{i} '" + f"&lol{i - 1};" * 10 + "'>\n" for i in range(2, 10))
    + "]>\n"
    + HEADER
    + "<message to='x@localhost' type='chat'><body>&lol9;</body></message>"
)


class RestrictedXmlTest(BadInputCase):
    """RFC 6120 §11.1: no DTD, no entity declarations, no processing instructions, no comments
    -> <restricted-xml/>. Entities are never expanded."""

    def test_doctype(self):
        stream = self.raw()
        send_text(stream, XML_DECL + "<!DOCTYPE stream:stream>" + HEADER)
        self.expect_stream_error(stream, "restricted-xml", what="DOCTYPE before the stream header")
        self.assert_still_serving()

    def test_doctype_in_stream_restarted_after_starttls(self):
        """RFC 6120 §5.4.3.3: after TLS the client opens a new stream; a DOCTYPE there is refused
        the same way, and the error comes in a new stream (a fresh response header)."""
        stream = self.raw()
        stream.open()
        stream.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertEqual(local(stream.recv().tag), "proceed")
        stream._wrap_tls()
        stream._reset_parser()
        send_text(stream, XML_DECL + "<!DOCTYPE stream:stream>" + HEADER)
        self.expect_stream_error(stream, "restricted-xml", what="DOCTYPE in the stream restarted after STARTTLS")
        self.assert_still_serving()

    def test_internal_entity_declaration(self):
        stream = self.raw()
        send_text(stream, XML_DECL + "<!DOCTYPE stream:stream [<!ENTITY x 'boom'>]>" + HEADER
                  + "<message to='x@localhost'><body>&x;</body></message>")
        self.expect_stream_error(stream, "restricted-xml", what="internal entity declaration")
        self.assert_still_serving()

    def test_external_entity_declaration(self):
        stream = self.raw()
        send_text(stream, XML_DECL + "<!DOCTYPE stream:stream [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
                  + HEADER + "<message to='x@localhost'><body>&xxe;</body></message>")
        self.expect_stream_error(stream, "restricted-xml", what="external entity declaration")
        self.assert_still_serving()

    def _billion_laughs(self, stream: RawStream, what: str) -> None:
        pid = self.server.process.pid
        with RssSampler(pid) as rss:
            start = time.monotonic()
            send_text(stream, BILLION_LAUGHS)
            self.expect_stream_error(stream, "restricted-xml", timeout=10, what=what)
            elapsed = time.monotonic() - start
        self.assertLess(elapsed, 5.0, f"{what}: took {elapsed:.1f}s")
        self.assertLess(rss.growth_mb, 50, f"{what}: server RSS grew by {rss.growth_mb:.1f} MB "
                                           f"({rss.before} -> {rss.peak} KiB)")

    def test_billion_laughs_before_auth(self):
        self._billion_laughs(self.raw(), "billion laughs as the first stream")
        self.assert_still_serving()

    def test_billion_laughs_after_auth_restart(self):
        """The billion laughs as the stream restarted after SASL success (post-auth limits)."""
        user, _jid, password = self.new_account("lol")
        stream = self.track(connect_starttls(self.server))
        elem = stream.auth_plain(user, password)
        self.assertEqual(local(elem.tag), "success", to_xml(elem))
        stream._reset_parser()  # RFC 6120 §6.4.6: a new stream follows <success/>
        self._billion_laughs(stream, "billion laughs as the restarted stream")
        self.assert_still_serving()

    def test_undeclared_entity_reference_in_stanza(self):
        stream, _ = self.login_new("ent")
        send_text(stream, f"<message to='{self.wb_jid}' type='chat' id='ent'><body>&xxe;</body></message>")
        self.expect_stream_error(stream, "restricted-xml", what="undeclared entity reference")
        self.assert_still_serving()
        self.assert_not_received("ent")

    def test_processing_instruction_between_stanzas(self):
        stream, _ = self.login_new("pi")
        send_text(stream, "<?evil data?>")
        self.expect_stream_error(stream, "restricted-xml", what="processing instruction between stanzas")
        self.assert_still_serving()

    def test_processing_instruction_in_stanza(self):
        stream, _ = self.login_new("pi")
        send_text(stream, f"<message to='{self.wb_jid}' type='chat' id='pi'><body>a<?evil data?>b</body></message>")
        self.expect_stream_error(stream, "restricted-xml", what="processing instruction inside a stanza")
        self.assert_still_serving()

    def test_processing_instruction_before_auth(self):
        stream = self.raw()
        send_text(stream, XML_DECL + HEADER)
        stream.recv()  # features
        send_text(stream, "<?xml-stylesheet href='x'?>")
        self.expect_stream_error(stream, "restricted-xml", what="processing instruction before auth")
        self.assert_still_serving()

    def test_comment_between_stanzas(self):
        stream, _ = self.login_new("cmt")
        send_text(stream, "<!-- a comment -->")
        self.expect_stream_error(stream, "restricted-xml", what="comment between stanzas")
        self.assert_still_serving()

    def test_comment_in_stanza(self):
        stream, _ = self.login_new("cmt")
        send_text(stream, f"<message to='{self.wb_jid}' type='chat' id='cmt'><body>a<!-- c -->b</body></message>")
        self.expect_stream_error(stream, "restricted-xml", what="comment inside a stanza")
        self.assert_still_serving()

    def test_comment_before_stream_header(self):
        stream = self.raw()
        send_text(stream, XML_DECL + "<!-- hello -->" + HEADER)
        self.expect_stream_error(stream, "restricted-xml", what="comment in the prolog")
        self.assert_still_serving()


# --------------------------------------------------------------------------
# 4: not-well-formed, invalid-namespace, host-unknown, unsupported-version
# 5: jid-malformed (stanza error), invalid-from


class MalformedInputTest(BadInputCase):

    INVALID_UTF8 = {
        "stray continuation byte": b"\x80",
        "0xFF": b"\xff\xfe",
        "truncated 2-byte sequence": b"\xc3\x28",
        "overlong '/'": b"\xc0\xaf",
        "UTF-16 surrogate": b"\xed\xa0\x80",
        "beyond U+10FFFF": b"\xf4\x90\x80\x80",
    }

    def test_invalid_utf8_in_stanza(self):
        for name, bad in self.INVALID_UTF8.items():
            with self.subTest(name):
                stream, _ = self.login_new("utf")
                mid = next_id("utf")
                data = (f"<message to='{self.wb_jid}' type='chat' id='{mid}'><body>ok ".encode()
                        + bad + b" ok</body></message>")
                send_raw(stream, data)
                self.expect_stream_error(stream, "not-well-formed", what=f"invalid UTF-8 ({name}) in a body")
                self.assert_still_serving()
                self.assert_not_received(mid)

    def test_invalid_utf8_in_attribute(self):
        stream, _ = self.login_new("utf")
        send_raw(stream, f"<message to='{self.wb_jid}' type='chat' id='".encode() + b"\xff\xff'/>")
        self.expect_stream_error(stream, "not-well-formed", what="invalid UTF-8 in an attribute")
        self.assert_still_serving()

    def test_invalid_utf8_in_stream_header(self):
        stream = self.raw()
        send_raw(stream, XML_DECL.encode() + HEADER.replace("xml:lang='en'", "xml:lang='e\xff'").encode("latin-1"))
        self.expect_stream_error(stream, "not-well-formed", what="invalid UTF-8 in the stream header")
        self.assert_still_serving()

    MALFORMED = {
        "mismatched end tag": "<message to='{to}' type='chat'><body>x</message>",
        "duplicate attribute": "<message to='{to}' to='{to}'><body>x</body></message>",
        "unbound prefix": "<message to='{to}'><foo:bar/></message>",
        "unquoted attribute": "<message to={to}><body>x</body></message>",
        "bare ampersand": "<message to='{to}'><body>a & b</body></message>",
        "'<' in attribute value": "<message to='{to}' id='a<b'/>",
        "control character": "<message to='{to}'><body>\x01</body></message>",
        "end tag with no start": "</message>",
    }

    def test_malformed_xml_after_auth(self):
        for name, template in self.MALFORMED.items():
            with self.subTest(name):
                stream, _ = self.login_new("bad")
                send_text(stream, template.format(to=self.wb_jid))
                self.expect_stream_error(stream, "not-well-formed", what=name)
                self.assert_still_serving()

    def test_malformed_xml_before_auth(self):
        stream = self.raw()
        send_text(stream, XML_DECL + HEADER)
        stream.recv()  # features
        send_text(stream, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'></proceed>")
        self.expect_stream_error(stream, "not-well-formed", what="mismatched end tag before auth")
        self.assert_still_serving()

    def test_garbage_instead_of_stream_header(self):
        stream = self.raw()
        send_raw(stream, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.expect_stream_error(stream, "not-well-formed", what="HTTP request instead of XML")
        self.assert_still_serving()

    def test_wrong_stream_namespace(self):
        stream = self.raw()
        send_text(stream, XML_DECL + HEADER.replace(NS_STREAM, "http://example.org/not-streams"))
        self.expect_stream_error(stream, "invalid-namespace", what="stream element in the wrong namespace")
        self.assert_still_serving()

    def test_wrong_content_namespace(self):
        stream = self.raw()
        send_text(stream, XML_DECL + HEADER.replace(f"xmlns='{NS_CLIENT}'", "xmlns='jabber:wrong'"))
        self.expect_stream_error(stream, "invalid-namespace", what="content namespace jabber:wrong")
        self.assert_still_serving()

    def test_wrong_namespace_on_restart_after_auth(self):
        user, _jid, password = self.new_account("ns")
        stream = self.track(connect_starttls(self.server))
        self.assertEqual(local(stream.auth_plain(user, password).tag), "success")
        stream._reset_parser()
        send_text(stream, XML_DECL + HEADER.replace(NS_STREAM, "urn:wrong"))
        self.expect_stream_error(stream, "invalid-namespace", what="wrong stream namespace after SASL")
        self.assert_still_serving()

    def test_to_another_domain(self):
        stream = self.raw()
        send_text(stream, XML_DECL + HEADER.replace(f"to='{DOMAIN}'", "to='example.net'"))
        self.expect_stream_error(stream, "host-unknown", what="to='example.net'")
        self.assert_still_serving()

    def test_to_another_domain_over_direct_tls(self):
        stream = self.track(RawStream(*self.server.c2s_tls, direct_tls=True))
        send_text(stream, XML_DECL + HEADER.replace(f"to='{DOMAIN}'", "to='evil.example'"))
        self.expect_stream_error(stream, "host-unknown", what="to='evil.example' over direct TLS")
        self.assert_still_serving()

    def test_missing_version(self):
        stream = self.raw()
        send_text(stream, XML_DECL + HEADER.replace("version='1.0' ", ""))
        self.expect_stream_error(stream, "unsupported-version", what="no version attribute")
        self.assert_still_serving()

    def test_old_version(self):
        stream = self.raw()
        send_text(stream, XML_DECL + HEADER.replace("version='1.0'", "version='0.9'"))
        self.expect_stream_error(stream, "unsupported-version", what="version='0.9'")
        self.assert_still_serving()

    def test_malformed_to_jid_gets_stanza_error(self):
        """RFC 6120 §8.3.3.8: a malformed 'to' is a <jid-malformed/> stanza error (type modify);
        the stream stays open."""
        stream, _ = self.login_new("jid")
        for bad in ("a@b@c", "@example", "user@", "a@localhost/", "a@exa mple"):
            with self.subTest(bad):
                for kind in ("message", "iq"):
                    sid = next_id("jid")
                    if kind == "message":
                        stream.send(f"<message to='{bad}' type='chat' id='{sid}'><body>x</body></message>")
                    else:
                        stream.send(f"<iq to='{bad}' type='get' id='{sid}'><ping xmlns='{NS_PING}'/></iq>")
                    reply = stream.recv_until(lambda e: e.get("id") == sid)
                    self.assertEqual(local(reply.tag), kind, to_xml(reply))
                    self.assertEqual(reply.get("type"), "error", to_xml(reply))
                    self.assertEqual(stanza_error(reply), ("modify", "jid-malformed"), to_xml(reply))
                # The stream is still open and served.
                ping(stream)
        self.assert_still_serving()

    def test_spoofed_from_is_invalid_from(self):
        """RFC 6120 §4.9.3.9: a 'from' that is not the client's own address -> <invalid-from/>."""
        stream, _ = self.login_new("spoof")
        stream.send(f"<message from='someoneelse@{DOMAIN}' to='{self.wb_jid}' type='chat' id='spoof'>"
                    "<body>I am someone else</body></message>")
        self.expect_stream_error(stream, "invalid-from", what="from='someoneelse@localhost'")
        self.assert_still_serving()
        self.assert_not_received("spoof")

    def test_spoofed_from_other_resource_is_invalid_from(self):
        stream, jid = self.login_new("spoof")
        bare = jid.split("/")[0]
        stream.send(f"<iq from='{bare}/other' type='get' id='sp2' to='{DOMAIN}'><ping xmlns='{NS_PING}'/></iq>")
        self.expect_stream_error(stream, "invalid-from", what="from=<own bare JID>/other")
        self.assert_still_serving()

    def test_own_from_is_accepted(self):
        """Control for invalid-from: the client's own full or bare JID as 'from' is fine."""
        stream, jid = self.login_new("own")
        for sender in (jid, jid.split("/")[0]):
            sid = next_id("own")
            stream.send(f"<iq from='{sender}' type='get' id='{sid}' to='{DOMAIN}'><ping xmlns='{NS_PING}'/></iq>")
            reply = stream.recv_until(lambda e: e.get("id") == sid)
            self.assertEqual(reply.get("type"), "result", to_xml(reply))


# --------------------------------------------------------------------------
# 6: slowloris and authentication timeout


class TimeoutsTest(BadInputCase):
    """limits.stanza_timeout and limits.auth_timeout (checked on the server's 1 s tick)."""

    STANZA_TIMEOUT = 3
    AUTH_TIMEOUT = 3
    TICK_SLACK = 3.0  # 1 s tick, whole-second clock, a loaded machine
    SERVER_CONFIG = {"limits": {"stanza_timeout": STANZA_TIMEOUT, "auth_timeout": AUTH_TIMEOUT}}

    def _closed_with_timeout_within(self, stream: RawStream, start: float, limit: float, what: str,
                                    trickle: Optional[bytes] = None, interval: float = 1.0) -> float:
        """Waits (bounded) for <connection-timeout/>, sending one byte of `trickle` every
        `interval` seconds meanwhile. Returns the seconds from `start` to the stream error."""
        deadline = start + limit + self.TICK_SLACK + 5
        pos = 0
        error = None
        while time.monotonic() < deadline:
            if trickle is not None and pos < len(trickle) and not stream.closed:
                send_raw(stream, trickle[pos:pos + 1])
                pos += 1
            try:
                elem = stream.recv(timeout=interval)
            except TimeoutError:
                continue
            except StreamClosed:
                self.fail(f"{what}: closed without a stream error\n{stream.transcript()}")
            if stream_error_condition(elem) is not None:
                error = elem
                break
        elapsed = time.monotonic() - start
        self.assertIsNotNone(error, f"{what}: still open after {elapsed:.1f}s "
                                    f"(limit {limit}s)\n{stream.transcript()}")
        self.assertEqual(stream_error_condition(error), "connection-timeout", f"{what}: {to_xml(error)}")
        self.assertTrue(wait_tcp_closed(stream), f"{what}: not closed after the stream error")
        self.assertLessEqual(elapsed, limit + self.TICK_SLACK, f"{what}: closed only after {elapsed:.1f}s")
        return elapsed

    def test_slowloris_stanza_one_byte_per_second(self):
        stream, _ = self.login_new("slow")
        stanza = f"<message to='{self.wb_jid}' type='chat' id='slow'><body>{'s' * 40}</body></message>".encode()
        start = time.monotonic()
        elapsed = self._closed_with_timeout_within(stream, start, self.STANZA_TIMEOUT, "slowloris",
                                                   trickle=stanza, interval=1.0)
        # It was the stanza deadline, not something instant.
        self.assertGreaterEqual(elapsed, self.STANZA_TIMEOUT - 1, f"closed after {elapsed:.1f}s")
        self.assert_still_serving()
        self.assert_not_received("slow")

    def test_slow_but_steady_stanzas_are_fine(self):
        """Control: complete stanzas sent slowly (one per second) are not a slowloris."""
        stream, _ = self.login_new("steady")
        end = time.monotonic() + self.STANZA_TIMEOUT + self.TICK_SLACK
        while time.monotonic() < end:
            self.assertLess(ping(stream), 5.0)
            time.sleep(1.0)
        self.assert_still_serving()

    def test_silent_connection_never_authenticates(self):
        stream = self.raw()
        start = time.monotonic()
        self._closed_with_timeout_within(stream, start, self.AUTH_TIMEOUT, "silent connection")
        self.assert_still_serving()

    def test_keepalives_do_not_extend_auth_timeout(self):
        """A client that opens the stream and STARTTLS, then sends whitespace keepalives but
        never authenticates, is still closed after auth_timeout (counted from connect)."""
        start = time.monotonic()
        stream = self.track(connect_starttls(self.server))
        self._closed_with_timeout_within(stream, start, self.AUTH_TIMEOUT, "unauthenticated, keepalives",
                                         trickle=b" " * 100, interval=0.5)
        self.assert_still_serving()

    def test_authenticated_but_never_binds(self):
        user, _jid, password = self.new_account("nobind")
        start = time.monotonic()
        stream = self.track(connect_starttls(self.server))
        self.assertEqual(local(stream.auth_plain(user, password).tag), "success")
        stream.open()
        self._closed_with_timeout_within(stream, start, self.AUTH_TIMEOUT, "authenticated, never bound")
        self.assert_still_serving()

    def test_slowloris_stream_header_before_auth(self):
        """The stream header itself trickled a byte per second: auth_timeout still applies."""
        stream = self.raw()
        start = time.monotonic()
        self._closed_with_timeout_within(stream, start, self.AUTH_TIMEOUT, "trickled header",
                                         trickle=(XML_DECL + HEADER).encode(), interval=0.5)
        self.assert_still_serving()


# --------------------------------------------------------------------------
# 7: flood


class FloodTest(BadInputCase):
    """limits.stanzas_per_second / stanza_burst: beyond the rate the server stops reading
    (TCP backpressure) instead of buffering."""

    RATE = 50
    BURST = 50
    SERVER_CONFIG = {"limits": {"stanzas_per_second": RATE, "stanza_burst": BURST}}

    def test_non_reading_flooder_is_pushed_back(self):
        stream, _ = self.login_new("flood")
        sock = stream.transport.sock
        sock.setblocking(False)
        chunk = "".join(f"<iq type='get' id='f{i}' to='{DOMAIN}'><ping xmlns='{NS_PING}'/></iq>"
                        for i in range(100)).encode()
        stats = {"bytes": 0, "would_block": 0, "first_block": None, "error": None}
        samples = []  # (seconds since start, bytes accepted so far)
        stop = threading.Event()
        flood_seconds = 5.0

        def flood() -> None:
            start = time.monotonic()
            pending = chunk
            try:
                while not stop.is_set() and time.monotonic() - start < flood_seconds:
                    try:
                        n = sock.send(pending)
                    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        stats["would_block"] += 1
                        if stats["first_block"] is None:
                            stats["first_block"] = time.monotonic() - start
                        select.select([], [sock], [], 0.05)
                        continue  # retry the same buffer (OpenSSL requires it)
                    stats["bytes"] += n
                    samples.append((time.monotonic() - start, stats["bytes"]))
                    pending = pending[n:] or chunk
            except Exception as e:  # noqa: BLE001 - reported below
                stats["error"] = repr(e)

        flooder = threading.Thread(target=flood, name="flooder", daemon=True)
        rtts = []
        with RssSampler(self.server.process.pid) as rss:
            flooder.start()
            try:
                t_end = time.monotonic() + flood_seconds
                while time.monotonic() < t_end:
                    rtts.append(ping(self.wa, timeout=10))
                    time.sleep(0.2)
            finally:
                stop.set()
                flooder.join(timeout=10)
        self.assertFalse(flooder.is_alive(), "flooder thread did not stop")
        self.assertIsNone(stats["error"], f"flooder failed: {stats['error']}")
        self.assertGreater(stats["would_block"], 0,
                           f"send() never blocked: the server read {stats['bytes']} bytes in {flood_seconds}s "
                           f"(rate {self.RATE}/s) -- no TCP backpressure")
        self.assertLess(rss.growth_mb, 100, f"server RSS grew by {rss.growth_mb:.1f} MB "
                                            f"while the flooder pushed {stats['bytes']} bytes")
        # Once the socket buffers are full (well within the first 2 s on loopback), the server
        # takes input only as fast as it serves it: RATE stanzas/s of ~72 bytes is 3.6 KB/s,
        # read a TLS record (16 KiB) or a 64 KiB slice at a time. 100 KB/s is generous for that;
        # a server that reads (and buffers or drops) beyond the rate takes far more.
        late = [b for t, b in samples if t >= 2.5]
        late_rate = (late[-1] - late[0]) / (flood_seconds - 2.5) if len(late) >= 2 else 0.0
        self.assertLess(late_rate, 100_000,
                        f"after 2.5 s the server still took {late_rate / 1000:.0f} KB/s of "
                        f"{len(chunk) // 100}-byte stanzas from a client limited to {self.RATE}/s: "
                        f"it reads beyond the rate limit instead of pushing back")
        self.assertTrue(rtts)
        self.assertLess(max(rtts), 1.0, f"witness ping round trips during the flood: {rtts}")
        sys_note = f"flooder: {stats['bytes']} bytes, first would-block after {stats['first_block']:.2f}s, " \
                   f"{late_rate / 1000:.1f} KB/s after 2.5 s; RSS +{rss.growth_mb:.1f} MB; " \
                   f"max witness RTT {max(rtts) * 1000:.0f} ms"
        print(f"\n  [{self.id().rsplit('.', 1)[1]}] {sys_note}")
        stream.abort()
        self.assert_still_serving()

    def test_reading_flooder_is_throttled_to_the_rate(self):
        """400 pings at once: about BURST + RATE * t are answered by time t, and in the end
        every one of them is answered (throttling delays, it never drops)."""
        stream, _ = self.login_new("rate")
        count = 400
        window = 3.0
        data = "".join(f"<iq type='get' id='r{i}' to='{DOMAIN}'><ping xmlns='{NS_PING}'/></iq>"
                       for i in range(count))
        start = time.monotonic()
        stream.send(data)  # ~30 KB: fits in the socket buffers
        answered = {}
        deadline = start + 30  # (count - BURST) / RATE = 7 s
        while len(answered) < count and time.monotonic() < deadline:
            try:
                elem = stream.recv(timeout=max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                break
            if local(elem.tag) == "iq" and (elem.get("id") or "").startswith("r"):
                self.assertEqual(elem.get("type"), "result", to_xml(elem))
                answered.setdefault(elem.get("id"), time.monotonic() - start)
        in_window = sum(1 for t in answered.values() if t <= window)
        expected = self.BURST + self.RATE * window  # 200
        print(f"\n  [{self.id().rsplit('.', 1)[1]}] answered within {window}s: {in_window} "
              f"(expected ~{expected:.0f}); all {len(answered)} after {max(answered.values()):.1f}s")
        self.assertEqual(len(answered), count, f"only {len(answered)} of {count} pings answered within 30s "
                         f"({in_window} within {window}s): throttled stanzas were lost")
        self.assertGreaterEqual(in_window, expected * 0.5, "far below the configured rate")
        self.assertLessEqual(in_window, expected * 1.6, "well above the configured rate: not throttled")
        # The whole batch cannot take less than (count - burst) / rate seconds.
        total = max(answered.values())
        self.assertGreaterEqual(total, (count - self.BURST) / self.RATE * 0.7, f"all answered in {total:.1f}s")
        self.assert_still_serving()


# --------------------------------------------------------------------------
# 8: connections per IP


class ConnectionCapTest(BadInputCase):
    """limits.connections_per_ip = 3. The two witnesses hold two of them."""

    SERVER_CONFIG = {"limits": {"connections_per_ip": 3}}

    def test_fourth_connection_refused_then_slot_reused(self):
        third = self.raw()
        third.open()  # features: it is served
        # The 4th: a stream header and <policy-violation/>, without waiting for ours.
        fourth = self.raw()
        self.expect_stream_error(fourth, "policy-violation", what="4th connection from one IP")
        self.assertEqual(fourth.stream_attrs.get("from"), DOMAIN, fourth.transcript())
        # The direct-TLS port is capped too (no TLS yet, so it is just closed).
        refused = False
        try:
            tls = RawStream(*self.server.c2s_tls, direct_tls=True, timeout=10)
        except (OSError, ssl.SSLError):
            refused = True
        else:
            self.track(tls)
            try:
                tls.open()
            except (StreamClosed, OSError, ssl.SSLError):
                refused = True
            except TimeoutError:
                pass
        self.assertTrue(refused, "a direct-TLS connection over the cap was served")
        self.assert_still_serving()
        # Close the third; the slot frees up (once the server has seen the close).
        third.close()
        state = {}

        def new_connection_works() -> bool:
            s = RawStream(*self.server.c2s)
            try:
                s.open()
                state["stream"] = self.track(s)
                return True
            except AssertionError:  # a stream error instead of features
                s.abort()
                return False

        self.assertTrue(wait_until(new_connection_works, timeout=10, interval=0.2),
                        "no new connection accepted within 10s after one was closed")
        state["stream"].abort()
        # And a full login works in the freed slot (once the server has seen that close).
        stream = None
        deadline = time.monotonic() + 10
        while stream is None:
            try:
                stream, _ = self.login_new("slot")
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        ping(stream)
        self.assert_still_serving()


# --------------------------------------------------------------------------
# 9: failed logins per IP


class FailedLoginsTest(BadInputCase):
    """limits.failed_logins_per_ip = 3 within failed_login_window (60 s). One test only:
    the lockout lasts for the whole window."""

    SERVER_CONFIG = {"limits": {"failed_logins_per_ip": 3}}

    def test_lockout_after_failed_logins(self):
        user, _jid, password = self.new_account("victim")
        other_user, _ojid, other_password = self.new_account("bystander")
        for attempt in range(3):
            with connect_starttls(self.server) as stream:
                elem = stream.auth_plain(user, password + "-wrong")
                self.assertEqual(failure_condition(elem), "not-authorized", f"attempt {attempt}: {to_xml(elem)}")
        # The 4th attempt, with the right password, is refused for now.
        for who, pw in ((user, password), (other_user, other_password)):
            with connect_starttls(self.server) as stream:
                elem = stream.auth_plain(who, pw)
                self.assertEqual(failure_condition(elem), "temporary-auth-failure",
                                 f"{who} with the right password: {to_xml(elem)}")
                text = (elem.findtext(f"{{{NS_SASL}}}text") or "").lower()
                self.assertIn("later", text, f"the failure does not say to try later: {to_xml(elem)}")
        # SCRAM too.
        with connect_starttls(self.server) as stream:
            outcome = stream.auth_scram(user, password, "SCRAM-SHA-256")
            self.assertEqual(outcome.failure_condition, "temporary-auth-failure", stream.transcript())
        self.assert_still_serving()


# --------------------------------------------------------------------------
# 10: a peer that never reads


class SendQueueTest(BadInputCase):
    """limits.send_queue = 65536: a peer that does not read is cut off once that much is
    queued for it; whoever sends to it is unaffected."""

    SEND_QUEUE = 65536
    SERVER_CONFIG = {"limits": {"send_queue": SEND_QUEUE}}

    def test_non_reading_victim_is_disconnected(self):
        victim, victim_jid = self.login_new("victim")
        sender, sender_jid = self.login_new("sender")
        victim_sock = victim.transport.sock
        victim_port = victim_sock.getsockname()[1]
        server_port = self.server.c2s[1]
        self.assertEqual(tcp_state(server_port, victim_port), TCP_ESTABLISHED)
        body = "v" * 16384
        count = 1280  # 20 MiB of headline messages for the victim, which never reads
        sent = 0
        with RssSampler(self.server.process.pid) as rss:
            for i in range(count):
                sender.send(f"<message to='{victim_jid}' type='headline' id='h{i}'><body>{body}</body></message>")
                sent += len(body)
            # The server closes its end (its socket leaves ESTABLISHED; the kernel may still
            # hold the tail of what was written before).
            closed = wait_until(lambda: tcp_state(server_port, victim_port) != TCP_ESTABLISHED, timeout=15)
        self.assertTrue(closed, f"the server still holds the non-reading victim's connection after "
                                f"{sent} bytes for it (send_queue={self.SEND_QUEUE})")
        self.assertLess(rss.growth_mb, 50, f"server RSS grew by {rss.growth_mb:.1f} MB "
                                           f"while {sent / 2**20:.0f} MiB were sent to a peer that does not read")
        print(f"\n  [{self.id().rsplit('.', 1)[1]}] {sent / 2**20:.0f} MiB sent to the victim; "
              f"server RSS +{rss.growth_mb:.1f} MB")
        # The server has unbound the victim: an IQ to its full JID now bounces.
        iq_id = next_id("gone")
        sender.send(f"<iq to='{victim_jid}' type='get' id='{iq_id}'><ping xmlns='{NS_PING}'/></iq>")
        reply = sender.recv_until(lambda e: e.get("id") == iq_id)
        self.assertEqual(reply.get("type"), "error", to_xml(reply))
        self.assertEqual(stanza_error(reply)[1], "service-unavailable", to_xml(reply))
        # The sender is unaffected: still open, served, and can talk to others.
        self.assertFalse(sender.closed, sender.transcript())
        ping(sender)
        mid = next_id("after")
        sender.send(f"<message to='{self.wb_jid}' type='chat' id='{mid}'><body>fine</body></message>")
        self.wb.recv_until(lambda e: local(e.tag) == "message" and e.get("id") == mid)
        # The victim, reading at last, finds a cut stream: far less than was sent, then EOF.
        received = 0
        eof = False
        deadline = time.monotonic() + 30
        victim_sock.settimeout(5)
        while time.monotonic() < deadline:
            try:
                data = victim_sock.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except (OSError, ssl.SSLError):
                eof = True
                break
            if not data:
                eof = True
                break
            received += len(data)
        self.assertTrue(eof, f"the victim's connection is still open after reading {received} bytes")
        # What it got is what the kernels' socket buffers held (a few MB on loopback) plus at most
        # send_queue bytes: far less than the 20 MiB sent.
        self.assertLess(received, sent / 2, f"the victim got {received} of {sent} bytes: it was not cut off")
        print(f"  victim read {received} bytes, then EOF")
        self.assert_still_serving()


class XmlNamespaceElementTest(ServerTestCase):
    """An element in the XML namespace (<xml:note/>, legal XML) is relayed as the recipient's
    parser accepts it: written with the predeclared xml: prefix, not with that namespace as
    a default namespace declaration, which would end the recipient's stream."""

    def test_an_element_in_the_xml_namespace_reaches_the_recipient_intact(self):
        a_user, _, a_pw = self.new_account("xmlns_a")
        b_user, _, b_pw = self.new_account("xmlns_b")
        a, _ = login_plain(self.server, a_user, a_pw, resource="r")
        self.addCleanup(a.abort)
        b, b_full = login_plain(self.server, b_user, b_pw, resource="r")
        self.addCleanup(b.abort)
        a.send(f"<message to='{b_full}' type='chat' id='x1'><xml:note>n</xml:note><body>hi</body></message>")
        got = b.recv_until(lambda e: local(e.tag) == "message")
        self.assertEqual(got.findtext(f"{{{NS_CLIENT}}}body"), "hi")
        self.assertEqual(got.findtext("{http://www.w3.org/XML/1998/namespace}note"), "n", to_xml(got))
        b.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        pong = b.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == "p1")
        self.assertEqual(pong.get("type"), "result", "the recipient's stream goes on")


if __name__ == "__main__":
    unittest.main(verbosity=2)
