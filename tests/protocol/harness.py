"""Harness for the protocol tests: runs the real `nines` binary and speaks raw XMPP.

The contract this relies on is docs/cli.md (`serve`, the `ready` line, `user add
--password-stdin`, SIGTERM -> exit 0) and docs/config.md (the TOML keys).

Nothing here imitates the server. `Server` starts the real binary on port 0 in a
temporary directory; `RawStream` is a minimal XMPP client over a real socket for
tests that must see or send exact XML (STARTTLS, SASL PLAIN, SCRAM with
tls-exporter channel binding, which slixmpp 1.8.3 cannot do).

Every wait is bounded: process start, the ready line, user creation, shutdown,
socket reads and TLS handshakes all take a timeout, and a timeout is a failure.

Environment:
  NINES_BIN       path of the server binary (default: <repo>/build/release/nines)
  NINES_LOG_LEVEL server log level for tests (default: debug)
  NINES_KEEP_TMP  if set to 1, temporary directories are kept even on success
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import os
import queue
import re
import secrets
import select
import shutil
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Optional
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

REPO_ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "localhost"

# Bounds, in seconds. Generous for a loaded CI machine, but finite.
START_TIMEOUT = float(os.environ.get("NINES_START_TIMEOUT", "30"))
STOP_TIMEOUT = 15.0  # docs/cli.md: output flush is bounded by 5 s, then the store drains
CLI_TIMEOUT = 30.0
IO_TIMEOUT = 10.0

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
NS_COMPONENT = "jabber:component:accept"  # XEP-0114


def _die_with_parent() -> None:
    """Runs in the child before exec: if the test process dies (killed by a timeout, say),
    the kernel sends the server SIGKILL, so no orphaned server outlives a run (Linux)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


# Set when a `nines` CLI call hung, so later calls fail at once instead of each waiting out
# its own timeout (a hung `user add` would otherwise cost CLI_TIMEOUT per test).
_hung_cli: Optional[str] = None


def nines_bin() -> Path:
    """The server binary: $NINES_BIN, else build/release/nines under the repo root."""
    env = os.environ.get("NINES_BIN")
    path = Path(env) if env else REPO_ROOT / "build" / "release" / "nines"
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


# --------------------------------------------------------------------------
# Config


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # Basic string: escape backslash and quote; test paths have no control chars.
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: dict) -> str:
    """Writes {table: {key: value}} as TOML (one level of tables is all config.md uses)."""
    lines = []
    for table, keys in config.items():
        lines.append(f"[{table}]")
        for key, value in keys.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _psql(uri: str, sql: str) -> None:
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", uri, "-c", sql], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)


