"""G1 across a PostgreSQL failover (issue 5): the primary dies mid-load.

Each test builds its own PostgreSQL pair with scripts/pg-scratch.sh: a primary
and a streaming-replication standby, on loopback ports of their own. nines
runs on the store backend "postgres" with a multi-host connection string
naming both, so libpq finds whichever accepts writes
(target_session_attrs=read-write). A sender with stream management sends
messages to an offline recipient in batches, asking for an acknowledgement
after each; midway the primary is stopped as a crash would stop it
(pg_ctl -m immediate) and the standby is promoted (what Patroni does).

Then the recipient reads its archive, and every message is accounted for:
    acknowledged = archived + bounced (an error came back to the sender) + lost
- with a synchronous standby (synchronous_standby_names), nothing the server
  acknowledged may be lost;
- with an asynchronous one, the last commits before the crash may not have
  reached the standby: loss is allowed only among messages acknowledged
  before the crash, and is reported. Nothing acknowledged after the new
  primary took over may be lost.
In both, the server must keep serving: messages sent after the failover are
acknowledged and archived.

Needs the PostgreSQL server binaries (Debian postgresql-15). Without them the
tests skip, unless NINES_REQUIRE_PG=1 (scripts/test.sh), which fails them.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

import test_stream_management as sm
from harness import Server, local, login_plain, mam_message_ids, new_password, to_xml, unique_user

REPO = Path(__file__).resolve().parents[2]
SCRATCH = REPO / "scripts" / "pg-scratch.sh"
HAVE_PG = bool(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
REQUIRED = os.environ.get("NINES_REQUIRE_PG") == "1"


def scratch(*args: str) -> str:
    out = subprocess.run(["bash", str(SCRATCH), *args], check=True, capture_output=True, text=True, timeout=120)
    return out.stdout.strip()


def psql(uri: str, sql: str) -> str:
    out = subprocess.run(["psql", "-qAt", "-v", "ON_ERROR_STOP=1", "-d", uri, "-c", sql], check=True,
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def with_db(uri: str, db: str) -> str:
    return uri.rsplit("/", 1)[0] + "/" + db


def port_of(uri: str) -> str:
    return uri.split("@", 1)[1].split("/", 1)[0].split(":")[1]


@unittest.skipUnless(HAVE_PG or REQUIRED, "PostgreSQL server binaries not installed")
class PostgresFailoverTest(unittest.TestCase):
    BATCH = 50
    BEFORE = 2000  # messages acknowledged before the crash
    AFTER = 1000  # messages acknowledged after the failover

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="nines-failover-"))
        self.tmp.chmod(0o755)  # the clusters inside belong to the postgres user when run as root
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", str(self.tmp)], check=False))
        self.primary_dir = self.tmp / "primary"
        self.standby_dir = self.tmp / "standby"
        self.addCleanup(lambda: scratch("stop", str(self.primary_dir)))
        self.addCleanup(lambda: scratch("stop", str(self.standby_dir)))
        self.primary = scratch("start", str(self.primary_dir))
        psql(self.primary, "CREATE DATABASE nines")
        self.standby = scratch("standby", str(self.standby_dir), port_of(self.primary))

    def wait_replication(self, state: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if psql(self.primary, "SELECT sync_state FROM pg_stat_replication") == state:
                return
            time.sleep(0.1)
        self.fail(f"the standby never became {state}")

    def run_failover(self, synchronous: bool) -> dict:
        if synchronous:
            psql(self.primary, "ALTER SYSTEM SET synchronous_standby_names = 'standby'")
            psql(self.primary, "SELECT pg_reload_conf()")
            self.wait_replication("sync")
        else:
            self.wait_replication("async")
        uri = (f"postgresql://postgres@127.0.0.1:{port_of(self.primary)},127.0.0.1:{port_of(self.standby)}/nines")
        server = Server(config={
            "store": {"backend": "postgres", "postgres_uri": uri, "postgres_failover_timeout_ms": 60000},
            "log": {"level": "info"},
            "limits": {"stanzas_per_second": 1000000, "stanza_burst": 1000000, "offline_messages": 1000000},
        }, name="failover")
        server.start()
        self.addCleanup(server.stop)
        sender, recipient = unique_user("fo_s"), unique_user("fo_r")
        sender_pw, recipient_pw = new_password(), new_password()
        server.add_user(sender, sender_pw)
        server.add_user(recipient, recipient_pw)
        sender_bare, recipient_bare = f"{sender}@localhost", f"{recipient}@localhost"

        s, _ = login_plain(server, sender, sender_pw, resource="laptop")
        self.addCleanup(s.abort)
        self.assertTrue(sm.is_sm(sm.StreamManagementTest.enable(self, s, resume=False), "enabled"))
        bounced: set = set()
        acked = 0
        sent = 0
        crashed_at = None  # acknowledged count when the primary died
        promoted_at = None  # messages sent when the standby had taken over

        def crash_and_promote():
            nonlocal crashed_at, promoted_at
            crashed_at = acked
            scratch("crash", str(self.primary_dir))
            time.sleep(1.0)  # the server meets a dead primary before the new one is there
            scratch("promote", str(self.standby_dir))
            promoted_at = sent

        failover = None
        first_bounce = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for _ in range(self.BATCH):
                s.send(sm.message(recipient_bare, f"m{sent}", f"m{sent}"))
                sent += 1
            s.send(f"<r xmlns='{sm.NS_SM}'/>")
            while True:
                elem = s.recv(timeout=90)
                if local(elem.tag) == "message" and elem.get("type") == "error":
                    bounced.add(elem.get("id"))
                    if len(bounced) == 1:
                        first_bounce = to_xml(elem)[-160:]
                elif sm.is_sm(elem, "a"):
                    acked = int(elem.get("h"))
                    break
            if failover is None and acked >= self.BEFORE:
                failover = threading.Thread(target=crash_and_promote)
                failover.start()
            if promoted_at is not None and acked >= promoted_at + self.AFTER:
                break
        self.assertIsNotNone(failover, "the load never got going")
        failover.join()
        self.assertIsNotNone(promoted_at)
        self.assertGreaterEqual(acked, promoted_at + self.AFTER, "the server kept acknowledging after the failover")
        self.assertEqual(psql(self.standby, "SELECT pg_is_in_recovery()"), "f")

        r, _ = login_plain(server, recipient, recipient_pw, resource="phone")
        self.addCleanup(r.abort)
        archived = mam_message_ids(r, sender_bare)
        acknowledged = [f"m{i}" for i in range(acked)]
        lost = [m for m in acknowledged if m not in set(archived) and m not in bounced]
        outcome = {"first_bounce": first_bounce, "sent": sent, "acked": acked, "crashed_at": crashed_at, "promoted_at": promoted_at,
                   "archived": len(archived), "bounced": len(bounced), "lost": lost}
        self.assertEqual(len(archived), len(set(archived)), "no duplicates in the archive")
        self.assertEqual(archived, sorted(archived, key=lambda x: int(x[1:])), "in the order sent")
        after = [m for m in lost if int(m[1:]) >= promoted_at]
        self.assertEqual(after, [], "nothing acknowledged after the failover is lost")
        sys.stderr.write(f"\n[failover {'sync' if synchronous else 'async'}] "
                         + ", ".join(f"{k} {len(v) if isinstance(v, list) else v}" for k, v in outcome.items())
                         + "\n")
        return outcome

    def test_with_a_synchronous_standby_nothing_acknowledged_is_lost(self):
        outcome = self.run_failover(synchronous=True)
        self.assertEqual(outcome["lost"], [], f"acknowledged but lost: {outcome}")

    def test_with_an_asynchronous_standby_the_server_recovers(self):
        outcome = self.run_failover(synchronous=False)
        # Loss, if any, is among what was acknowledged before the crash
        # (asserted in run_failover); it is reported, not hidden.
        self.assertLessEqual(len(outcome["lost"]), outcome["crashed_at"] or 0)


if __name__ == "__main__":
    unittest.main()
