"""Protocol tests of server features (issue 2, "Must work" §2-§4) against the real binary.

What each class covers, and the text it checks:
  ReloadTest            SIGHUP (docs/cli.md): a reloadable key (version.name) takes effect; a
                        restart-only key (server.domain) does not; a config that fails to parse
                        is logged and ignored; replaced certificate files, and tls.certificate /
                        tls.key pointing at new files, are presented to new TLS connections
                        (STARTTLS and direct TLS); an unreadable certificate keeps the old one.
  RegistrationDisabledTest  XEP-0077 off by default: no <register/> feature, <service-unavailable/>.
  RegistrationTest      XEP-0077 with registration.enabled: feature after TLS only, the form,
                        account creation (then login), <conflict/>, password change after
                        authentication, <remove/>.
  RegistrationLimitTest limits.registrations_per_ip=2: the third gets <resource-constraint/>.
  VCardTest             XEP-0054: set, get own, another user gets it at the bare JID,
                        limits.vcard_size enforced; slixmpp's xep_0054 interoperates (VCardSlixmppTest).
  VersionHiddenTest / VersionOsTest   XEP-0092 with version.show=false and version.show_os=true.
  DiscoTest             XEP-0030: disco#items on the server; disco#info on an account's bare
                        JID from a subscribed contact -> identity account/registered.
  BindTest              RFC 6120 §7: generated resources; §7.7.2.2 conflict (old session gets
                        <conflict/>, new one works); BindLimitTest: resources_per_account.
  RoutingTest           RFC 6121 §8.5: unknown user / other domain errors; priorities, negative
                        priority, all-negative -> offline; chat to an offline full JID.
  KeepaliveTest         whitespace keepalives count as traffic; the server's XEP-0199 ping after
                        idle_timeout; answering keeps the session, silence -> <connection-timeout/>.
  PreApprovalTest       RFC 6121 §3.4 pre-approval and the stream features that announce it.
  RosterVersioningTest  RFC 6121 §2.6: a get with the current ver returns an empty result.

Most tests speak raw XMPP (harness.RawStream) because they check exact XML; VCardSlixmppTest
uses slixmpp (Debian python3-slixmpp). Every wait is bounded; "nothing arrives" is proven
with a marker stanza sent after the one that must not arrive, on the same route, instead
of a sleep.

Run: cd tests/protocol && /usr/bin/python3 -m unittest -v test_features
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import ssl
import subprocess
import time
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Optional

from harness import (DOMAIN, NS_BIND, NS_CLIENT, NS_STANZAS, NS_STREAM, NS_STREAMS_ERR, RawStream, Server,
                     ServerTestCase, StreamClosed, connect_direct_tls, connect_starttls, local, new_password,
                     merge_config, ns_of, quoteattr, tls_client_context, to_toml, to_xml, unique_user, xml_escape)

WAIT = 10.0  # for one expected stanza

NS_PING = "urn:xmpp:ping"
NS_ROSTER = "jabber:iq:roster"
NS_VERSION = "jabber:iq:version"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_VCARD = "vcard-temp"
NS_REGISTER = "jabber:iq:register"
NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"
NS_DELAY = "urn:xmpp:delay"
NS_PREAPPROVAL = "urn:xmpp:features:pre-approval"
NS_ROSTERVER = "urn:xmpp:features:rosterver"

_ids = itertools.count(1)


def next_id(prefix: str = "t") -> str:
    return f"{prefix}{next(_ids)}"


# --------------------------------------------------------------------------
# Raw XMPP helpers


def stanza_error(elem: ET.Element) -> tuple:
    """(type, condition) of a stanza's <error/> (RFC 6120 §8.3), or (None, None)."""
    err = elem.find(f"{{{NS_CLIENT}}}error")
    if err is None:
        return None, None
    for child in err:
        if ns_of(child.tag) == NS_STANZAS and local(child.tag) != "text":
            return err.get("type"), local(child.tag)
    return err.get("type"), None


def stream_error_condition(elem: ET.Element) -> Optional[str]:
    if elem.tag != f"{{{NS_STREAM}}}error":
        return None
    for child in elem:
        if ns_of(child.tag) == NS_STREAMS_ERR and local(child.tag) != "text":
            return local(child.tag)
    return "(no condition)"


def is_stanza(name: str) -> Callable[[ET.Element], bool]:
    return lambda e: e.tag == f"{{{NS_CLIENT}}}{name}"


def message_with_body(body: str) -> Callable[[ET.Element], bool]:
    return lambda e: e.tag == f"{{{NS_CLIENT}}}message" and e.findtext(f"{{{NS_CLIENT}}}body") == body


def presence_from(jid: str, ptype: Optional[str] = None) -> Callable[[ET.Element], bool]:
    return lambda e: (e.tag == f"{{{NS_CLIENT}}}presence" and e.get("from") == jid and e.get("type") == ptype)


def roster_push_for(jid: str, **attrs) -> Callable[[ET.Element], bool]:
    """A roster push (iq set with jabber:iq:roster) whose item `jid` has the given attributes
    (value None: the attribute is absent)."""
    def pred(e: ET.Element) -> bool:
        if e.tag != f"{{{NS_CLIENT}}}iq" or e.get("type") != "set":
            return False
        item = e.find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item[@jid='{jid}']")
        return item is not None and all(item.get(k) == v for k, v in attrs.items())
    return pred


class Session:
    """A raw XMPP session with an inbox: what arrives while waiting for something else is kept
    for a later expect(). Every wait is bounded."""

    def __init__(self, stream: RawStream, jid: str):
        self.stream = stream
        self.jid = jid
        self.bare = jid.partition("/")[0]
        self.resource = jid.partition("/")[2]
        self.inbox: list[ET.Element] = []

    def send(self, xml: str) -> None:
        self.stream.send(xml)

    def dump(self) -> str:
        return "\n".join(f"  {to_xml(e)}" for e in self.inbox) or "  (nothing)"

    def expect(self, pred: Callable[[ET.Element], bool], what: str, timeout: float = WAIT) -> ET.Element:
        """Returns (and removes from the inbox) the first element matching `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            for i, elem in enumerate(self.inbox):
                if pred(elem):
                    del self.inbox[i]
                    return elem
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.jid}: timed out after {timeout}s waiting for {what}; inbox:\n"
                                     f"{self.dump()}\ntranscript:\n{self.stream.transcript()}")
            try:
                self.inbox.append(self.stream.recv(timeout=remaining))
            except TimeoutError:
                continue
            except StreamClosed:
                raise AssertionError(f"{self.jid}: stream closed while waiting for {what}; inbox:\n"
                                     f"{self.dump()}\ntranscript:\n{self.stream.transcript()}") from None

    def matching(self, pred: Callable[[ET.Element], bool]) -> list:
        return [e for e in self.inbox if pred(e)]

    def iq(self, itype: str, payload: str = "", to: Optional[str] = None, timeout: float = WAIT) -> ET.Element:
        """Sends an IQ and returns its result or error."""
        iq_id = next_id("iq")
        to_attr = f" to={quoteattr(to)}" if to is not None else ""
        self.send(f"<iq type='{itype}' id='{iq_id}'{to_attr}>{payload}</iq>")
        return self.expect(lambda e: e.tag == f"{{{NS_CLIENT}}}iq" and e.get("id") == iq_id
                           and e.get("type") in ("result", "error"), f"the answer to iq {iq_id}", timeout)

    def ping_server(self) -> None:
        reply = self.iq("get", f"<ping xmlns='{NS_PING}'/>", to=DOMAIN)
        assert reply.get("type") == "result", f"server ping failed: {to_xml(reply)}"

    def roster_get(self, ver: Optional[str] = None) -> ET.Element:
        ver_attr = f" ver={quoteattr(ver)}" if ver is not None else ""
        reply = self.iq("get", f"<query xmlns='{NS_ROSTER}'{ver_attr}/>")
        assert reply.get("type") == "result", f"roster get failed: {to_xml(reply)}"
        return reply

    def available(self, priority: Optional[int] = None) -> None:
        """Sends available presence and waits for the server's copy of it back (RFC 6121 §4.2.2:
        broadcast to all the user's available resources, this one included). Once it is back,
        the account's home has applied it."""
        inner = f"<priority>{priority}</priority>" if priority is not None else ""
        self.send(f"<presence>{inner}</presence>")
        self.expect(presence_from(self.jid), f"own presence echo from {self.jid}")

    def message(self, to: str, body: str, mtype: Optional[str] = "chat") -> str:
        mid = next_id("m")
        type_attr = f" type='{mtype}'" if mtype else ""
        self.send(f"<message to={quoteattr(to)} id='{mid}'{type_attr}><body>{xml_escape(body)}</body></message>")
        return mid

    def close(self) -> None:
        self.stream.close(wait=1.0)