def _with_database(uri: str, database: str) -> str:
    """`uri` (postgresql://...) with its database replaced."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def _pg_database_for_dir(data_dir: str) -> str:
    return "nines_proto_dir_" + hashlib.sha1(data_dir.encode()).hexdigest()[:16]


def _ensure_pg_database(admin_uri: str, database: str) -> str:
    exists = subprocess.run(["psql", "-qAt", "-d", admin_uri, "-c",
                             f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
                            check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    if not exists:
        _psql(admin_uri, f"CREATE DATABASE {database}")
    return _with_database(admin_uri, database)


def store_config_for(data_dir: str) -> dict:
    """The [store] section a server with this data_dir runs on: {} for the default
    (SQLite in data_dir); with NINES_TEST_STORE_PG, the PostgreSQL database every
    Server given the same data_dir shares. For tests that write their own config."""
    admin_uri = os.environ.get("NINES_TEST_STORE_PG")
    if not admin_uri:
        return {}
    uri = _ensure_pg_database(admin_uri, _pg_database_for_dir(str(data_dir)))
    return {"store": {"backend": "postgres", "postgres_uri": uri}}


def merge_config(base: dict, extra: Optional[dict]) -> dict:
    merged = {table: dict(keys) for table, keys in base.items()}
    for table, keys in (extra or {}).items():
        merged.setdefault(table, {}).update(keys)
    return merged


# --------------------------------------------------------------------------
# Server


class ServerError(AssertionError):
    """The server did not behave as docs/cli.md promises (start, ready line, exit status)."""


_READY_RE = re.compile(r"^ready(?: (?P<pairs>.*))?$")


def parse_ready_line(line: str) -> dict:
    """Parses `ready c2s=HOST:PORT c2s_tls=HOST:PORT` into {'c2s': (host, port), ...}."""
    m = _READY_RE.match(line.strip())
    if not m:
        raise ServerError(f"first stdout line is not a ready line: {line!r}")
    result = {}
    for pair in (m.group("pairs") or "").split():
        name, sep, addr = pair.partition("=")
        host, sep2, port = addr.rpartition(":")
        if not sep or not sep2 or not port.isdigit():
            raise ServerError(f"malformed listener {pair!r} in ready line {line!r}")
        result[name] = (host.strip("[]"), int(port))
    return result


class Server:
    """One `nines serve` process on port 0, in its own temporary directory.

    Usage:
        server = Server()            # or Server(config={"auth": {...}})
        server.start()
        server.add_user("alice", "secret")
        ... connect to server.c2s / server.c2s_tls ...
        server.stop()                # SIGTERM; asserts exit status 0

    stderr goes to <tmp>/stderr.log; `stderr_tail()` returns its end for failure
    reports. The temporary directory is removed by stop() unless `keep_tmp` is set
    (the test base classes set it when a test failed) or NINES_KEEP_TMP=1.
    """

    def __init__(self, config: Optional[dict] = None, name: str = "nines"):
        self.binary = nines_bin()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{name}-proto-"))
        self.data_dir = self.tmp / "data"
        self.config_path = self.tmp / "nines.toml"
        self.stderr_path = self.tmp / "stderr.log"
        self.stdout_lines: list[str] = []
        self.keep_tmp = os.environ.get("NINES_KEEP_TMP") == "1"
        self.process: Optional[subprocess.Popen] = None
        self.listeners: dict = {}
        self.exit_status: Optional[int] = None
        base = {
            "server": {"domain": DOMAIN, "data_dir": str(self.data_dir), "threads": 2},
            "listen": {
                "c2s_address": "127.0.0.1",
                "c2s_port": 0,
                "c2s_tls_address": "127.0.0.1",
                "c2s_tls_port": 0,
            },
            "log": {"level": os.environ.get("NINES_LOG_LEVEL", "debug")},
            # Tests log in and fail on purpose many times from 127.0.0.1; the
            # failed-login limiter is not what these suites test.
            "limits": {"failed_logins_per_ip": 100000, "failed_logins_per_account": 100000},
        }
        # NINES_TEST_STORE_PG=<libpq URI of a server that may create
        # databases>: every server runs on PostgreSQL, in a database of its
        # own, dropped when the server is cleaned up (run.sh --postgres).
        # Servers given the same server.data_dir (a restart by a new Server
        # object) share a database too; such a database is left for the
        # throwaway cluster to take with it.
        self.pg_database: Optional[str] = None
        self.pg_uri: Optional[str] = None
        self._pg_owned = False
        admin_uri = os.environ.get("NINES_TEST_STORE_PG")
        if admin_uri:
            shared_dir = (config or {}).get("server", {}).get("data_dir")
            if shared_dir:
                self.pg_database = _pg_database_for_dir(str(shared_dir))
            else:
                self.pg_database = "nines_proto_" + self.tmp.name.replace("-", "_").lower()
                self._pg_owned = True
            self.pg_uri = _ensure_pg_database(admin_uri, self.pg_database)
            base["store"] = {"backend": "postgres", "postgres_uri": self.pg_uri}
        self.config = merge_config(base, config)
        self.config_path.write_text(to_toml(self.config))
        self._stdout_queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._stderr_file = None
        self._cleaned = False

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> "Server":
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            raise ServerError(f"server binary {self.binary} does not exist or is not executable "
                              "(build it, or set NINES_BIN)")
        # Appends, so a restart after kill() keeps the first run's log; a fresh
        # queue and line list, so the old reader's end-of-stream marker is not
        # taken for the new process exiting.
        self._stderr_file = open(self.stderr_path, "ab")
        self._stdout_queue = queue.Queue()
        self.stdout_lines = []
        self.process = subprocess.Popen(
            [str(self.binary), "serve", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            cwd=self.tmp,
            preexec_fn=_die_with_parent,
        )
        reader = threading.Thread(target=self._read_stdout, name="nines-stdout", daemon=True)
        reader.start()
        try:
            line = self._stdout_queue.get(timeout=timeout)
        except queue.Empty:
            self._kill()
            raise ServerError(f"no ready line on stdout within {timeout}s\n{self.report()}")
        if line is None:
            status = self._wait_exit(5)
            raise ServerError(f"server exited (status {status}) before printing the ready line\n"
                              f"{self.report()}")
        try:
            self.listeners = parse_ready_line(line)
        except ServerError as e:
            self._kill()
            raise ServerError(f"{e}\n{self.report()}") from None
        if "c2s" not in self.listeners:
            self._kill()
            raise ServerError(f"ready line has no c2s listener: {line!r}")
        return self

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(text)
            self._stdout_queue.put(text)
        self._stdout_queue.put(None)

    def _wait_exit(self, timeout: float) -> Optional[int]:
        assert self.process is not None
        try:
            self.exit_status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_status

    def _kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def kill(self) -> None:
        """SIGKILL (no shutdown path runs) and wait; the data directory stays, so start()
        brings the same server back on new ports."""
        if self.process is None or self.process.poll() is not None:
            raise ServerError(f"server is not running\n{self.report()}")
        self._kill()
        if self.process.stdout:
            self.process.stdout.close()
        if self._stderr_file:
            self._stderr_file.close()
            self._stderr_file = None

    def stop_keeping_data(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (graceful shutdown) and wait, like stop(), but the data directory stays,
        so start() brings the same server back on new ports (a planned restart)."""
        self.terminate()
        status = self._wait_exit(timeout)
        if status != 0:
            self.keep_tmp = True
            if status is None:
                self._kill()
            raise ServerError(f"server exited with status {status} after SIGTERM (expected 0)\n"
                              f"{self.report()}")
        if self.process.stdout:
            self.process.stdout.close()
        if self._stderr_file:
            self._stderr_file.close()
            self._stderr_file = None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """Sends SIGTERM (graceful shutdown, docs/cli.md) without waiting; see wait_stopped()."""
        if self.process is None or self.process.poll() is not None:
            raise ServerError(f"server is not running (status {self.process and self.process.returncode})\n"
                              f"{self.report()}")
        self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = STOP_TIMEOUT) -> int:
        """Waits (bounded) for the process to exit after terminate(); raises ServerError unless
        the exit status is 0 and stdout held nothing but the ready line. Cleans up."""
        try:
            status = self._wait_exit(timeout)
            if status is None:
                self._kill()
                raise ServerError(f"server did not exit within {timeout}s of SIGTERM\n{self.report()}")
            if status != 0:
                raise ServerError(f"server exited with status {status} after SIGTERM (expected 0)\n"
                                  f"{self.report()}")
            extra = [line for line in self.stdout_lines[1:] if line.strip()]
            if extra:
                raise ServerError(f"server printed more than the one ready line on stdout: {extra!r}")
            return status
        except ServerError:
            self.keep_tmp = True
            raise
        finally:
            self._cleanup()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait (bounded). Raises ServerError unless the exit status is 0."""
        if self.process is None:
            self._cleanup()
            return 0
        if self.process.poll() is not None:
            self.keep_tmp = True
            status = self.process.returncode
            self._cleanup()
            raise ServerError(f"server had already exited (status {status}) before stop()\n"
                              f"{self.report()}")
        self.terminate()
        return self.wait_stopped(timeout)

    def _cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        if self.process and self.process.stdout:
            self.process.stdout.close()
        if self._stderr_file:
            self._stderr_file.close()
            self._stderr_file = None
        if self.keep_tmp:
            sys.stderr.write(f"\n[harness] kept server directory {self.tmp}\n")
            if self.pg_database:
                sys.stderr.write(f"[harness] kept PostgreSQL database {self.pg_database}\n")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self._pg_owned:
                _psql(os.environ["NINES_TEST_STORE_PG"], f"DROP DATABASE IF EXISTS {self.pg_database} WITH (FORCE)")

    def sql(self, statement: str, args: tuple = ()) -> list:
        """Runs one SQL statement on the server's store, whichever backend it is
        (`?` placeholders), and returns its rows as tuples; integers come back as int."""
        if self.pg_uri is None:
            conn = sqlite3.connect(str(self.data_dir / "nines.db"), timeout=10)
            try:
                with conn:
                    return [tuple(row) for row in conn.execute(statement, args).fetchall()]
            finally:
                conn.close()
        parts = statement.split("?")
        if len(parts) != len(args) + 1:
            raise ValueError("placeholders and arguments differ in number")
        text = parts[0]
        for arg, rest in zip(args, parts[1:]):
            literal = str(arg) if isinstance(arg, int) else "'" + str(arg).replace("'", "''") + "'"
            text += literal + rest
        out = subprocess.run(["psql", "-qAt", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-d", self.pg_uri, "-c", text],
                             check=True, capture_output=True, text=True, timeout=60).stdout
        rows = []
        for line in out.splitlines():
            rows.append(tuple(int(f) if re.fullmatch(r"-?[0-9]+", f) else f for f in line.split("\x1f")))
        return rows

    @contextlib.contextmanager
    def holding_writes(self, table: str):
        """Holds back the server's writes for the `with` block while its reads go on, the
        way a slow group commit or a busy database would. SQLite: another connection holds
        the write lock, so every write waits (for at most the server's 5 s busy timeout:
        keep the block shorter). PostgreSQL: writes to `table` wait."""
        if self.pg_uri is None:
            conn = sqlite3.connect(str(self.data_dir / "nines.db"), timeout=10, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield
                finally:
                    conn.execute("COMMIT")
            finally:
                conn.close()
            return
        psql = subprocess.Popen(["psql", "-qAt", "-v", "ON_ERROR_STOP=1", "-d", self.pg_uri],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            psql.stdin.write(f"BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE; SELECT 'locked';\n")
            psql.stdin.flush()
            if psql.stdout.readline().strip() != "locked":
                raise ServerError(f"could not lock {table}")
            yield
        finally:
            psql.communicate("COMMIT;\n", timeout=60)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.keep_tmp = True
        self.stop()

    # -- addresses ---------------------------------------------------------

    @property
    def c2s(self) -> tuple:
        """(host, port) of the STARTTLS listener."""
        return self.listeners["c2s"]

    @property
    def c2s_tls(self) -> tuple:
        """(host, port) of the direct-TLS listener (XEP-0368)."""
        if "c2s_tls" not in self.listeners:
            raise ServerError(f"ready line has no c2s_tls listener: {self.stdout_lines[:1]!r}")
        return self.listeners["c2s_tls"]

    @property
    def components(self) -> tuple:
        """(host, port) of the XEP-0114 component listener (only with components.secrets)."""
        if "components" not in self.listeners:
            raise ServerError(f"ready line has no components listener: {self.stdout_lines[:1]!r}")
        return self.listeners["components"]

    # -- CLI ---------------------------------------------------------------

    def cli(self, *args: str, stdin: str = "", timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
        """Runs `nines ARGS -c <config>` and returns the completed process (bounded)."""
        global _hung_cli
        if _hung_cli is not None:
            raise ServerError(f"not running `nines {' '.join(args)}`: an earlier CLI call hung ({_hung_cli})")
        try:
            return subprocess.run(
                [str(self.binary), *args, "-c", str(self.config_path)],
                input=stdin.encode(),
                capture_output=True,
                timeout=timeout,
                cwd=self.tmp,
                preexec_fn=_die_with_parent,
            )
        except subprocess.TimeoutExpired:
            _hung_cli = f"`nines {' '.join(args)}` did not finish within {timeout}s"
            raise ServerError(_hung_cli) from None

    def add_user(self, user: str, password: str) -> None:
        """`nines user add USER --password-stdin`; raises ServerError unless status 0."""
        done = self.cli("user", "add", user, "--password-stdin", stdin=password + "\n")
        if done.returncode != 0:
            raise ServerError(f"`nines user add {user}` failed with status {done.returncode}: "
                              f"{done.stderr.decode(errors='replace').strip()}")

    # -- reload (SIGHUP, docs/cli.md) ---------------------------------------

    def write_config(self, extra: Optional[dict] = None, *, text: Optional[str] = None) -> None:
        """Replaces the config file atomically (a SIGHUP never reads half a file): either
        the current config merged with `extra`, which becomes the current config, or raw
        `text` (e.g. a broken file), which leaves self.config as it was."""
        if text is None:
            self.config = merge_config(self.config, extra)
            text = to_toml(self.config)
        tmp = self.config_path.with_name(self.config_path.name + ".new")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def reload(self) -> None:
        """Sends SIGHUP: the server re-reads its config file and certificate."""
        if self.process is None or self.process.poll() is not None:
            raise ServerError(f"server is not running (status {self.process and self.process.returncode})\n"
                              f"{self.report()}")
        self.process.send_signal(signal.SIGHUP)

    def stderr_offset(self) -> int:
        """Current size of the captured stderr, for wait_for_log(since=...)."""
        if self._stderr_file:
            self._stderr_file.flush()
        try:
            return self.stderr_path.stat().st_size
        except OSError:
            return 0

    def wait_for_log(self, pattern: str, since: int = 0, timeout: float = IO_TIMEOUT) -> str:
        """Waits (bounded) for a stderr line matching the regex `pattern` written after byte
        offset `since`; returns the line or raises AssertionError."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.stderr_path, "rb") as f:
                    f.seek(since)
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                text = ""
            for line in text.splitlines():
                if regex.search(line):
                    return line
            if time.monotonic() >= deadline:
                raise AssertionError(f"no stderr line matching {pattern!r} within {timeout}s\n{self.report()}")
            time.sleep(0.05)

    # -- diagnostics -------------------------------------------------------

    def stderr_tail(self, lines: int = 80) -> str:
        try:
            if self._stderr_file:
                self._stderr_file.flush()
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "(no stderr captured)"
        return "\n".join(text.splitlines()[-lines:])

    def report(self) -> str:
        return (f"--- nines stderr ({self.stderr_path}), last lines ---\n{self.stderr_tail()}\n"
                f"--- end of nines stderr ---")


