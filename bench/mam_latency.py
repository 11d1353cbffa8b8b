#!/usr/bin/env python3
"""End-to-end MAM latency on a large archive: the last 50 messages, over XMPP.

    /usr/bin/python3 bench/mam_latency.py [--messages N] [--queries Q] [--nines build/release/nines]

Starts its own nines (the protocol-test harness: port 0, temporary directory, release defaults plus
lifted rate limits), fills one account's archive with N messages (default 1,000,000) sent by a second
account over a raw TLS stream, then times Q queries (default 1,000) for the last 50 messages
(RSM <before/>): from sending the IQ to receiving its result, 50 <result/> messages included. The
client is Python, so its own parsing is part of each figure: the numbers are an upper bound on what
the server takes. Prints p50/p90/p99/max in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "protocol"))
from harness import DOMAIN, Server, local, login_plain, new_password, unique_user  # noqa: E402


class _Tail(list):
    def append(self, item) -> None:
        super().append(item)
        if len(self) > 400:
            del self[:-200]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--nines", default=str(Path(__file__).resolve().parents[1] / "build/release/nines"))
    args = ap.parse_args()
    os.environ["NINES_BIN"] = args.nines
    os.environ.setdefault("NINES_LOG_LEVEL", "warn")
    server = Server(config={"limits": {"stanzas_per_second": 10**6, "stanza_burst": 10**6,
                                       "offline_messages": 10**6}}, name="mam-latency")
    server.start()
    try:
        sender, owner = unique_user("sender"), unique_user("owner")
        pw = new_password()
        server.add_user(sender, pw)
        server.add_user(owner, pw)
        out, _ = login_plain(server, sender, pw)
        out.log = _Tail()
        started = time.monotonic()
        batch = []
        for i in range(args.messages):
            batch.append(f"<message to='{owner}@{DOMAIN}' type='chat' id='m{i}'><body>message {i}, about as long "
                         "as a short chat line</body></message>")
            if len(batch) == 1000:
                out.send("".join(batch))
                batch = []
        if batch:
            out.send("".join(batch))
        reader, _ = login_plain(server, owner, pw)
        reader.log = _Tail()
        last_body = f"message {args.messages - 1}, about as long as a short chat line"
        rsm = "<set xmlns='http://jabber.org/protocol/rsm'><max>50</max><before/></set>"

        def query(qid: str) -> list:
            reader.send(f"<iq type='set' id='{qid}'><query xmlns='urn:xmpp:mam:2' queryid='{qid}'>{rsm}</query></iq>")
            bodies = []
            while True:
                elem = reader.recv(timeout=120)
                if local(elem.tag) == "iq":
                    return bodies
                msg = elem.find(".//{jabber:client}message")
                bodies.append(msg.findtext("{jabber:client}body"))

        while True:  # until the last message is archived
            got = query("fill")
            if got and got[-1] == last_body:
                break
            time.sleep(0.5)
        fill_s = time.monotonic() - started
        times = []
        for n in range(args.queries):
            t0 = time.perf_counter()
            got = query(f"q{n}")
            times.append((time.perf_counter() - t0) * 1000)
            assert len(got) == 50 and got[-1] == last_body, got[-3:]
        times.sort()
        pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]  # noqa: E731
        print(f"archive of {args.messages:,} messages filled through the server in {fill_s:.1f} s "
              f"({args.messages / fill_s:,.0f} msgs/s)")
        print(f"last-50 MAM query, {args.queries} queries, ms: p50 {pick(0.5):.2f}  p90 {pick(0.9):.2f}  "
              f"p99 {pick(0.99):.2f}  max {times[-1]:.2f}")
        out.close()
        reader.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