def bind_iq(stream: RawStream, resource: Optional[str]) -> ET.Element:
    """Sends a bind request (no <resource/> if None) and returns the answer (result or error)."""
    iq_id = next_id("bind")
    inner = f"<resource>{xml_escape(resource)}</resource>" if resource is not None else ""
    stream.send(f"<iq type='set' id='{iq_id}'><bind xmlns='{NS_BIND}'>{inner}</bind></iq>")
    return stream.recv_until(lambda e: e.tag == f"{{{NS_CLIENT}}}iq" and e.get("id") == iq_id)


def authenticate(server: Server, user: str, password: str, *, direct_tls: bool = False) -> RawStream:
    """TLS + SASL PLAIN + stream restart; returns the stream (features in stream.features)."""
    stream = connect_direct_tls(server) if direct_tls else connect_starttls(server)
    try:
        reply = stream.auth_plain(user, password)
        if local(reply.tag) != "success":
            raise AssertionError(f"PLAIN login of {user} failed: {to_xml(reply)}")
        stream.open()
    except BaseException:
        stream.close()
        raise
    return stream


def login(server: Server, user: str, password: str, resource: Optional[str] = "raw", *,
          direct_tls: bool = False) -> Session:
    """Authenticates and binds `resource` (a generated one if None); returns a Session."""
    stream = authenticate(server, user, password, direct_tls=direct_tls)
    try:
        reply = bind_iq(stream, resource)
        if reply.get("type") != "result":
            raise AssertionError(f"bind of {user}/{resource} failed: {to_xml(reply)}")
        jid = (reply.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid") or "").strip()
        if not jid:
            raise AssertionError(f"bind result has no <jid/>: {to_xml(reply)}")
    except BaseException:
        stream.close()
        raise
    return Session(stream, jid)


def try_plain(server: Server, user: str, password: str) -> ET.Element:
    """One SASL PLAIN attempt on a fresh TLS stream; returns <success/> or <failure/>."""
    stream = connect_starttls(server)
    try:
        return stream.auth_plain(user, password)
    finally:
        stream.close(wait=0.5)


def can_log_in(server: Server, user: str, password: str) -> bool:
    reply = try_plain(server, user, password)
    if local(reply.tag) == "success":
        return True
    assert local(reply.tag) == "failure", f"neither <success/> nor <failure/>: {to_xml(reply)}"
    return False


def subscribe(user: Session, contact: Session) -> None:
    """RFC 6121 §3.1: `user` subscribes to `contact`, who approves. Both must be available."""
    user.send(f"<presence to='{contact.bare}' type='subscribe'/>")
    contact.expect(presence_from(user.bare, "subscribe"), f"subscribe request from {user.bare}")
    contact.send(f"<presence to='{user.bare}' type='subscribed'/>")
    user.expect(presence_from(contact.bare, "subscribed"), f"subscribed from {contact.bare}")


class RawTestCase(ServerTestCase):
    """One server per class; sessions opened with self.login() are closed after each test."""

    def setUp(self) -> None:
        super().setUp()
        self.sessions: list[Session] = []
        self.streams: list[RawStream] = []

    def tearDown(self) -> None:
        for s in self.sessions:
            s.stream.abort()
        for s in self.streams:
            s.abort()
        super().tearDown()

    def login(self, user: str, password: str, resource: Optional[str] = "raw", **kwargs) -> Session:
        s = login(self.server, user, password, resource, **kwargs)
        self.sessions.append(s)
        return s

    def track(self, stream: RawStream) -> RawStream:
        self.streams.append(stream)
        return stream

    def assert_iq_error(self, reply: ET.Element, condition: str, what: str) -> None:
        self.assertEqual(reply.get("type"), "error", f"{what}: expected an error, got {to_xml(reply)}")
        self.assertEqual(stanza_error(reply)[1], condition, f"{what}: {to_xml(reply)}")


def version_query(session: Session) -> ET.Element:
    return session.iq("get", f"<query xmlns='{NS_VERSION}'/>", to=DOMAIN)


def version_name(session: Session) -> Optional[str]:
    reply = version_query(session)
    if reply.get("type") != "result":
        return None
    return reply.findtext(f"{{{NS_VERSION}}}query/{{{NS_VERSION}}}name")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# SIGHUP reload


# A log line at level error or worse (docs/cli.md: `serve` logs to stderr; spdlog's level names).
LOG_ERROR = r"(?i)\b(error|critical)\b"


def make_certificate(directory: Path, name: str) -> tuple:
    """A new self-signed P-256 certificate for `localhost`; returns (cert path, key path, DER)."""
    cert = directory / f"{name}-cert.pem"
    key = directory / f"{name}-key.pem"
    done = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", f"/CN={DOMAIN}", "-addext", f"subjectAltName=DNS:{DOMAIN}", "-days", "30",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"openssl failed: {done.stderr.decode(errors='replace')}")
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return cert, key, der


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def direct_tls_certificate(server: Server) -> bytes:
    """The DER certificate a new direct-TLS connection (XEP-0368) is shown."""
    import socket
    ctx = tls_client_context()
    with socket.create_connection(server.c2s_tls, timeout=WAIT) as raw:
        with ctx.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            return tls.getpeercert(binary_form=True)


def starttls_certificate(server: Server) -> bytes:
    """The DER certificate a new STARTTLS connection is shown."""
    stream = connect_starttls(server)
    try:
        return stream.transport.sock.getpeercert(binary_form=True)
    finally:
        stream.close(wait=0.5)


class ReloadTest(unittest.TestCase):
    """Each test has its own server, since it changes its config."""

    def setUp(self) -> None:
        self.server = Server(name="reload")
        self.server.start()
        self.sessions: list[Session] = []
        self.user = unique_user("hup")
        self.password = new_password()
        self.server.add_user(self.user, self.password)

    def tearDown(self) -> None:
        for s in self.sessions:
            s.stream.abort()
        if self.server.is_running():
            self.server.stop()
        else:
            self.server.keep_tmp = True
            self.server._cleanup()
            self.fail(f"the server died during the test (status {self.server.process.returncode})\n"
                      f"{self.server.report()}")

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            self.server.keep_tmp = True
            print(f"\n[harness] {self.id()} failed; server stderr follows\n{self.server.report()}")
        return outcome

    def login(self, resource: str = "raw", **kwargs) -> Session:
        s = login(self.server, self.user, self.password, resource, **kwargs)
        self.sessions.append(s)
        return s

    def reload_and_wait_for_name(self, session: Session, name: str) -> None:
        self.server.reload()
        wait_until(lambda: version_name(session) == name, f"XEP-0092 reports name {name!r} after SIGHUP")

    def test_reloadable_key_takes_effect(self):
        alice = self.login()
        reply = version_query(alice)
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        self.assertEqual(reply.findtext(f"{{{NS_VERSION}}}query/{{{NS_VERSION}}}name"), "nines")
        self.assertIsNone(reply.find(f"{{{NS_VERSION}}}query/{{{NS_VERSION}}}os"),
                          f"<os/> shown although version.show_os defaults to false: {to_xml(reply)}")

        self.server.write_config({"version": {"name": "renamed-by-sighup"}})
        self.reload_and_wait_for_name(alice, "renamed-by-sighup")
        # A session opened after the reload sees it too, and the server still serves logins.
        fresh = self.login(resource="fresh")
        self.assertEqual(version_name(fresh), "renamed-by-sighup")

        # Another reloadable key: in-band registration switched on for new streams.
        before = connect_starttls(self.server)
        before.close()
        self.assertIsNone(before.features.find(f"{{{NS_REGISTER_FEATURE}}}register"), to_xml(before.features))
        self.server.write_config({"registration": {"enabled": True}, "version": {"name": "marker-2"}})
        self.reload_and_wait_for_name(alice, "marker-2")
        after = connect_starttls(self.server)
        after.close()
        self.assertIsNotNone(after.features.find(f"{{{NS_REGISTER_FEATURE}}}register"),
                             f"registration.enabled = true not applied by SIGHUP: {to_xml(after.features)}")

    def test_restart_only_key_is_not_reloaded(self):
        alice = self.login()
        # version.name changes too: once it shows, the reload has certainly happened.
        since = self.server.stderr_offset()
        self.server.write_config({"server": {"domain": "example.org"}, "version": {"name": "marker-1"}})
        self.reload_and_wait_for_name(alice, "marker-1")
        # The operator is told the domain change was not applied.
        self.server.wait_for_log(r"server\.domain changed but takes effect only after a restart", since=since)

        # The domain is still localhost: new streams to it work and are answered from it...
        stream = connect_starttls(self.server)
        try:
            self.assertEqual(stream.stream_attrs.get("from"), DOMAIN, stream.transcript())
            self.assertEqual(local(stream.auth_plain(self.user, self.password).tag), "success")
            stream.open()
            self.assertEqual(stream.bind("after-hup"), f"{self.user}@{DOMAIN}/after-hup")
        finally:
            stream.close()
        # ...and the configured-but-not-applied domain is not served.
        other = RawStream(*self.server.c2s, domain="example.org")
        try:
            other.send("<?xml version='1.0'?><stream:stream to='example.org' version='1.0' "
                       f"xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}'>")
            elem = other.recv_until(lambda e: e.tag == f"{{{NS_STREAM}}}error")
            self.assertEqual(stream_error_condition(elem), "host-unknown", to_xml(elem))
        finally:
            other.close()
        # Messages between local users still route under localhost.
        bob_user, bob_pw = unique_user("bob"), new_password()
        self.server.add_user(bob_user, bob_pw)
        bob = login(self.server, bob_user, bob_pw, "desk")
        self.sessions.append(bob)
        bob.available()
        alice.message(f"{bob_user}@{DOMAIN}", "still localhost")
        msg = bob.expect(message_with_body("still localhost"), "message after reload")
        self.assertEqual(msg.get("from"), alice.jid)

    def test_config_with_syntax_error_is_ignored(self):
        alice = self.login()
        self.server.write_config({"version": {"name": "good-one"}})
        self.reload_and_wait_for_name(alice, "good-one")

        offset = self.server.stderr_offset()
        self.server.write_config(text="[version]\nname = \"broken\"\n[limits\nidle_timeout = 1\n")
        self.server.reload()
        line = self.server.wait_for_log(LOG_ERROR, since=offset)
        self.assertTrue(str(self.server.config_path) in line or re.search(r"SIGHUP|reload", line),
                        f"the error does not say it is about the reloaded config: {line}")
        self.assertTrue(self.server.is_running(), "the server exited after a SIGHUP with a broken config")
        # The old config stays: same name, and new logins work.
        self.assertEqual(version_name(alice), "good-one")
        fresh = self.login(resource="fresh")
        self.assertEqual(version_name(fresh), "good-one")
        fresh.ping_server()

        # A later good config is applied again.
        self.server.write_config({"version": {"name": "fixed"}})
        self.reload_and_wait_for_name(alice, "fixed")

    def test_config_with_bad_value_is_ignored(self):
        """Parses as TOML but fails validation (out of bounds): also logged, and none of it applied."""
        alice = self.login()
        offset = self.server.stderr_offset()
        bad = merge_config(self.server.config, {"version": {"name": "never"}, "limits": {"idle_timeout": 0}})
        self.server.write_config(text=to_toml(bad))
        self.server.reload()
        line = self.server.wait_for_log(LOG_ERROR + r".*idle_timeout", since=offset)
        self.assertIn("limits.idle_timeout", line)
        self.assertTrue(self.server.is_running())
        self.assertEqual(version_name(alice), "nines", "a rejected config was partly applied")

    def _assert_presents(self, der: bytes, what: str) -> None:
        wait_until(lambda: fingerprint(direct_tls_certificate(self.server)) == fingerprint(der),
                   f"direct TLS presents the {what}")
        self.assertEqual(fingerprint(starttls_certificate(self.server)), fingerprint(der),
                         f"STARTTLS does not present the {what}")

    def test_certificate_files_replaced_in_place(self):
        data_tls = self.server.data_dir / "tls"
        old = ssl.PEM_cert_to_DER_cert((data_tls / "cert.pem").read_text())
        self.assertEqual(fingerprint(direct_tls_certificate(self.server)), fingerprint(old))
        self.assertEqual(fingerprint(starttls_certificate(self.server)), fingerprint(old))
        before = self.login(resource="before")

        cert, key, new = make_certificate(self.server.tmp, "new")
        self.assertNotEqual(fingerprint(new), fingerprint(old))
        os.replace(key, data_tls / "key.pem")
        os.replace(cert, data_tls / "cert.pem")
        self.server.reload()
        self._assert_presents(new, "replaced certificate")

        # Logins over the new certificate work; the session from before the reload still does.
        after = self.login(resource="after", direct_tls=True)
        after.ping_server()
        before.ping_server()

    def test_certificate_paths_changed_in_config(self):
        cert, key, new = make_certificate(self.server.tmp, "configured")
        self.server.write_config({"tls": {"certificate": str(cert), "key": str(key)}})
        self.server.reload()
        self._assert_presents(new, "certificate named by tls.certificate")
        self.login(resource="after").ping_server()

    def test_unreadable_certificate_keeps_the_old_one(self):
        data_tls = self.server.data_dir / "tls"
        old = ssl.PEM_cert_to_DER_cert((data_tls / "cert.pem").read_text())
        broken = self.server.tmp / "broken-cert.pem"
        broken.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        offset = self.server.stderr_offset()
        self.server.write_config({"tls": {"certificate": str(broken), "key": str(data_tls / "key.pem")}})
        self.server.reload()
        line = self.server.wait_for_log(LOG_ERROR, since=offset)
        self.assertRegex(line, r"certificate|broken-cert\.pem", "the error does not name the certificate")
        self.assertTrue(self.server.is_running())
        self.assertEqual(fingerprint(direct_tls_certificate(self.server)), fingerprint(old))
        self.assertEqual(fingerprint(starttls_certificate(self.server)), fingerprint(old))
        self.login(resource="after").ping_server()


# --------------------------------------------------------------------------
# XEP-0077 in-band registration


def register_get_xml(iq_id: str) -> str:
    return f"<iq type='get' id='{iq_id}'><query xmlns='{NS_REGISTER}'/></iq>"


def register_set_xml(iq_id: str, user: str, password: str, to: Optional[str] = None) -> str:
    to_attr = f" to={quoteattr(to)}" if to else ""
    return (f"<iq type='set' id='{iq_id}'{to_attr}><query xmlns='{NS_REGISTER}'>"
            f"<username>{xml_escape(user)}</username><password>{xml_escape(password)}</password>"
            "</query></iq>")


def answer_to(iq_id: str) -> Callable[[ET.Element], bool]:
    return lambda e: e.tag == f"{{{NS_CLIENT}}}iq" and e.get("id") == iq_id


def register(stream: RawStream, user: str, password: str) -> ET.Element:
    iq_id = next_id("reg")
    stream.send(register_set_xml(iq_id, user, password))
    return stream.recv_until(answer_to(iq_id))


def account_list(server: Server) -> list:
    done = server.cli("user", "list")
    assert done.returncode == 0, f"`nines user list` failed: {done.stderr.decode(errors='replace')}"
    return done.stdout.decode().split()


class RegistrationDisabledTest(RawTestCase):
    """Default config: registration.enabled = false."""

    def test_no_feature_and_service_unavailable(self):
        stream = self.track(connect_starttls(self.server))
        self.assertIsNone(stream.features.find(f"{{{NS_REGISTER_FEATURE}}}register"),
                          f"<register/> advertised although registration is off: {to_xml(stream.features)}")
        stream.send(register_get_xml("g1"))
        reply = stream.recv_until(answer_to("g1"))
        self.assertEqual(reply.get("type"), "error", to_xml(reply))
        self.assertEqual(stanza_error(reply)[1], "service-unavailable", to_xml(reply))

        user = unique_user("walkin")
        stream.send(register_set_xml("s1", user, new_password()))
        reply = stream.recv_until(answer_to("s1"))
        self.assertEqual(stanza_error(reply)[1], "service-unavailable", to_xml(reply))
        self.assertNotIn(user, account_list(self.server))

    def test_authenticated_user_can_still_change_password(self):
        """XEP-0077 §3.3 password change is an account feature, not registration."""
        user, _bare, password = self.new_account("chpw")
        s = self.login(user, password)
        new = new_password()
        reply = s.iq("set", f"<query xmlns='{NS_REGISTER}'><username>{user}</username>"
                            f"<password>{new}</password></query>", to=DOMAIN)
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        self.assertFalse(can_log_in(self.server, user, password))
        self.assertTrue(can_log_in(self.server, user, new))


class RegistrationTest(RawTestCase):
    SERVER_CONFIG = {"registration": {"enabled": True}, "limits": {"registrations_per_ip": 1000}}

    def test_feature_only_after_tls(self):
        stream = self.track(RawStream(*self.server.c2s))
        features = stream.open()
        self.assertIsNone(features.find(f"{{{NS_REGISTER_FEATURE}}}register"),
                          f"<register/> offered before TLS (passwords in the clear): {to_xml(features)}")
        # And a registration attempted before TLS creates nothing.
        user = unique_user("cleartext")
        stream.send(register_set_xml("pre", user, new_password()))
        try:
            reply = stream.recv_until(answer_to("pre"))
            self.assertEqual(reply.get("type"), "error", to_xml(reply))
        except StreamClosed:
            pass  # closing the stream is a refusal too
        self.assertNotIn(user, account_list(self.server))

        tls = self.track(connect_starttls(self.server))
        self.assertIsNotNone(tls.features.find(f"{{{NS_REGISTER_FEATURE}}}register"),
                             f"no <register/> feature after STARTTLS: {to_xml(tls.features)}")
        direct = self.track(connect_direct_tls(self.server))
        self.assertIsNotNone(direct.features.find(f"{{{NS_REGISTER_FEATURE}}}register"),
                             f"no <register/> feature over direct TLS: {to_xml(direct.features)}")

    def test_form_register_and_log_in(self):
        stream = self.track(connect_starttls(self.server))
        stream.send(register_get_xml("form"))
        form = stream.recv_until(answer_to("form"))
        self.assertEqual(form.get("type"), "result", to_xml(form))
        query = form.find(f"{{{NS_REGISTER}}}query")
        self.assertIsNotNone(query, to_xml(form))
        self.assertIsNotNone(query.find(f"{{{NS_REGISTER}}}username"), to_xml(form))
        self.assertIsNotNone(query.find(f"{{{NS_REGISTER}}}password"), to_xml(form))
        self.assertIsNone(query.find(f"{{{NS_REGISTER}}}registered"), to_xml(form))

        user, password = unique_user("ibr"), new_password()
        reply = register(stream, user, password)
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        self.assertIn(user, account_list(self.server))

        # XEP-0077 §3.1: the client may then authenticate on the same stream...
        self.assertEqual(local(stream.auth_plain(user, password).tag), "success", stream.transcript())
        stream.open()
        self.assertEqual(stream.bind("same-stream"), f"{user}@{DOMAIN}/same-stream")
        # ...or later on a new one, with SCRAM as well as PLAIN.
        s = self.login(user, password, "new-stream")
        s.ping_server()
        scram = self.track(connect_starttls(self.server))
        self.assertTrue(scram.auth_scram(user, password, "SCRAM-SHA-256").succeeded, scram.transcript())

    def test_taken_username_conflict(self):
        user, _bare, password = self.new_account("taken")
        stream = self.track(connect_starttls(self.server))
        reply = register(stream, user, new_password())
        self.assertEqual(reply.get("type"), "error", to_xml(reply))
        self.assertEqual(stanza_error(reply)[1], "conflict", to_xml(reply))
        self.assertTrue(can_log_in(self.server, user, password), "the existing account's password changed")

        # Also when only the case differs (the username is normalised, RFC 7622).
        reply = register(stream, user.upper(), new_password())
        self.assertEqual(stanza_error(reply)[1], "conflict", to_xml(reply))

    def test_change_password_after_auth(self):
        user, password = unique_user("chg"), new_password()
        stream = self.track(connect_starttls(self.server))
        self.assertEqual(register(stream, user, password).get("type"), "result")
        s = self.login(user, password)
        form = s.iq("get", f"<query xmlns='{NS_REGISTER}'/>", to=DOMAIN)
        self.assertEqual(form.get("type"), "result", to_xml(form))
        self.assertIsNotNone(form.find(f"{{{NS_REGISTER}}}query/{{{NS_REGISTER}}}registered"),
                             f"XEP-0077 §3.1: an authenticated get shows <registered/>: {to_xml(form)}")

        new = new_password()
        reply = s.iq("set", f"<query xmlns='{NS_REGISTER}'><username>{user}</username>"
                            f"<password>{new}</password></query>", to=DOMAIN)
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        self.assertFalse(can_log_in(self.server, user, password), "the old password still works")
        self.assertTrue(can_log_in(self.server, user, new), "the new password does not work")
        s.ping_server()  # the session that changed it goes on

    def test_cannot_change_another_users_password(self):
        victim, _bare, victim_pw = self.new_account("victim")
        user, _bare2, password = self.new_account("mallory")
        s = self.login(user, password)
        reply = s.iq("set", f"<query xmlns='{NS_REGISTER}'><username>{victim}</username>"
                            f"<password>{new_password()}</password></query>", to=DOMAIN)
        self.assertEqual(reply.get("type"), "error", to_xml(reply))
        self.assertTrue(can_log_in(self.server, victim, victim_pw))

    def test_remove_deletes_account(self):
        user, password = unique_user("gone"), new_password()
        stream = self.track(connect_starttls(self.server))
        self.assertEqual(register(stream, user, password).get("type"), "result")
        s = self.login(user, password)
        s.send(f"<iq type='set' id='unreg1'><query xmlns='{NS_REGISTER}'><remove/></query></iq>")
        reply = s.expect(answer_to("unreg1"), "the answer to <remove/>")
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        # XEP-0077 §3.2: the server then closes the stream.
        s.stream.wait_closed(timeout=WAIT)
        self.assertTrue(s.stream.closed, "stream not closed after the account was removed")

        self.assertNotIn(user, account_list(self.server))
        reply = try_plain(self.server, user, password)
        self.assertEqual(local(reply.tag), "failure", f"login after <remove/> : {to_xml(reply)}")
        # The name is free again.
        again = self.track(connect_starttls(self.server))
        self.assertEqual(register(again, user, new_password()).get("type"), "result")


    def test_message_sent_just_before_remove_is_delivered(self):
        # The message and the <remove/> arrive in one read. The hub hands a
        # pass's archive writes to the store once the pass is done, so the
        # deletion must wait for that too: otherwise the sender's archive is
        # gone when the message is written, and its recipient never gets it.
        user, password = unique_user("leaving"), new_password()
        stream = self.track(connect_starttls(self.server))
        self.assertEqual(register(stream, user, password).get("type"), "result")
        peer, peer_bare, peer_pw = self.new_account("stays")
        b = self.login(peer, peer_pw)
        b.available()
        a = self.login(user, password)
        a.send(f"<message to='{peer_bare}' type='chat' id='last1'><body>goodbye</body></message>"
               f"<iq type='set' id='unreg2'><query xmlns='{NS_REGISTER}'><remove/></query></iq>")
        reply = a.expect(answer_to("unreg2"), "the answer to <remove/>")
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        got = b.expect(message_with_body("goodbye"), "the message sent just before <remove/>")
        self.assertEqual(got.get("id"), "last1", to_xml(got))
        self.assertNotIn(user, account_list(self.server))

    def test_remove_ends_every_session_and_cancels_subscriptions(self):
        # XEP-0077 §3.2: the server terminates all active sessions of the
        # account and cancels its presence subscriptions; a later account of
        # the same name inherits nothing.
        user, password = unique_user("multi"), new_password()
        stream = self.track(connect_starttls(self.server))
        self.assertEqual(register(stream, user, password).get("type"), "result")
        friend, friend_bare, friend_pw = self.new_account("friend")
        laptop = self.login(user, password, "laptop")
        phone = self.login(user, password, "phone")
        f = self.login(friend, friend_pw, "f")
        for s in (laptop, phone, f):
            s.available()
        subscribe(laptop, f)
        subscribe(f, laptop)
        f.expect(presence_from(laptop.jid), "the laptop's presence after the subscription")
        f.roster_get()  # an interested resource (RFC 6121 §2.1.6): it gets roster pushes

        laptop.send(f"<iq type='set' id='unreg3'><query xmlns='{NS_REGISTER}'><remove/></query></iq>")
        self.assertEqual(laptop.expect(answer_to("unreg3"), "the answer to <remove/>").get("type"), "result")
        # The other session gets <not-authorized/> and is closed, not left
        # running for a deleted account.
        error = phone.expect(lambda e: stream_error_condition(e) is not None, "a stream error on the other session")
        self.assertEqual(stream_error_condition(error), "not-authorized", to_xml(error))
        phone.stream.wait_closed(timeout=WAIT)
        self.assertTrue(phone.stream.closed, "the other session's stream is still open")
        # The friend sees the account go and both subscriptions end.
        f.expect(presence_from(phone.jid, "unavailable"), "the phone's unavailable presence")
        f.expect(presence_from(laptop.bare, "unsubscribe"), "unsubscribe from the removed account")
        f.expect(presence_from(laptop.bare, "unsubscribed"), "unsubscribed from the removed account")
        f.expect(roster_push_for(laptop.bare, subscription="none"), "the roster push ending both subscriptions")
        item = f.roster_get().find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item[@jid='{laptop.bare}']")
        self.assertIsNotNone(item)
        self.assertEqual(item.get("subscription"), "none", to_xml(item))

        # The name registered again starts with an empty roster and does not
        # get the friend's presence.
        again = self.track(connect_starttls(self.server))
        new_pw = new_password()
        self.assertEqual(register(again, user, new_pw).get("type"), "result")
        owner = self.login(user, new_pw, "new")
        items = owner.roster_get().findall(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item")
        self.assertEqual(items, [], "the new account has the old one's roster")

    def test_remove_then_disconnect_still_ends_the_other_sessions(self):
        # The client that removed its account may be gone before the store
        # answers; its other sessions must end all the same.
        user, password = unique_user("quick"), new_password()
        stream = self.track(connect_starttls(self.server))
        self.assertEqual(register(stream, user, password).get("type"), "result")
        phone = self.login(user, password, "phone")
        laptop = self.login(user, password, "laptop")
        laptop.send(f"<iq type='set' id='unreg4'><query xmlns='{NS_REGISTER}'><remove/></query></iq>")
        laptop.stream.abort()
        error = phone.expect(lambda e: stream_error_condition(e) is not None, "a stream error on the other session")
        self.assertEqual(stream_error_condition(error), "not-authorized", to_xml(error))
        self.assertNotIn(user, account_list(self.server))

    def test_account_deleted_by_the_cli_ends_its_session_at_the_next_message(self):
        # `nines user del` on a running server only changes the store; the
        # hub learns of it from the archive write of the next message to the
        # account, refuses that message and ends the account's session.
        user, _bare, password = self.new_account("clidel")
        peer, _peer_bare, peer_pw = self.new_account("clipeer")
        victim = self.login(user, password, "v")
        victim.available()
        p = self.login(peer, peer_pw, "p")
        done = self.server.cli("user", "del", user)
        self.assertEqual(done.returncode, 0, done.stderr.decode(errors="replace"))
        p.send(f"<message to='{victim.bare}' type='chat' id='late1'><body>still there?</body></message>")
        bounced = p.expect(lambda e: e.get("id") == "late1" and e.get("type") == "error", "the refused message")
        self.assertEqual(stanza_error(bounced)[1], "service-unavailable", to_xml(bounced))
        error = victim.expect(lambda e: stream_error_condition(e) is not None, "a stream error for the deleted account")
        self.assertEqual(stream_error_condition(error), "not-authorized", to_xml(error))
        self.assertEqual(victim.matching(message_with_body("still there?")), [])


class RegistrationLimitTest(RawTestCase):
    SERVER_CONFIG = {"registration": {"enabled": True}, "limits": {"registrations_per_ip": 2}}

    def test_third_registration_from_one_ip_refused(self):
        names = [unique_user("rl") for _ in range(3)]
        for name in names[:2]:
            stream = self.track(connect_starttls(self.server))
            reply = register(stream, name, new_password())
            self.assertEqual(reply.get("type"), "result", f"{name}: {to_xml(reply)}")
        stream = self.track(connect_starttls(self.server))
        reply = register(stream, names[2], new_password())
        self.assertEqual(reply.get("type"), "error", to_xml(reply))
        self.assertEqual(stanza_error(reply)[1], "resource-constraint", to_xml(reply))
        accounts = account_list(self.server)
        self.assertIn(names[0], accounts)
        self.assertIn(names[1], accounts)
        self.assertNotIn(names[2], accounts)


# --------------------------------------------------------------------------
# XEP-0054 vCard-temp


class VCardTest(RawTestCase):
    SERVER_CONFIG = {"limits": {"vcard_size": 1024}}

    VCARD = (f"<vCard xmlns='{NS_VCARD}'><FN>Alice Example</FN><NICKNAME>al</NICKNAME>"
             "<EMAIL><INTERNET/><USERID>alice@example.org</USERID></EMAIL></vCard>")

    def test_set_get_and_other_user_gets_it(self):
        alice_user, alice_bare, alice_pw = self.new_account("alice")
        bob_user, _bob_bare, bob_pw = self.new_account("bob")
        alice = self.login(alice_user, alice_pw)

        empty = alice.iq("get", f"<vCard xmlns='{NS_VCARD}'/>")
        self.assertEqual(empty.get("type"), "result", f"own vCard before any was set: {to_xml(empty)}")

        reply = alice.iq("set", self.VCARD)
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        own = alice.iq("get", f"<vCard xmlns='{NS_VCARD}'/>")
        self.assertEqual(own.get("type"), "result", to_xml(own))
        self.assertEqual(own.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN"), "Alice Example", to_xml(own))
        self.assertEqual(own.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}EMAIL/{{{NS_VCARD}}}USERID"),
                         "alice@example.org", to_xml(own))

        bob = self.login(bob_user, bob_pw)
        theirs = bob.iq("get", f"<vCard xmlns='{NS_VCARD}'/>", to=alice_bare)
        self.assertEqual(theirs.get("type"), "result", to_xml(theirs))
        self.assertEqual(theirs.get("from"), alice_bare, f"XEP-0054 §3.3: from the bare JID: {to_xml(theirs)}")
        self.assertEqual(theirs.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}NICKNAME"), "al", to_xml(theirs))

        # It is stored: a new session reads the same, and a set replaces it.
        alice2 = self.login(alice_user, alice_pw, "second")
        again = alice2.iq("get", f"<vCard xmlns='{NS_VCARD}'/>")
        self.assertEqual(again.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN"), "Alice Example", to_xml(again))
        self.assertEqual(alice2.iq("set", f"<vCard xmlns='{NS_VCARD}'><FN>A. E.</FN></vCard>").get("type"),
                         "result")
        replaced = bob.iq("get", f"<vCard xmlns='{NS_VCARD}'/>", to=alice_bare)
        self.assertEqual(replaced.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN"), "A. E.", to_xml(replaced))
        self.assertIsNone(replaced.find(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}NICKNAME"), to_xml(replaced))

    def test_cannot_set_another_users_vcard(self):
        alice_user, alice_bare, alice_pw = self.new_account("alice")
        bob_user, _bob_bare, bob_pw = self.new_account("bob")
        alice = self.login(alice_user, alice_pw)
        self.assertEqual(alice.iq("set", self.VCARD).get("type"), "result")
        bob = self.login(bob_user, bob_pw)
        reply = bob.iq("set", f"<vCard xmlns='{NS_VCARD}'><FN>Bob was here</FN></vCard>", to=alice_bare)
        self.assertEqual(reply.get("type"), "error", to_xml(reply))
        own = alice.iq("get", f"<vCard xmlns='{NS_VCARD}'/>")
        self.assertEqual(own.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN"), "Alice Example", to_xml(own))

    def test_vcard_over_size_limit_refused(self):
        user, bare, password = self.new_account("big")
        s = self.login(user, password)
        self.assertEqual(s.iq("set", self.VCARD).get("type"), "result")
        big = f"<vCard xmlns='{NS_VCARD}'><FN>Big</FN><DESC>{'x' * 2000}</DESC></vCard>"
        reply = s.iq("set", big)
        self.assertEqual(reply.get("type"), "error", f"a vCard over limits.vcard_size was accepted: "
                                                     f"{to_xml(reply)[:300]}")
        self.assertIsNotNone(stanza_error(reply)[1], to_xml(reply)[:300])
        # The stored vCard is unchanged.
        own = s.iq("get", f"<vCard xmlns='{NS_VCARD}'/>")
        self.assertEqual(own.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN"), "Alice Example", to_xml(own)[:300])
        # Just under the limit is fine.
        fits = f"<vCard xmlns='{NS_VCARD}'><FN>Fits</FN><DESC>{'y' * 800}</DESC></vCard>"
        self.assertEqual(s.iq("set", fits).get("type"), "result")

    def test_vcard_of_unknown_user(self):
        user, _bare, password = self.new_account("asker")
        s = self.login(user, password)
        reply = s.iq("get", f"<vCard xmlns='{NS_VCARD}'/>", to=f"{unique_user('nobody')}@{DOMAIN}")
        self.assert_iq_error(reply, "service-unavailable", "vCard of a user that does not exist")


# --------------------------------------------------------------------------
# XEP-0092 software version


class VersionHiddenTest(RawTestCase):
    SERVER_CONFIG = {"version": {"show": False}}

    def test_version_query_refused(self):
        user, _bare, password = self.new_account("ver")
        s = self.login(user, password)
        reply = version_query(s)
        self.assert_iq_error(reply, "service-unavailable", "version.show = false")
        self.assertIsNone(reply.find(f"{{{NS_VERSION}}}query/{{{NS_VERSION}}}name"), to_xml(reply))
        # Not advertised either (XEP-0030: features are what the entity answers).
        info = s.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=DOMAIN)
        features = {f.get("var") for f in info.iter(f"{{{NS_DISCO_INFO}}}feature")}
        self.assertNotIn(NS_VERSION, features, to_xml(info))


class VersionOsTest(RawTestCase):
    SERVER_CONFIG = {"version": {"show_os": True, "name": "nines-os-test"}}

    def test_os_included(self):
        user, _bare, password = self.new_account("ver")
        s = self.login(user, password)
        reply = version_query(s)
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        self.assertEqual(reply.get("from"), DOMAIN, to_xml(reply))
        query = reply.find(f"{{{NS_VERSION}}}query")
        self.assertEqual(query.findtext(f"{{{NS_VERSION}}}name"), "nines-os-test", to_xml(reply))
        self.assertTrue((query.findtext(f"{{{NS_VERSION}}}version") or "").strip(), to_xml(reply))
        os_text = query.findtext(f"{{{NS_VERSION}}}os")
        self.assertIsNotNone(os_text, f"no <os/> with version.show_os = true: {to_xml(reply)}")
        self.assertTrue(os_text.strip(), f"empty <os/>: {to_xml(reply)}")


# --------------------------------------------------------------------------
# XEP-0030 disco


class DiscoTest(RawTestCase):

    def test_disco_items_on_server(self):
        user, _bare, password = self.new_account("items")
        s = self.login(user, password)
        reply = s.iq("get", f"<query xmlns='{NS_DISCO_ITEMS}'/>", to=DOMAIN)
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        self.assertEqual(reply.get("from"), DOMAIN, to_xml(reply))
        self.assertIsNotNone(reply.find(f"{{{NS_DISCO_ITEMS}}}query"), to_xml(reply))

    def test_disco_info_on_account_from_subscribed_contact(self):
        alice_user, alice_bare, alice_pw = self.new_account("alice")
        bob_user, _bob_bare, bob_pw = self.new_account("bob")
        alice = self.login(alice_user, alice_pw, "desk")
        bob = self.login(bob_user, bob_pw, "phone")
        alice.available()
        bob.available()
        subscribe(bob, alice)  # bob is subscribed to alice's presence

        reply = bob.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=alice_bare)
        self.assertEqual(reply.get("type"), "result", to_xml(reply))
        self.assertEqual(reply.get("from"), alice_bare, to_xml(reply))
        identities = {(i.get("category"), i.get("type")) for i in reply.iter(f"{{{NS_DISCO_INFO}}}identity")}
        self.assertIn(("account", "registered"), identities, to_xml(reply))

        # The account itself may ask too.
        own = alice.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=alice_bare)
        self.assertEqual(own.get("type"), "result", to_xml(own))
        self.assertIn(("account", "registered"),
                      {(i.get("category"), i.get("type")) for i in own.iter(f"{{{NS_DISCO_INFO}}}identity")})


# --------------------------------------------------------------------------
# Resource binding (RFC 6120 §7)


class BindTest(RawTestCase):

    def test_generated_resource(self):
        user, bare, password = self.new_account("gen")
        first = self.login(user, password, resource=None)
        second = self.login(user, password, resource=None)
        for s in (first, second):
            self.assertEqual(s.bare, bare, s.jid)
            self.assertTrue(s.resource, f"empty generated resource: {s.jid}")
        self.assertNotEqual(first.jid, second.jid, "two sessions were given the same generated resource")
        # Both are usable: a message to each full JID reaches exactly that session.
        first.message(second.jid, "to second")
        second.expect(message_with_body("to second"), "message to the generated full JID")
        second.message(first.jid, "to first")
        first.expect(message_with_body("to first"), "message to the generated full JID")

    def test_same_full_jid_conflict_closes_old_session(self):
        user, bare, password = self.new_account("dup")
        old = self.login(user, password, resource="same")
        new = self.login(user, password, resource="same")
        self.assertEqual(new.jid, f"{bare}/same", "RFC 6120 §7.7.2.2: the new session gets the resource")
        err = old.expect(lambda e: e.tag == f"{{{NS_STREAM}}}error", "<stream:error/> on the replaced session")
        self.assertEqual(stream_error_condition(err), "conflict", to_xml(err))
        old.stream.wait_closed(timeout=WAIT)
        self.assertTrue(old.stream.closed, "the replaced session was not closed")

        new.ping_server()
        # Stanzas to the full JID now reach the new session.
        other_user, _ob, other_pw = self.new_account("other")
        other = self.login(other_user, other_pw)
        other.message(new.jid, "to the survivor")
        new.expect(message_with_body("to the survivor"), "message to the taken-over full JID")


class BindLimitTest(RawTestCase):
    SERVER_CONFIG = {"limits": {"resources_per_account": 2}}

    def test_third_resource_refused(self):
        user, bare, password = self.new_account("lim")
        one = self.login(user, password, "one")
        self.login(user, password, "two")
        stream = self.track(authenticate(self.server, user, password))
        reply = bind_iq(stream, "three")
        self.assertEqual(reply.get("type"), "error", to_xml(reply))
        self.assertEqual(stanza_error(reply)[1], "resource-constraint", to_xml(reply))

        # Re-binding a resource that is already bound is a takeover, not a new resource (§7.7.2.2).
        again = self.login(user, password, "two")
        again.ping_server()

        # When a session ends, its slot frees up.
        one.close()
        def third_binds() -> bool:
            s = authenticate(self.server, user, password)
            self.streams.append(s)
            return bind_iq(s, "three").get("type") == "result"
        wait_until(third_binds, "a third resource binds after one session closed", interval=0.2)


# --------------------------------------------------------------------------
# Routing (RFC 6121 §8.5)


class RoutingTest(RawTestCase):

    def two_users(self):
        alice_user, alice_bare, alice_pw = self.new_account("alice")
        bob_user, bob_bare, bob_pw = self.new_account("bob")
        alice = self.login(alice_user, alice_pw, "phone")
        return alice, (bob_user, bob_bare, bob_pw)

    def test_message_to_unknown_local_user(self):
        alice, _bob = self.two_users()
        nobody = f"{unique_user('nobody')}@{DOMAIN}"
        mid = alice.message(nobody, "anyone there?")
        err = alice.expect(lambda e: is_stanza("message")(e) and e.get("id") == mid, "the bounced message")
        self.assertEqual(err.get("type"), "error", to_xml(err))
        self.assertEqual(stanza_error(err)[1], "service-unavailable", to_xml(err))
        self.assertEqual(err.get("from"), nobody, to_xml(err))

    def test_message_to_other_domain(self):
        alice, _bob = self.two_users()
        mid = alice.message("someone@elsewhere.example", "hello out there")
        err = alice.expect(lambda e: is_stanza("message")(e) and e.get("id") == mid, "the bounced message")
        self.assertEqual(err.get("type"), "error", to_xml(err))
        self.assertEqual(stanza_error(err)[1], "remote-server-not-found", to_xml(err))

    def test_iq_to_unknown_user(self):
        alice, _bob = self.two_users()
        nobody = f"{unique_user('nobody')}@{DOMAIN}"
        reply = alice.iq("get", f"<query xmlns='{NS_DISCO_INFO}'/>", to=nobody)
        self.assert_iq_error(reply, "service-unavailable", "iq to the bare JID of a nonexistent user")
        reply = alice.iq("get", f"<ping xmlns='{NS_PING}'/>", to=f"{nobody}/res")
        self.assert_iq_error(reply, "service-unavailable", "iq to a full JID of a nonexistent user")

    def test_iq_to_offline_resource_of_existing_user(self):
        alice, (bob_user, bob_bare, bob_pw) = self.two_users()
        reply = alice.iq("get", f"<ping xmlns='{NS_PING}'/>", to=f"{bob_bare}/nowhere")
        self.assert_iq_error(reply, "service-unavailable", "iq to an unconnected full JID (RFC 6121 §8.5.3.2.3)")

    def test_bare_jid_message_goes_to_highest_priority(self):
        alice, (bob_user, bob_bare, bob_pw) = self.two_users()
        high = self.login(bob_user, bob_pw, "high")
        low = self.login(bob_user, bob_pw, "low")
        high.available(priority=5)
        low.available(priority=1)

        alice.message(bob_bare, "for the best resource")
        msg = high.expect(message_with_body("for the best resource"), "bare-JID message at priority 5")
        self.assertEqual(msg.get("from"), alice.jid)
        # The marker goes to `low` after it on the same route: if `low` had got the first, it
        # would be in its inbox by now.
        alice.message(low.jid, "marker")
        low.expect(message_with_body("marker"), "marker")
        self.assertEqual(low.matching(message_with_body("for the best resource")), [],
                         "the priority-1 resource got a bare-JID message meant for priority 5")

    def test_negative_priority_gets_no_bare_jid_messages(self):
        alice, (bob_user, bob_bare, bob_pw) = self.two_users()
        pos = self.login(bob_user, bob_pw, "pos")
        neg = self.login(bob_user, bob_pw, "neg")
        pos.available(priority=0)
        neg.available(priority=-1)
        alice.message(bob_bare, "not for negative")
        pos.expect(message_with_body("not for negative"), "bare-JID message at priority 0")
        alice.message(neg.jid, "marker")
        neg.expect(message_with_body("marker"), "marker to the negative-priority resource")
        self.assertEqual(neg.matching(message_with_body("not for negative")), [],
                         "RFC 6121 §8.5.2.1.1: a negative-priority resource got a bare-JID message")

    def test_all_negative_goes_offline_and_is_delivered_at_next_login(self):
        alice, (bob_user, bob_bare, bob_pw) = self.two_users()
        neg = self.login(bob_user, bob_pw, "neg")
        neg.available(priority=-5)
        alice.message(bob_bare, "keep this for later")
        alice.message(neg.jid, "marker")
        neg.expect(message_with_body("marker"), "marker to the negative-priority resource")
        self.assertEqual(neg.matching(message_with_body("keep this for later")), [],
                         "a negative-priority resource got a bare-JID message")

        later = self.login(bob_user, bob_pw, "later")
        later.available(priority=1)
        msg = later.expect(message_with_body("keep this for later"), "the stored message at the next login")
        delay = msg.find(f"{{{NS_DELAY}}}delay")
        self.assertIsNotNone(delay, f"offline message without XEP-0203 delay: {to_xml(msg)}")
        self.assertEqual(msg.get("from"), alice.jid, to_xml(msg))

    def test_stored_messages_go_to_a_resource_that_raises_its_priority(self):
        """XEP-0160: stored messages go to the first resource that becomes available with a
        non-negative priority; a negative one that raises its priority is such a resource."""
        alice, (bob_user, bob_bare, bob_pw) = self.two_users()
        neg = self.login(bob_user, bob_pw, "neg")
        neg.available(priority=-1)
        alice.message(bob_bare, "waiting for a priority")
        alice.message(neg.jid, "marker")
        neg.expect(message_with_body("marker"), "marker")
        self.assertEqual(neg.matching(message_with_body("waiting for a priority")), [])
        neg.available(priority=2)
        msg = neg.expect(message_with_body("waiting for a priority"), "the stored message after the raise")
        self.assertIsNotNone(msg.find(f"{{{NS_DELAY}}}delay"), to_xml(msg))

    def test_chat_to_offline_full_jid_goes_to_other_resource(self):
        alice, (bob_user, bob_bare, bob_pw) = self.two_users()
        desk = self.login(bob_user, bob_pw, "desk")
        desk.available()
        for mtype in ("chat", None):  # None: type 'normal'
            body = f"to a gone resource ({mtype or 'normal'})"
            alice.message(f"{bob_bare}/gone", body, mtype=mtype)
            msg = desk.expect(message_with_body(body), f"{mtype or 'normal'} message to an unconnected full JID")
            self.assertEqual(msg.get("from"), alice.jid, to_xml(msg))

        # Headline to an unconnected full JID is dropped (§8.5.3.2.1), not redirected.
        alice.message(f"{bob_bare}/gone", "headline to nowhere", mtype="headline")
        alice.message(desk.jid, "marker")
        desk.expect(message_with_body("marker"), "marker")
        self.assertEqual(desk.matching(message_with_body("headline to nowhere")), [],
                         "a headline to an unconnected resource was redirected")

    def test_chat_to_full_jid_when_user_offline_is_stored(self):
        alice, (bob_user, bob_bare, bob_pw) = self.two_users()
        alice.message(f"{bob_bare}/gone", "stored for the bare JID")
        alice.ping_server()
        bob = self.login(bob_user, bob_pw, "back")
        bob.available()
        msg = bob.expect(message_with_body("stored for the bare JID"), "offline message sent to a full JID")
        self.assertIsNotNone(msg.find(f"{{{NS_DELAY}}}delay"), to_xml(msg))


# --------------------------------------------------------------------------
# Keepalives and the server's ping (RFC 6120 §4.6.1, XEP-0199)


def is_server_ping(e: ET.Element) -> bool:
    return (e.tag == f"{{{NS_CLIENT}}}iq" and e.get("type") == "get"
            and e.find(f"{{{NS_PING}}}ping") is not None)


class KeepaliveTest(RawTestCase):
    IDLE = 2
    PING = 2
    SERVER_CONFIG = {"limits": {"idle_timeout": IDLE, "ping_timeout": PING}}

    def test_whitespace_keepalives_count_as_traffic(self):
        user, _bare, password = self.new_account("ws")
        s = self.login(user, password)
        started = time.monotonic()
        # Well past idle_timeout + ping_timeout, a space every 0.5 s.
        while time.monotonic() - started < 2.5 * (self.IDLE + self.PING):
            s.send(" ")
            try:
                s.inbox.append(s.stream.recv(timeout=0.5))
            except TimeoutError:
                pass
            except StreamClosed:
                self.fail(f"stream closed despite whitespace keepalives\n{s.stream.transcript()}")
            self.assertEqual(s.matching(is_server_ping), [], "pinged although whitespace keepalives flowed")
            self.assertEqual(s.matching(lambda e: e.tag == f"{{{NS_STREAM}}}error"), [],
                             s.stream.transcript())
        s.ping_server()

    def test_silent_client_is_pinged_and_answering_keeps_session(self):
        user, _bare, password = self.new_account("ans")
        s = self.login(user, password)
        s.ping_server()
        last_sent = time.monotonic()
        ping = s.expect(is_server_ping, "the server's XEP-0199 ping", timeout=self.IDLE + 10)
        waited = time.monotonic() - last_sent
        self.assertGreaterEqual(waited, self.IDLE - 0.5, f"pinged after only {waited:.2f}s of silence")
        self.assertEqual(ping.get("from"), DOMAIN, to_xml(ping))
        self.assertEqual(ping.get("to"), s.jid, to_xml(ping))
        self.assertTrue(ping.get("id"), to_xml(ping))
        s.send(f"<iq type='result' id={quoteattr(ping.get('id'))} to='{DOMAIN}'/>")

        # The session survives well past ping_timeout; the next silence brings the next ping.
        second = s.expect(is_server_ping, "a second ping after the first was answered",
                          timeout=self.IDLE + self.PING + 10)
        self.assertNotEqual(second.get("id"), ping.get("id"), "the same ping was repeated")
        self.assertEqual(s.matching(lambda e: e.tag == f"{{{NS_STREAM}}}error"), [], s.stream.transcript())
        s.send(f"<iq type='result' id={quoteattr(second.get('id'))} to='{DOMAIN}'/>")
        s.ping_server()

    def test_error_answer_to_ping_also_keeps_session(self):
        """XEP-0199 §4.1: a client without ping support answers <service-unavailable/>; that
        answer shows it is alive as much as a result does."""
        user, _bare, password = self.new_account("err")
        s = self.login(user, password)
        ping = s.expect(is_server_ping, "the server's XEP-0199 ping", timeout=self.IDLE + 10)
        s.send(f"<iq type='error' id={quoteattr(ping.get('id'))} to='{DOMAIN}'><error type='cancel'>"
               f"<service-unavailable xmlns='{NS_STANZAS}'/></error></iq>")
        s.expect(is_server_ping, "the next ping after the error answer", timeout=self.IDLE + self.PING + 10)
        self.assertEqual(s.matching(lambda e: e.tag == f"{{{NS_STREAM}}}error"), [], s.stream.transcript())

    def test_unanswered_ping_times_out(self):
        user, _bare, password = self.new_account("mute")
        s = self.login(user, password)
        s.expect(is_server_ping, "the server's XEP-0199 ping", timeout=self.IDLE + 10)
        pinged = time.monotonic()
        err = s.expect(lambda e: e.tag == f"{{{NS_STREAM}}}error", "<connection-timeout/>",
                       timeout=self.PING + 10)
        self.assertEqual(stream_error_condition(err), "connection-timeout", to_xml(err))
        self.assertGreaterEqual(time.monotonic() - pinged, self.PING - 0.5, "timed out before ping_timeout")
        s.stream.wait_closed(timeout=WAIT)
        self.assertTrue(s.stream.closed, "stream still open after <connection-timeout/>")


# --------------------------------------------------------------------------
# Pre-approval (RFC 6121 §3.4) and roster versioning (§2.6)


class PreApprovalTest(RawTestCase):

    def test_stream_features_after_auth(self):
        user, _bare, password = self.new_account("feat")
        stream = self.track(authenticate(self.server, user, password))
        self.assertIsNotNone(stream.features.find(f"{{{NS_PREAPPROVAL}}}sub"),
                             f"no <sub xmlns='{NS_PREAPPROVAL}'/>: {to_xml(stream.features)}")
        self.assertIsNotNone(stream.features.find(f"{{{NS_ROSTERVER}}}ver"),
                             f"no <ver xmlns='{NS_ROSTERVER}'/>: {to_xml(stream.features)}")
        self.assertIsNotNone(stream.features.find(f"{{{NS_BIND}}}bind"), to_xml(stream.features))

    def test_preapproved_subscription_is_approved_automatically(self):
        alice_user, alice_bare, alice_pw = self.new_account("alice")
        bob_user, bob_bare, bob_pw = self.new_account("bob")
        bob = self.login(bob_user, bob_pw, "desk")
        bob.roster_get()
        bob.available()
        alice = self.login(alice_user, alice_pw, "phone")
        alice.roster_get()
        alice.available()

        # Bob pre-approves Alice before she asks (§3.4.1).
        bob.send(f"<presence to='{alice_bare}' type='subscribed'/>")
        push = bob.expect(roster_push_for(alice_bare, approved="true"),
                          "roster push with approved='true' for the pre-approval")
        self.assertIn(push.find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item").get("subscription", "none"),
                      ("none",), to_xml(push))
        # Nothing reaches Alice yet: a pre-approval is not a 'subscribed'.
        bob.message(alice.jid, "marker")
        alice.expect(message_with_body("marker"), "marker")
        self.assertEqual(alice.matching(presence_from(bob_bare, "subscribed")), [],
                         "a pre-approval was delivered as 'subscribed'")

        # Alice subscribes; the server approves on Bob's behalf, Bob does nothing.
        alice.send(f"<presence to='{bob_bare}' type='subscribe'/>")
        alice.expect(presence_from(bob_bare, "subscribed"), "automatic 'subscribed' from bob")
        alice.expect(roster_push_for(bob_bare, subscription="to"), "roster push with subscription='to'")
        alice.expect(presence_from(bob.jid), "bob's current presence after the approval")
        bob.expect(roster_push_for(alice_bare, subscription="from"),
                   "bob's roster push with subscription='from'")

        roster = bob.roster_get()
        item = roster.find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item[@jid='{alice_bare}']")
        self.assertIsNotNone(item, to_xml(roster))
        self.assertEqual(item.get("subscription"), "from", to_xml(roster))


class RosterVersioningTest(RawTestCase):

    def test_get_with_current_ver_is_empty(self):
        user, _bare, password = self.new_account("rv")
        contact = f"{unique_user('friend')}@{DOMAIN}"
        s = self.login(user, password)
        s.roster_get()  # an interested resource gets pushes (RFC 6121 §2.2)
        self.assertEqual(s.iq("set", f"<query xmlns='{NS_ROSTER}'><item jid='{contact}' name='F'/></query>")
                         .get("type"), "result")
        s.expect(roster_push_for(contact), "roster push of the new item")

        full = s.roster_get(ver="")
        query = full.find(f"{{{NS_ROSTER}}}query")
        self.assertIsNotNone(query, to_xml(full))
        ver = query.get("ver")
        self.assertTrue(ver, f"RFC 6121 §2.6.3: a versioned roster result carries ver: {to_xml(full)}")
        self.assertIsNotNone(query.find(f"{{{NS_ROSTER}}}item[@jid='{contact}']"), to_xml(full))

        current = s.roster_get(ver=ver)
        self.assertEqual(len(list(current)), 0, f"§2.6.3: with the current ver the result is empty: "
                                                f"{to_xml(current)}")

        # After a change, the old ver gets the whole roster with a new ver; pushes carry it.
        other = f"{unique_user('friend')}@{DOMAIN}"
        self.assertEqual(s.iq("set", f"<query xmlns='{NS_ROSTER}'><item jid='{other}'/></query>").get("type"),
                         "result")
        push = s.expect(roster_push_for(other), "roster push of the second item")
        push_ver = push.find(f"{{{NS_ROSTER}}}query").get("ver")
        self.assertTrue(push_ver and push_ver != ver, to_xml(push))
        stale = s.roster_get(ver=ver)
        stale_query = stale.find(f"{{{NS_ROSTER}}}query")
        self.assertIsNotNone(stale_query, f"a stale ver got an empty result: {to_xml(stale)}")
        self.assertEqual(stale_query.get("ver"), push_ver, to_xml(stale))
        jids = {i.get("jid") for i in stale_query.findall(f"{{{NS_ROSTER}}}item")}
        self.assertEqual(jids, {contact, other}, to_xml(stale))
        self.assertEqual(len(list(s.roster_get(ver=push_ver))), 0)


# --------------------------------------------------------------------------
# The same vCard exchange through slixmpp (a client nobody here wrote)


try:
    from test_slixmpp import AsyncServerTestCase, WAIT as SLIX_WAIT
    HAVE_SLIXMPP = True
except ImportError:  # pragma: no cover - run.sh picks an interpreter that has it
    HAVE_SLIXMPP = False


if HAVE_SLIXMPP:
    class VCardSlixmppTest(AsyncServerTestCase):

        async def test_publish_and_fetch_with_slixmpp(self):
            alice_jid, alice_pw = self.account("alice")
            bob_jid, bob_pw = self.account("bob")
            alice = self.client(alice_jid, alice_pw)
            alice.register_plugin("xep_0054")
            await alice.login()
            vcard = alice["xep_0054"].make_vcard()
            vcard["FN"] = "Alice Slix"
            vcard["NICKNAME"] = "slix"
            # Returns nothing on success; an error answer raises slixmpp's IqError.
            await alice["xep_0054"].publish_vcard(vcard, timeout=SLIX_WAIT)

            bob = self.client(bob_jid, bob_pw)
            bob.register_plugin("xep_0054")
            await bob.login()
            got = await bob["xep_0054"].get_vcard(alice_jid, local=False, cached=False, timeout=SLIX_WAIT)
            self.assertEqual(got["type"], "result", str(got))
            self.assertEqual(got["vcard_temp"]["FN"], "Alice Slix", str(got))
            self.assertEqual(list(got["vcard_temp"]["NICKNAME"]), ["slix"], str(got))  # slixmpp: a list


if __name__ == "__main__":
    unittest.main(verbosity=2)