_user_counter = itertools.count(1)


def unique_user(prefix: str) -> str:
    """A fresh localpart (lowercase, so RFC 7622 normalisation leaves it alone)."""
    return f"{prefix}{next(_user_counter)}x{secrets.token_hex(3)}"


def new_password() -> str:
    return "pw-" + secrets.token_urlsafe(12)


class ServerTestCase(unittest.TestCase):
    """Base for synchronous tests: one server per class (SERVER_CONFIG overrides keys).

    If any test of the class fails, the server's stderr tail is printed after it
    and the temporary directory is kept.
    """

    SERVER_CONFIG: Optional[dict] = None
    server: Server

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

    def new_account(self, prefix: str = "user") -> tuple:
        """Creates an account with a fresh name; returns (localpart, bare JID, password)."""
        user = unique_user(prefix)
        password = new_password()
        self.server.add_user(user, password)
        return user, f"{user}@{DOMAIN}", password


def run_reporting_server(test: unittest.TestCase, result, run: Callable):
    """Runs a test; if it failed or errored, prints the class server's stderr tail."""
    if result is None:
        return run(result)
    before = len(result.failures) + len(result.errors)
    outcome = run(result)
    server = getattr(type(test), "server", None)
    if len(result.failures) + len(result.errors) > before and isinstance(server, Server):
        server.keep_tmp = True
        sys.stderr.write(f"\n[harness] {test.id()} failed; server stderr follows\n{server.report()}\n")
    return outcome


