"""The `nines` command as operators and scripts use it: the contract in docs/cli.md.

Every call runs the real binary as a subprocess (bounded by a timeout) and checks the exit
status (0 success, 1 the operation failed with a `nines: ` line on stderr, 2 usage error or
bad config) and the output. Account commands are checked end to end: what `user add`,
`passwd` and `del` did is proven by logging in (or failing to) over XMPP, both with the
server running and with it stopped (then started afterwards).

Run: cd tests/protocol && /usr/bin/python3 -m unittest -v test_cli
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path
from typing import Optional

from harness import (CLI_TIMEOUT, DOMAIN, REPO_ROOT, Server, ServerTestCase, connect_starttls, login_plain, merge_config,
                     new_password, nines_bin, store_config_for, to_toml,
                     to_xml, unique_user)
from test_features import NS_VCARD, can_log_in, login, message_with_body, subscribe

NS_ROSTER = "jabber:iq:roster"


def run_nines(*args: str, stdin: str = "", cwd: Optional[Path] = None,
              timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """`nines ARGS` with text stdout/stderr; a hang is a failure, not a hung test run."""
    try:
        return subprocess.run([str(nines_bin()), *args], input=stdin, capture_output=True, text=True,
                              timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`nines {' '.join(args)}` did not finish within {timeout}s "
                             f"(stdout {e.stdout!r}, stderr {e.stderr!r})") from None


def describe(done: subprocess.CompletedProcess) -> str:
    return f"`{' '.join(done.args[1:])}` -> status {done.returncode}\nstdout: {done.stdout!r}\nstderr: {done.stderr!r}"


class CliAssertions(unittest.TestCase):

    def assert_status(self, done: subprocess.CompletedProcess, status: int) -> None:
        self.assertEqual(done.returncode, status, describe(done))

    def assert_failed(self, done: subprocess.CompletedProcess, status: int = 1, *mentions: str) -> None:
        """Status `status`, one `nines: ...` line on stderr naming each of `mentions`."""
        self.assert_status(done, status)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        self.assertTrue(lines, f"no reason on stderr: {describe(done)}")
        if status == 1:
            # docs/cli.md: "the reason is on stderr, one line, starting `nines: `"
            self.assertEqual(len(lines), 1, f"the reason is not one line: {describe(done)}")
            self.assertTrue(lines[0].startswith("nines: "), f"reason does not start 'nines: ': {describe(done)}")
        for text in mentions:
            self.assertIn(text, done.stderr, f"stderr does not mention {text!r}: {describe(done)}")


def project_version() -> str:
    m = re.search(r"project\(\s*nines\s+VERSION\s+([0-9][^\s)]*)", (REPO_ROOT / "CMakeLists.txt").read_text())
    assert m, "no project(nines VERSION ...) in CMakeLists.txt"
    return m.group(1)


# --------------------------------------------------------------------------
# version, config check, config doc, usage errors


class VersionAndConfigTest(CliAssertions):

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="nines-cli-"))

    def tearDown(self) -> None:
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def test_version(self):
        done = run_nines("version")
        self.assert_status(done, 0)
        self.assertRegex(done.stdout, r"^nines \S+\n$", describe(done))
        self.assertEqual(done.stdout, f"nines {project_version()}\n", describe(done))

    def test_config_check_good_file(self):
        path = self.write("good.toml", "\n".join([
            "[server]", 'domain = "chat.example.org"', 'data_dir = "/var/lib/nines"', "threads = 4", "",
            "[listen]", "c2s_port = 0", "c2s_tls_port = -1", "",
            "[auth]", 'mechanisms = ["SCRAM-SHA-256", "PLAIN"]', "",
            "[registration]", "enabled = true", "",
            "[limits]", "stanza_size = 65536", "idle_timeout = 60", ""]))
        done = run_nines("config", "check", str(path))
        self.assert_status(done, 0)
        self.assertEqual(done.stdout, f"{path}: ok\n", describe(done))

        # FILE is printed as given, relative paths included; an empty file is all defaults.
        self.write("empty.toml", "")
        done = run_nines("config", "check", "empty.toml", cwd=self.tmp)
        self.assert_status(done, 0)
        self.assertEqual(done.stdout, "empty.toml: ok\n", describe(done))

    def test_config_check_unknown_key_names_key_and_line(self):
        path = self.write("typo.toml", '[server]\ndomain = "localhost"\n\n# a comment\n[limits]\nstanza_sise = 1000\n')
        done = run_nines("config", "check", str(path))
        self.assert_failed(done, 2, "stanza_sise", "line 6")
        self.assertNotIn("ok", done.stdout, describe(done))

        path = self.write("toplevel.toml", '\n\ndomian = "localhost"\n')
        done = run_nines("config", "check", str(path))
        self.assert_failed(done, 2, "domian", "line 3")

        path = self.write("section.toml", '[server]\ndomain = "localhost"\n[lmits]\nstanza_size = 1000\n')
        done = run_nines("config", "check", str(path))
        self.assert_failed(done, 2, "lmits", "line 4")

    def test_config_check_wrong_type_names_key(self):
        for body, key in (('[server]\nthreads = "two"\n', "server.threads"),
                          ('[registration]\nenabled = "yes"\n', "registration.enabled"),
                          ('[server]\ndomain = 42\n', "server.domain"),
                          ('[auth]\nmechanisms = "PLAIN"\n', "auth.mechanisms"),
                          ('[limits]\nidle_timeout = 1.5\n', "limits.idle_timeout")):
            with self.subTest(key=key):
                done = run_nines("config", "check", str(self.write("type.toml", body)))
                self.assert_failed(done, 2, key, "line 2")

    def test_config_check_out_of_bounds_names_key(self):
        for body, key in (('[listen]\nc2s_port = 70000\n', "listen.c2s_port"),
                          ('[listen]\nc2s_tls_port = -2\n', "listen.c2s_tls_port"),
                          ('[auth]\nscram_iterations = 100\n', "auth.scram_iterations"),
                          ('[limits]\nstanza_size = 10\n', "limits.stanza_size"),
                          ('[limits]\nresources_per_account = 0\n', "limits.resources_per_account")):
            with self.subTest(key=key):
                done = run_nines("config", "check", str(self.write("bounds.toml", body)))
                self.assert_failed(done, 2, key)

    def test_config_check_syntax_error_and_missing_file(self):
        done = run_nines("config", "check", str(self.write("syntax.toml", '[server]\ndomain = "x"\n[limits\n')))
        self.assert_failed(done, 2, "line 3")
        done = run_nines("config", "check", str(self.tmp / "does-not-exist.toml"))
        self.assert_failed(done, 2, "does-not-exist.toml")

    def test_config_doc_equals_docs_config_md(self):
        done = run_nines("config", "doc")
        self.assert_status(done, 0)
        expected = (REPO_ROOT / "docs" / "config.md").read_text()
        self.assertEqual(done.stdout, expected, "`nines config doc` and docs/config.md differ")

    def test_usage_errors_exit_2(self):
        cases = [
            (),                                            # no subcommand
            ("frobnicate",),                               # unknown subcommand
            ("--bogus",),                                  # unknown option
            ("user",),                                     # no action
            ("user", "frob", "alice"),                     # unknown action
            ("user", "add"),                               # missing USER
            ("user", "passwd"),
            ("user", "del"),
            ("user", "list", "--bogus"),
            ("user", "add", "alice", "--password-stdin", "-c"),  # option without its value
            ("config",),
            ("config", "check"),                           # missing FILE
            ("config", "frob"),
            ("version", "extra"),
            ("serve", "--bogus"),
        ]
        for args in cases:
            with self.subTest(args=args):
                done = run_nines(*args, cwd=self.tmp)
                self.assert_status(done, 2)
                self.assertTrue(done.stderr.strip(), f"usage error without a message: {describe(done)}")
        # Nothing was created by the refused commands (no data directory in the cwd).
        self.assertFalse((self.tmp / "nines-data").exists(), "a usage error created the data directory")

    def test_serve_with_bad_config_exits_2(self):
        data = self.tmp / "data"
        for body, mention in ((f'[server]\ndata_dir = "{data}"\n[listen]\nc2s_port = 0\nc2s_tls_port = 0\n'
                               f'colour = "blue"\n', "colour"),
                              (f'[server]\ndata_dir = "{data}"\nthreads = -1\n', "server.threads"),
                              (f'[server]\ndata_dir = "{data}"\n[listen\n', "line 3")):
            with self.subTest(mention=mention):
                path = self.write("bad.toml", body)
                done = run_nines("serve", "-c", str(path), timeout=20)
                self.assert_failed(done, 2, mention)
                self.assertNotIn("ready", done.stdout, describe(done))
        done = run_nines("serve", "-c", str(self.tmp / "missing.toml"), timeout=20)
        self.assert_failed(done, 2, "missing.toml")
        self.assertFalse(data.exists(), "serve created its data directory despite a bad config")


# --------------------------------------------------------------------------
# user add / passwd / del / list


def user_cmd(server: Server, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """`nines user ARGS -c <server config>` with text output."""
    raw = server.cli("user", *args, stdin=stdin)
    return subprocess.CompletedProcess(raw.args, raw.returncode, raw.stdout.decode(errors="replace"),
                                       raw.stderr.decode(errors="replace"))


class UserCommandsMixin(CliAssertions):
    server: Server

    def add(self, user: str, password: str) -> subprocess.CompletedProcess:
        return user_cmd(self.server, "add", user, "--password-stdin", stdin=password + "\n")

    def passwd(self, user: str, password: str) -> subprocess.CompletedProcess:
        return user_cmd(self.server, "passwd", user, "--password-stdin", stdin=password + "\n")

    def delete(self, user: str) -> subprocess.CompletedProcess:
        return user_cmd(self.server, "del", user)

    def listed(self) -> list:
        done = user_cmd(self.server, "list")
        self.assert_status(done, 0)
        return done.stdout.splitlines()

    def assert_login(self, user: str, password: str, works: bool = True) -> None:
        ok = can_log_in(self.server, user, password)
        self.assertEqual(ok, works, f"login of {user} with {'the right' if works else 'a wrong'} password "
                                    f"{'failed' if works else 'succeeded'}")

    def assert_scram_login(self, user: str, password: str) -> None:
        """The CLI stores SCRAM keys as well (SCRAM-SHA-1 and -256 both derive from them)."""
        for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
            stream = connect_starttls(self.server)
            try:
                outcome = stream.auth_scram(user, password, mech)
                self.assertTrue(outcome.succeeded, f"{mech} login of {user}: {to_xml(outcome.final)}")
                self.assertTrue(outcome.server_verified, f"{mech}: server signature did not verify")
            finally:
                stream.close(wait=0.5)


class UserCommandsWhileRunningTest(UserCommandsMixin, ServerTestCase):
    """The server is running throughout; every change shows at the next login."""

    def test_add_then_list_and_log_in(self):
        user, password = unique_user("run"), new_password()
        done = self.add(user, password)
        self.assert_status(done, 0)
        self.assertEqual(done.stdout, "", f"`user add` printed to stdout: {describe(done)}")
        self.assertIn(user, self.listed())
        self.assert_login(user, password)
        self.assert_scram_login(user, password)
        self.assert_login(user, password + "x", works=False)

    def test_list_is_sorted_one_per_line(self):
        names = [f"{prefix}{unique_user('s')}" for prefix in ("zz", "aa", "mm")]
        for name in names:
            self.assert_status(self.add(name, new_password()), 0)
        listed = self.listed()
        self.assertEqual(listed, sorted(listed), "`user list` is not sorted")
        for name in names:
            self.assertEqual(listed.count(name), 1, listed)

    def test_add_normalises_name(self):
        base = unique_user("norm")
        password = new_password()
        self.assert_status(self.add(base.capitalize(), password), 0)
        listed = self.listed()
        self.assertIn(base, listed)
        self.assertNotIn(base.capitalize(), listed)
        self.assert_login(base, password)
        # The same account, by any spelling: it exists already.
        self.assert_failed(self.add(base, new_password()), 1, base)
        self.assert_failed(self.add(base.upper(), new_password()), 1)

    def test_add_bare_jid_of_own_domain(self):
        user, password = unique_user("jid"), new_password()
        self.assert_status(self.add(f"{user}@{DOMAIN}", password), 0)
        self.assertIn(user, self.listed())
        self.assert_login(user, password)

    def test_add_jid_of_other_domain_refused(self):
        user = unique_user("foreign")
        done = self.add(f"{user}@otherdomain.example", new_password())
        self.assert_failed(done, 2, "otherdomain.example")
        self.assertNotIn(user, self.listed())
        # A full JID is not an account name either.
        done = self.add(f"{user}@{DOMAIN}/phone", new_password())
        self.assertNotEqual(done.returncode, 0, describe(done))
        self.assertNotIn(user, self.listed())

    def test_add_existing_fails_with_message(self):
        user, _bare, password = self.new_account("dupe")
        done = self.add(user, new_password())
        self.assert_failed(done, 1, user)
        self.assert_login(user, password)  # the existing account is untouched

    def test_add_invalid_localpart_fails(self):
        """docs/cli.md: "Fails (status 1) if ... the name is not a valid localpart"."""
        for bad in ("a:b", "with space", "quote\"d", "semi<colon>"):
            with self.subTest(name=bad):
                done = self.add(bad, new_password())
                self.assert_failed(done, 1)

    def test_add_empty_password_fails(self):
        user = unique_user("empty")
        done = user_cmd(self.server, "add", user, "--password-stdin", stdin="\n")
        self.assert_failed(done, 1)
        self.assertNotIn(user, self.listed())
        done = user_cmd(self.server, "add", user, "--password-stdin", stdin="")
        self.assert_failed(done, 1)
        self.assertNotIn(user, self.listed())

    def test_password_is_first_line_of_stdin(self):
        user = unique_user("line")
        done = user_cmd(self.server, "add", user, "--password-stdin", stdin="two words\nsecond line\n")
        self.assert_status(done, 0)
        self.assert_login(user, "two words")
        self.assert_login(user, "two words\nsecond line", works=False)

    def test_passwd_changes_password(self):
        user, _bare, old = self.new_account("pw")
        session = login(self.server, user, old, "before")  # a session from before the change
        try:
            new = new_password()
            done = self.passwd(user, new)
            self.assert_status(done, 0)
            self.assert_login(user, old, works=False)
            self.assert_login(user, new)
            self.assert_scram_login(user, new)
            session.ping_server()
        finally:
            session.stream.abort()

    def test_passwd_missing_user_fails(self):
        user = unique_user("ghost")
        self.assert_failed(self.passwd(user, new_password()), 1, user)
        self.assertNotIn(user, self.listed())

    def test_del_removes_account(self):
        user, _bare, password = self.new_account("del")
        self.assert_login(user, password)
        done = self.delete(user)
        self.assert_status(done, 0)
        self.assertNotIn(user, self.listed())
        self.assert_login(user, password, works=False)
        # Deleting it again: it does not exist.
        self.assert_failed(self.delete(user), 1, user)

    def test_del_missing_user_fails(self):
        user = unique_user("nobody")
        self.assert_failed(self.delete(user), 1, user)

    def test_del_removes_roster_offline_messages_and_vcard(self):
        """docs/cli.md: "Deletes the account with its roster, offline messages and vCard"."""
        alice_user, alice_bare, alice_pw = self.new_account("alice")
        bob_user, bob_bare, bob_pw = self.new_account("bob")
        alice = login(self.server, alice_user, alice_pw, "a")
        bob = login(self.server, bob_user, bob_pw, "b")
        try:
            alice.roster_get()
            bob.roster_get()
            alice.available()
            bob.available()
            subscribe(alice, bob)
            reply = bob.iq("set", f"<vCard xmlns='{NS_VCARD}'><FN>Old Bob</FN></vCard>")
            self.assertEqual(reply.get("type"), "result", to_xml(reply))
            bob.close()
            alice.message(bob_bare, "for the old bob")
            alice.ping_server()
        finally:
            alice.stream.abort()
            bob.stream.abort()

        self.assert_status(self.delete(bob_user), 0)
        new_pw = new_password()
        self.assert_status(self.add(bob_user, new_pw), 0)

        fresh = login(self.server, bob_user, new_pw, "new")
        try:
            roster = fresh.roster_get()
            items = roster.findall(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item")
            self.assertEqual(items, [], f"the re-created account inherited a roster: {to_xml(roster)}")
            vcard = fresh.iq("get", f"<vCard xmlns='{NS_VCARD}'/>")
            self.assertNotEqual(vcard.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN"), "Old Bob",
                                f"the re-created account inherited a vCard: {to_xml(vcard)}")
            fresh.available()
            # Anything stored for the old account would be handed over now; a marker sent after
            # the presence shows the queue was looked at.
            marker = login(self.server, alice_user, alice_pw, "m")
            try:
                marker.message(fresh.jid, "marker")
                fresh.expect(message_with_body("marker"), "marker")
            finally:
                marker.stream.abort()
            self.assertEqual(fresh.matching(message_with_body("for the old bob")), [],
                             "the re-created account got the deleted account's offline message")
        finally:
            fresh.stream.abort()


class UserCommandsWhileStoppedTest(UserCommandsMixin):
    """No server runs while the commands do; a server started afterwards sees their effect.

    The data directory lives outside the harness's per-server temp directory, so it
    outlives each server (stop() removes that directory)."""

    def setUp(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="nines-cli-stopped-"))
        self.data_dir = self.home / "data"
        self.failed = False
        self.server = self.new_server()  # config only; not started

    def new_server(self) -> Server:
        return Server(config={"server": {"data_dir": str(self.data_dir)}}, name="clistopped")

    def tearDown(self) -> None:
        if self.server.is_running():
            self.server.stop()
        else:
            self.server._cleanup()
        if self.failed:
            print(f"\n[harness] kept data directory {self.home}")
        else:
            import shutil
            shutil.rmtree(self.home, ignore_errors=True)

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            self.failed = True
            print(f"\n[harness] {self.id()} failed; last server stderr follows\n{self.server.report()}")
        return outcome

    def serve(self) -> None:
        """Starts a server on the data directory (the current Server object, or a fresh one)."""
        if self.server.process is not None:
            self.server = self.new_server()
        self.server.start()

    def test_add_list_passwd_del_while_stopped(self):
        self.assertFalse(self.data_dir.exists())
        alice_pw, bob_pw, carol_pw = new_password(), new_password(), new_password()
        # A fresh installation: the first command creates the data directory and database.
        self.assert_status(self.add("Alice", alice_pw), 0)
        self.assert_status(self.add(f"bob@{DOMAIN}", bob_pw), 0)
        self.assert_status(self.add("carol", carol_pw), 0)
        self.assert_failed(self.add("alice", new_password()), 1, "alice")
        self.assert_failed(self.add("dave@otherdomain", new_password()), 2)
        self.assert_failed(self.delete("nobody"), 1, "nobody")
        self.assert_failed(self.passwd("nobody", new_password()), 1, "nobody")
        self.assertEqual(self.listed(), ["alice", "bob", "carol"])

        self.serve()
        self.assert_login("alice", alice_pw)
        self.assert_login("bob", bob_pw)
        self.assert_scram_login("carol", carol_pw)
        self.server.stop()

        # Stopped again: change alice's password, delete bob.
        self.server = self.new_server()
        alice_new = new_password()
        self.assert_status(self.passwd("alice", alice_new), 0)
        self.assert_status(self.delete("bob"), 0)
        self.assertEqual(self.listed(), ["alice", "carol"])

        self.serve()
        self.assert_login("alice", alice_pw, works=False)
        self.assert_login("alice", alice_new)
        self.assert_login("bob", bob_pw, works=False)
        self.assert_login("carol", carol_pw)

        # And with it running, the same store: list, then a change that the next login sees.
        self.assertEqual(self.listed(), ["alice", "carol"])
        self.assert_status(self.delete("carol"), 0)
        self.assert_login("carol", carol_pw, works=False)


if __name__ == "__main__":
    unittest.main(verbosity=2)


class BulkAddTest(unittest.TestCase):
    """`nines user add --bulk` / `--bulk-file` (docs/cli.md, issue 3 account setup)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="nines-bulk-")
        self.cfg = os.path.join(self.tmp, "nines.toml")
        with open(self.cfg, "w") as f:
            f.write(to_toml(merge_config({"server": {"data_dir": f"{self.tmp}/data"}},
                                         store_config_for(f"{self.tmp}/data"))))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def nines(self, *args, stdin=""):
        return subprocess.run([str(nines_bin()), *args, "-c", self.cfg], input=stdin, capture_output=True,
                              text=True, timeout=120)

    def test_pattern_creates_numbered_accounts(self):
        r = self.nines("user", "add", "--bulk", "bench{}", "--count", "2500", "--first", "10", "--password-stdin",
                       stdin="pw\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("created 2500 accounts", r.stdout)
        users = self.nines("user", "list").stdout.split()
        self.assertEqual(len(users), 2500)
        self.assertIn("bench10", users)
        self.assertIn("bench2509", users)
        self.assertNotIn("bench9", users)
        self.assertNotIn("bench2510", users)

    def test_file_gives_each_account_its_password(self):
        path = os.path.join(self.tmp, "users.txt")
        with open(path, "w") as f:
            f.write("# comment\nann secret1\n\nBen secret2\n")
        r = self.nines("user", "add", "--bulk-file", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.nines("user", "list").stdout.split(), ["ann", "ben"])
        with Server({"server": {"data_dir": f"{self.tmp}/data"}}) as server:
            stream, _ = login_plain(server, "ben", "secret2")
            stream.close()
            with self.assertRaises(Exception):
                login_plain(server, "ann", "secret2")

    def test_existing_account_fails_the_batch_with_status_1(self):
        self.assertEqual(self.nines("user", "add", "bench3", "--password-stdin", stdin="x\n").returncode, 0)
        r = self.nines("user", "add", "--bulk", "bench{}", "--count", "5", "--password-stdin", stdin="pw\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("already exists", r.stderr)

    def test_user_and_bulk_together_is_a_usage_error(self):
        r = self.nines("user", "add", "alice", "--bulk", "b{}", "--count", "2", "--password-stdin", stdin="pw\n")
        self.assertEqual(r.returncode, 2)
        r = self.nines("user", "add", "--bulk", "nopattern", "--count", "2", "--password-stdin", stdin="pw\n")
        self.assertEqual(r.returncode, 2)
