// One device of the three-device test (test_three_devices.py): a browser-like client on
// @xmpp/client that goes on and off line on a schedule and catches up from the archive
// each time it comes back, as a real client does.
//
//   node web_device.mjs '{"host": "127.0.0.1", "port": 5222, "domain": "localhost",
//                         "user": "alice", "password": "...", "resource": "web",
//                         "peer": "bob@localhost", "schedule": [[1500, 800], ...]}'
//
// For each [online_ms, offline_ms] it logs in, sends initial presence, pages the archive
// (XEP-0313 with RSM) from after the last stanza-id it had seen, receives live messages,
// sends one message of its own to `peer` ("web-<n>"), stays online_ms, logs out and waits
// offline_ms. Then one last login and catch-up. It prints one JSON line:
//   {"live": [[stanza-id, from, body], ...], "own": [body, ...],
//    "history": [[archive-id, from, body], ...]}
// where `live` is every message received live, carbons included (duplicates too, so the
// test can count them), `own` what it sent, and `history` what it knows by archive id.
// It enables carbons (XEP-0280) at each login, as a multi-device client does.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0"; // the server's certificate is self-signed

import { client, xml } from "@xmpp/client";

const cfg = JSON.parse(process.argv[2]);
const bare = `${cfg.user}@${cfg.domain}`;
const WAIT = 15000;

const live = [];
const own = []; // bodies this device sent
const history = new Map(); // archive id -> [from, body]
let lastSeen = "";

function inner(stanza) {
  return {
    from: stanza.attrs.from ?? "",
    body: stanza.getChildText("body") ?? "",
  };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function remember(id, from, body) {
  if (!id) return;
  history.set(id, [from, body]);
  if (lastSeen === "" || BigInt(id) > BigInt(lastSeen)) lastSeen = id;
}

async function session(onlineMs, n) {
  const xmpp = client({
    service: `xmpp://${cfg.host}:${cfg.port}`,
    domain: cfg.domain,
    resource: cfg.resource,
    username: cfg.user,
    password: cfg.password,
    timeout: WAIT,
  });
  xmpp.reconnect.stop();
  xmpp.on("error", () => {});
  xmpp.on("stanza", (stanza) => {
    if (!stanza.is("message")) return;
    const result = stanza.getChild("result", "urn:xmpp:mam:2");
    if (result) {
      const msg = result.getChild("forwarded", "urn:xmpp:forward:0")?.getChild("message");
      if (msg) {
        const { from, body } = inner(msg);
        remember(result.attrs.id, from, body);
      }
      return;
    }
    // XEP-0280: a copy of a message another device of ours sent or received.
    const carbon = stanza.getChild("sent", "urn:xmpp:carbons:2") ?? stanza.getChild("received", "urn:xmpp:carbons:2");
    const msg = carbon ? carbon.getChild("forwarded", "urn:xmpp:forward:0")?.getChild("message") : stanza;
    if (!msg) return;
    const { from, body } = inner(msg);
    if (!body) return;
    const sid = msg.getChildren("stanza-id", "urn:xmpp:sid:0").find((s) => s.attrs.by === bare);
    const id = sid ? sid.attrs.id : "";
    live.push([id, from, body]);
    remember(id, from, body);
  });
  await xmpp.start();
  await xmpp.iqCaller.request(xml("iq", { type: "set" }, xml("enable", { xmlns: "urn:xmpp:carbons:2" })), WAIT);
  await xmpp.send(xml("presence"));
  // Catch up: everything after the last id this device saw, page by page.
  let after = lastSeen;
  for (;;) {
    const set = [xml("max", {}, "50")];
    if (after) set.push(xml("after", {}, after));
    const res = await xmpp.iqCaller.request(
      xml("iq", { type: "set", id: `mam-${n}-${after}` },
        xml("query", { xmlns: "urn:xmpp:mam:2", queryid: `q-${n}-${after}` },
          xml("set", { xmlns: "http://jabber.org/protocol/rsm" }, ...set))),
      WAIT);
    const fin = res.getChild("fin", "urn:xmpp:mam:2");
    const last = fin?.getChild("set", "http://jabber.org/protocol/rsm")?.getChildText("last");
    if (fin?.attrs.complete === "true" || !last) break;
    after = last;
  }
  if (n >= 0) {
    await xmpp.send(xml("message", { to: cfg.peer, type: "chat", id: `web-${n}` }, xml("body", {}, `web-${n}`)));
    own.push(`web-${n}`);
  }
  await sleep(onlineMs);
  await xmpp.stop();
}

let n = 0;
for (const [onlineMs, offlineMs] of cfg.schedule) {
  await session(onlineMs, n++);
  await sleep(offlineMs);
}
await session(200, -1); // the final catch-up, sending nothing
process.stdout.write(JSON.stringify({ live, own, history: [...history.entries()].map(([id, [f, b]]) => [id, f, b]) }) + "\n");
process.exit(0);