# --------------------------------------------------------------------------
# Raw XMPP over a real socket


class StreamClosed(AssertionError):
    pass


def tls_client_context(max_version: Optional[ssl.TLSVersion] = None) -> ssl.SSLContext:
    """A client context that accepts the server's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


class _OpenSSLTransport:
    """A TLS client over pyOpenSSL (Debian python3-openssl).

    Used only where the stdlib ssl module falls short: RFC 9266 tls-exporter
    channel binding needs SSL_export_keying_material, which `ssl` does not expose.
    The socket is non-blocking and every operation waits with select() up to a
    deadline.
    """

    def __init__(self, sock: socket.socket, server_hostname: str, timeout: float):
        from OpenSSL import SSL  # python3-openssl

        self._SSL = SSL
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        self.sock = sock
        self.sock.setblocking(False)
        self.conn = SSL.Connection(ctx, sock)
        self.conn.set_tlsext_host_name(server_hostname.encode())
        self.conn.set_connect_state()
        self._retry(self.conn.do_handshake, time.monotonic() + timeout)

    def _retry(self, op, deadline, *args):
        SSL = self._SSL
        while True:
            try:
                return op(*args)
            except SSL.WantReadError:
                self._wait(deadline, read=True)
            except SSL.WantWriteError:
                self._wait(deadline, read=False)

    def _wait(self, deadline: float, read: bool) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("TLS operation timed out")
        r, w, _ = select.select([self.sock] if read else [], [] if read else [self.sock], [], remaining)
        if not r and not w:
            raise TimeoutError("TLS operation timed out")

    def recv(self, size: int, timeout: float) -> bytes:
        SSL = self._SSL
        try:
            return self._retry(self.conn.recv, time.monotonic() + timeout, size)
        except SSL.ZeroReturnError:
            return b""
        except SSL.SysCallError as e:
            if e.args and e.args[0] in (-1, 104):  # unexpected EOF / connection reset
                return b""
            raise

    def sendall(self, data: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            sent = self._retry(self.conn.send, deadline, bytes(view[:16384]))
            view = view[sent:]

    def tls_exporter(self) -> bytes:
        """RFC 9266: 32 bytes of EXPORTER-Channel-Binding with no context."""
        return self.conn.export_keying_material(b"EXPORTER-Channel-Binding", 32, None)

    def version(self) -> str:
        return self.conn.get_protocol_version_name()

    def close(self) -> None:
        try:
            self.conn.shutdown()
        except Exception:
            pass
        self.sock.close()


class _SocketTransport:
    """Plain TCP or stdlib-ssl socket with per-call timeouts."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def recv(self, size: int, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(size)
        except ssl.SSLZeroReturnError:
            return b""
        except (ConnectionResetError, ssl.SSLEOFError):
            return b""

    def sendall(self, data: bytes, timeout: float) -> None:
        self.sock.settimeout(timeout)
        self.sock.sendall(data)

    def tls_exporter(self) -> bytes:
        raise NotImplementedError("the ssl module cannot export keying material; use tls='pyopenssl'")

    def version(self) -> Optional[str]:
        return self.sock.version() if isinstance(self.sock, ssl.SSLSocket) else None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


def ns_of(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def to_xml(elem: ET.Element) -> str:
    return ET.tostring(elem, encoding="unicode")


class RawStream:
    """One client-to-server XMPP stream on a real socket, read with a pull parser.

    `recv()` returns each complete top-level element (a stanza, <features/>,
    <proceed/>, <success/>, ...) as an ElementTree element with namespaced tags.
    Stream restarts (after STARTTLS and SASL) reset the parser. All reads take a
    timeout; a timeout raises TimeoutError, a closed stream raises StreamClosed.
    """

    def __init__(self, host: str, port: int, *, direct_tls: bool = False, tls: str = "ssl",
                 timeout: float = IO_TIMEOUT, domain: str = DOMAIN):
        self.domain = domain
        self.timeout = timeout
        self.tls_backend = tls
        self.tls_active = False
        self.log: list[str] = []  # "C: ..." / "S: ..." transcript, for failure messages
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = _SocketTransport(sock)
        self._raw_sock = sock
        if direct_tls:
            self._wrap_tls()
        self.features: Optional[ET.Element] = None
        self.stream_attrs: dict = {}
        self.closed = False
        self.saw_stream_end = False  # the server sent </stream:stream>
        self._reset_parser()

    # -- plumbing ----------------------------------------------------------

    def _wrap_tls(self) -> None:
        if self.tls_backend == "pyopenssl":
            self.transport = _OpenSSLTransport(self._raw_sock, self.domain, self.timeout)
        else:
            ctx = tls_client_context()
            self._raw_sock.settimeout(self.timeout)
            self.transport = _SocketTransport(ctx.wrap_socket(self._raw_sock, server_hostname=self.domain))
        self.tls_active = True

    def _reset_parser(self) -> None:
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._root: Optional[ET.Element] = None
        self._pending: list = []
        self.stream_attrs = {}

    def send(self, data: str) -> None:
        self.log.append("C: " + data)
        self.transport.sendall(data.encode("utf-8"), self.timeout)

    def transcript(self) -> str:
        return "\n".join(self.log[-40:])

    def _feed_events(self) -> None:
        for event, elem in self._parser.read_events():
            if event == "start":
                self._depth += 1
                if self._depth == 1:
                    self._root = elem
                    self.stream_attrs = dict(elem.attrib)
                    self.log.append(f"S: <stream:stream {self.stream_attrs}>")
            elif event == "end":
                self._depth -= 1
                if self._depth == 1:
                    self._pending.append(elem)
                    self.log.append("S: " + to_xml(elem))
                    if self._root is not None:
                        self._root.remove(elem)
                elif self._depth == 0:
                    self.closed = True
                    self.saw_stream_end = True
                    self.log.append("S: </stream:stream>")

    def _read_more(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no data from server within {self.timeout}s\n{self.transcript()}")
        try:
            data = self.transport.recv(65536, remaining)
        except (socket.timeout, TimeoutError):
            raise TimeoutError(f"no data from server in time\n{self.transcript()}") from None
        if not data:
            self.closed = True
            raise StreamClosed(f"server closed the connection\n{self.transcript()}")
        try:
            self._parser.feed(data)
        except ET.ParseError as e:
            raise AssertionError(f"server sent malformed XML ({e}): {data!r}") from None
        self._feed_events()

    def recv(self, timeout: Optional[float] = None) -> ET.Element:
        """The next top-level element from the server."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self._pending:
            if self.closed:
                raise StreamClosed(f"stream closed by server\n{self.transcript()}")
            self._read_more(deadline)
        return self._pending.pop(0)

    def recv_until(self, pred: Callable[[ET.Element], bool], timeout: Optional[float] = None) -> ET.Element:
        """Reads elements until one matches `pred` (others are dropped, kept in the transcript)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            elem = self.recv(max(0.0, deadline - time.monotonic()) or 0.001)
            if pred(elem):
                return elem

    def wait_stream_header(self, timeout: Optional[float] = None) -> dict:
        """Reads until the server's stream header has arrived; returns its attributes."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self.stream_attrs:
            if self.closed:
                raise StreamClosed(f"stream closed by server\n{self.transcript()}")
            self._read_more(deadline)
        return self.stream_attrs

    def wait_closed(self, timeout: Optional[float] = None) -> None:
        """Reads until the server closes the stream or the TCP connection."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        try:
            while not self.closed:
                self._read_more(deadline)
        except StreamClosed:
            pass

    # -- negotiation -------------------------------------------------------

    def open(self) -> ET.Element:
        """Sends a stream header and returns the server's <stream:features/>."""
        self._reset_parser()
        self.send("<?xml version='1.0'?>"
                  f"<stream:stream to='{self.domain}' version='1.0' xml:lang='en' "
                  f"xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}'>")
        elem = self.recv()
        if elem.tag != f"{{{NS_STREAM}}}features":
            raise AssertionError(f"expected <stream:features/>, got {to_xml(elem)}")
        self.features = elem
        return elem

    def mechanisms(self) -> list[str]:
        assert self.features is not None
        mechs = self.features.find(f"{{{NS_SASL}}}mechanisms")
        return [] if mechs is None else [(m.text or "").strip() for m in mechs.findall(f"{{{NS_SASL}}}mechanism")]

    def starttls(self) -> ET.Element:
        """RFC 6120 §5: <starttls/>, <proceed/>, TLS handshake, new stream. Returns features."""
        assert self.features is not None and self.features.find(f"{{{NS_TLS}}}starttls") is not None, \
            f"server did not offer STARTTLS: {to_xml(self.features)}"
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        elem = self.recv()
        if elem.tag != f"{{{NS_TLS}}}proceed":
            raise AssertionError(f"expected <proceed/>, got {to_xml(elem)}")
        self._wrap_tls()
        return self.open()

    def auth_plain(self, user: str, password: str) -> ET.Element:
        """RFC 4616 PLAIN with an initial response; returns <success/> or <failure/>."""
        payload = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>")
        return self.recv()

    def auth_scram(self, user: str, password: str, mechanism: str,
                   gs2_cbind: Optional[str] = None, cb_data: Optional[bytes] = None) -> "ScramOutcome":
        """Runs SCRAM (RFC 5802/7677) over this stream.

        `mechanism` is e.g. "SCRAM-SHA-256-PLUS". gs2_cbind defaults to
        "p=tls-exporter" for -PLUS and "n" otherwise; cb_data defaults to this
        connection's RFC 9266 tls-exporter value for -PLUS.
        """
        hash_name = mechanism[len("SCRAM-"):].removesuffix("-PLUS")
        digest = {"SHA-1": hashlib.sha1, "SHA-256": hashlib.sha256, "SHA-512": hashlib.sha512}[hash_name]
        plus = mechanism.endswith("-PLUS")
        if gs2_cbind is None:
            gs2_cbind = "p=tls-exporter" if plus else "n"
        if cb_data is None:
            cb_data = self.transport.tls_exporter() if gs2_cbind.startswith("p=") else b""
        scram = ScramClient(digest, user, password, gs2_cbind, cb_data)
        first = base64.b64encode(scram.client_first()).decode()
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{first}</auth>")
        elem = self.recv()
        if local(elem.tag) != "challenge":
            return ScramOutcome(elem, scram, server_verified=False)
        server_first = base64.b64decode(elem.text or "")
        final = base64.b64encode(scram.client_final(server_first)).decode()
        self.send(f"<response xmlns='{NS_SASL}'>{final}</response>")
        elem = self.recv()
        if local(elem.tag) == "challenge":
            # Server-final sent as a challenge (RFC 6120 §6.4.3 allows it); answer empty.
            verified = scram.verify_server_final(base64.b64decode(elem.text or ""))
            self.send(f"<response xmlns='{NS_SASL}'/>")
            elem = self.recv()
            return ScramOutcome(elem, scram, server_verified=verified)
        verified = False
        if local(elem.tag) == "success" and (elem.text or "").strip():
            verified = scram.verify_server_final(base64.b64decode(elem.text))
        return ScramOutcome(elem, scram, server_verified=verified)

    def bind(self, resource: str = "raw") -> str:
        """RFC 6120 §7 resource binding; returns the full JID the server assigned."""
        assert self.features is not None and self.features.find(f"{{{NS_BIND}}}bind") is not None, \
            f"server did not offer resource binding: {to_xml(self.features)}"
        self.send(f"<iq type='set' id='bind_1'><bind xmlns='{NS_BIND}'>"
                  f"<resource>{xml_escape(resource)}</resource></bind></iq>")
        elem = self.recv_until(lambda e: local(e.tag) == "iq" and e.get("id") == "bind_1")
        if elem.get("type") != "result":
            raise AssertionError(f"bind failed: {to_xml(elem)}")
        jid = elem.findtext(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")
        if not jid:
            raise AssertionError(f"bind result has no <jid/>: {to_xml(elem)}")
        return jid.strip()

    def close(self, wait: float = 2.0) -> None:
        """Closes politely (RFC 6120 §4.4): sends </stream:stream>, waits up to `wait` seconds
        for the server's own closing tag or TCP close, then closes the socket."""
        if not self.closed:
            try:
                self.send("</stream:stream>")
                self.wait_closed(timeout=wait)
            except (OSError, TimeoutError, AssertionError):
                pass
        self.transport.close()

    def abort(self) -> None:
        """Closes the socket at once, whatever the server is still sending."""
        self.transport.close()

    def reset(self) -> None:
        """Resets the TCP connection (RST instead of FIN): the server's next write to it fails."""
        # The socket that holds the descriptor: wrapping it in stdlib ssl moved it there.
        sock = getattr(self.transport, "sock", self._raw_sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def __enter__(self) -> "RawStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect_starttls(server: Server, *, tls: str = "ssl") -> RawStream:
    """TCP to the STARTTLS port, stream open, STARTTLS, stream restart (features after TLS)."""
    stream = RawStream(*server.c2s, tls=tls)
    try:
        stream.open()
        stream.starttls()
    except BaseException:
        stream.close()
        raise
    return stream


def connect_direct_tls(server: Server, *, tls: str = "ssl") -> RawStream:
    """TLS from the first byte (XEP-0368) to the direct-TLS port, stream open."""
    stream = RawStream(*server.c2s_tls, direct_tls=True, tls=tls)
    try:
        stream.open()
    except BaseException:
        stream.close()
        raise
    return stream


def login_plain(server: Server, user: str, password: str, *, direct_tls: bool = False,
                resource: str = "raw") -> tuple:
    """STARTTLS (or direct TLS) + SASL PLAIN + restart + bind. Returns (stream, full JID)."""
    stream = connect_direct_tls(server) if direct_tls else connect_starttls(server)
    try:
        elem = stream.auth_plain(user, password)
        if local(elem.tag) != "success":
            raise AssertionError(f"PLAIN login failed: {to_xml(elem)}")
        stream.open()
        jid = stream.bind(resource)
    except BaseException:
        stream.close()
        raise
    return stream, jid


# --------------------------------------------------------------------------
# SCRAM client (RFC 5802, RFC 7677; channel binding per RFC 9266)


def _saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    """Client side of SCRAM. Passwords in these tests are ASCII, so SASLprep is the identity."""

    def __init__(self, digest, user: str, password: str, gs2_cbind: str, cb_data: bytes):
        self.digest = digest
        self.user = user
        self.password = password
        self.gs2_header = f"{gs2_cbind},,".encode()
        self.cb_data = cb_data
        self.cnonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self.client_first_bare = f"n={_saslname(user)},r={self.cnonce}".encode()
        self.server_signature: Optional[bytes] = None

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self.digest).digest()

    def client_first(self) -> bytes:
        return self.gs2_header + self.client_first_bare

    def client_final(self, server_first: bytes) -> bytes:
        attrs = dict(item.split(b"=", 1) for item in server_first.split(b","))
        nonce, salt, iterations = attrs[b"r"], base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
        if not nonce.startswith(self.cnonce.encode()):
            raise AssertionError(f"server nonce {nonce!r} does not extend ours {self.cnonce!r}")
        salted = hashlib.pbkdf2_hmac(self.digest().name, self.password.encode(), salt, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = self.digest(client_key).digest()
        channel = base64.b64encode(self.gs2_header + self.cb_data)
        without_proof = b"c=" + channel + b",r=" + nonce
        auth_message = self.client_first_bare + b"," + server_first + b"," + without_proof
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return without_proof + b",p=" + base64.b64encode(proof)

    def verify_server_final(self, server_final: bytes) -> bool:
        attrs = dict(item.split(b"=", 1) for item in server_final.split(b",") if b"=" in item)
        if b"v" not in attrs or self.server_signature is None:
            return False
        return hmac.compare_digest(base64.b64decode(attrs[b"v"]), self.server_signature)


class ScramOutcome:
    def __init__(self, final: ET.Element, scram: ScramClient, server_verified: bool):
        self.final = final
        self.scram = scram
        self.server_verified = server_verified

    @property
    def succeeded(self) -> bool:
        return local(self.final.tag) == "success"

    @property
    def failure_condition(self) -> Optional[str]:
        if local(self.final.tag) != "failure":
            return None
        for child in self.final:
            if local(child.tag) != "text":
                return local(child.tag)
        return None


def component_handshake(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: lower-case hex SHA-1 of the stream id followed by the secret."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


def open_component(server: Server, domain: str, *, ns: str = NS_COMPONENT) -> RawStream:
    """TCP to the component listener and a jabber:component:accept stream header for
    `domain`; returns once the server's header (with its id) has arrived."""
    stream = RawStream(*server.components, domain=domain)
    try:
        stream.send(f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='{ns}' "
                    f"xmlns:stream='{NS_STREAM}'>")
        stream.wait_stream_header()
    except BaseException:
        stream.close()
        raise
    return stream


def connect_component(server: Server, domain: str, secret: str) -> RawStream:
    """open_component, then the handshake; fails unless the server answers <handshake/>."""
    stream = open_component(server, domain)
    try:
        stream.send(f"<handshake>{component_handshake(stream.stream_attrs.get('id', ''), secret)}</handshake>")
        elem = stream.recv()
        if elem.tag != f"{{{NS_COMPONENT}}}handshake":
            raise AssertionError(f"component handshake for {domain} refused: {to_xml(elem)}")
    except BaseException:
        stream.close()
        raise
    return stream


def stream_error(elem: ET.Element) -> Optional[str]:
    """The defined condition of a <stream:error/> (RFC 6120 §4.9.3), or None."""
    if elem.tag != f"{{{NS_STREAM}}}error":
        return None
    for child in elem:
        if ns_of(child.tag) == NS_STREAMS_ERR and local(child.tag) != "text":
            return local(child.tag)
    return None


def stanza_error(elem: ET.Element) -> str:
    """The defined condition of a stanza's <error/> (RFC 6120 §8.3.3), in any stanza namespace, or ""."""
    for err in elem:
        if local(err.tag) != "error":
            continue
        for child in err:
            if ns_of(child.tag) == NS_STANZAS and local(child.tag) != "text":
                return local(child.tag)
    return ""


def failure_condition(elem: ET.Element) -> Optional[str]:
    """The defined condition of a SASL <failure/> (RFC 6120 §6.5)."""
    if local(elem.tag) != "failure":
        return None
    for child in elem:
        if local(child.tag) != "text":
            return local(child.tag)
    return None


__all__ = [
    "DOMAIN", "REPO_ROOT", "Server", "ServerError", "ServerTestCase", "RawStream", "StreamClosed",
    "ScramClient", "ScramOutcome", "connect_starttls", "connect_direct_tls", "login_plain",
    "failure_condition", "component_handshake", "open_component", "connect_component", "stream_error", "stanza_error",
    "local", "ns_of", "to_xml", "nines_bin", "unique_user", "new_password",
    "tls_client_context", "run_reporting_server", "quoteattr", "xml_escape",
    "NS_STREAM", "NS_CLIENT", "NS_TLS", "NS_SASL", "NS_BIND", "NS_STANZAS", "NS_STREAMS_ERR",
    "NS_COMPONENT",
]


def mam_message_ids(stream, peer_bare: str) -> list:
    """Every message id (the sender's 'id' attribute) in the stream's archive with
    peer_bare, oldest first, paging through MAM (XEP-0313) 250 at a time."""
    ids, after, page = [], None, 0
    while True:
        page += 1
        rsm = "<set xmlns='http://jabber.org/protocol/rsm'><max>250</max>" + \
            (f"<after>{after}</after>" if after else "") + "</set>"
        form = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                f"<value>urn:xmpp:mam:2</value></field><field var='with'><value>{peer_bare}</value>"
                "</field></x>")
        qid = f"q{page}"
        stream.send(f"<iq type='set' id='{qid}'><query xmlns='urn:xmpp:mam:2' queryid='{qid}'>"
                    f"{form}{rsm}</query></iq>")
        while True:
            elem = stream.recv(timeout=30)
            if local(elem.tag) == "message":
                msg = elem.find("{urn:xmpp:mam:2}result/{urn:xmpp:forward:0}forwarded/{jabber:client}message")
                if msg is not None:
                    ids.append(msg.get("id"))
            elif local(elem.tag) == "iq" and elem.get("id") == qid:
                if elem.get("type") != "result":
                    raise AssertionError(f"MAM query failed: {to_xml(elem)}")
                fin = elem.find("{urn:xmpp:mam:2}fin")
                if fin.get("complete") == "true":
                    return ids
                after = fin.findtext("{http://jabber.org/protocol/rsm}set/{http://jabber.org/protocol/rsm}last")
                break
