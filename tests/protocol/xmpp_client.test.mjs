// Protocol tests: the real nines binary driven by @xmpp/client (npm, pinned in package-lock.json).
//
// Run: cd tests/protocol && npm ci && node --test
//
// @xmpp/client 0.14.0 ships SASL SCRAM-SHA-1, PLAIN and ANONYMOUS (plus SASL2/FAST
// HT-SHA-256-NONE, used only if the server offers SASL2); it has no SCRAM-SHA-256 and
// no -PLUS variant, so those are covered by test_slixmpp.py and test_raw_sasl.py.
//
// The server's certificate is self-signed. @xmpp/client passes no TLS options through,
// so certificate verification is turned off for this test process only (node --test runs
// each file in its own process).
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

import { describe, it, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";

import { client, xml } from "@xmpp/client";

import { NinesServer, DOMAIN } from "./nines_server.mjs";

const TEST_TIMEOUT = 60000;
const WAIT = 10000;

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A client with logs of received stanzas, the SASL mechanism it used and errors.
function makeClient(server, { user, password, mechanism, directTls = false, resource }) {
  const { host, port } = directTls ? server.c2sTls : server.c2s;
  const xmpp = client({
    service: `${directTls ? "xmpps" : "xmpp"}://${host}:${port}`,
    domain: DOMAIN,
    resource,
    timeout: WAIT,
    credentials: async (authenticate, mechanisms) => {
      xmpp.offeredMechanisms = mechanisms;
      const chosen = mechanism ?? mechanisms[0];
      if (!mechanisms.includes(chosen)) {
        throw new Error(`server did not offer ${chosen}; usable offered: ${mechanisms.join(", ")}`);
      }
      await authenticate({ username: user, password }, chosen);
    },
  });
  xmpp.reconnect.stop(); // a test must see a failure, not a silent retry
  xmpp.errors = [];
  xmpp.stanzas = [];
  xmpp.authMechanisms = [];
  xmpp.waiters = [];
  xmpp.on("error", (err) => xmpp.errors.push(err));
  xmpp.on("send", (el) => {
    if (el.name === "auth" || el.name === "authenticate") xmpp.authMechanisms.push(el.attrs.mechanism);
  });
  xmpp.on("stanza", (stanza) => {
    xmpp.stanzas.push(stanza);
    for (const w of [...xmpp.waiters]) w();
  });
  return xmpp;
}

// Resolves with the first received stanza matching pred (bounded).
function waitForStanza(xmpp, pred, what, ms = WAIT) {
  return new Promise((resolve, reject) => {
    const claimed = (xmpp.claimed ??= new Set());
    const check = () => {
      const found = xmpp.stanzas.find((s) => !claimed.has(s) && pred(s));
      if (found) {
        claimed.add(found);
        cleanup();
        resolve(found);
        return true;
      }
      return false;
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}; received:\n${xmpp.stanzas.map(String).join("\n") || "(nothing)"}`));
    }, ms);
    const cleanup = () => {
      clearTimeout(timer);
      xmpp.waiters = xmpp.waiters.filter((w) => w !== check);
    };
    if (!check()) xmpp.waiters.push(check);
  });
}

describe("@xmpp/client against nines", () => {
  let server;
  let clients = [];

  before(async () => {
    server = new NinesServer();
    await server.start();
  });

  after(async () => {
    await server?.stop();
  });

  afterEach(async () => {
    for (const c of clients) {
      try {
        await withTimeout(c.stop(), 5000, "client stop");
      } catch {
        // already closed or failed to connect
      }
    }
    clients = [];
  });

  async function login(options) {
    const xmpp = makeClient(server, options);
    clients.push(xmpp);
    try {
      await withTimeout(xmpp.start(), 20000, "login");
    } catch (err) {
      err.message += `\nclient errors: ${xmpp.errors.map(String).join("; ")}\n${server.report()}`;
      throw err;
    }
    return xmpp;
  }

  async function ping(xmpp, to = DOMAIN) {
    return xmpp.iqCaller.request(xml("iq", { type: "get", to }, xml("ping", "urn:xmpp:ping")), WAIT);
  }

  it("logs in with SCRAM-SHA-1 over STARTTLS", { timeout: TEST_TIMEOUT }, async () => {
    const { user, jid, password } = server.newAccount("node");
    const xmpp = await login({ user, password, mechanism: "SCRAM-SHA-1", resource: "node" });
    assert.deepEqual(xmpp.authMechanisms, ["SCRAM-SHA-1"]);
    assert.equal(xmpp.isSecure(), true, "stream is not encrypted after STARTTLS");
    assert.equal(xmpp.jid.bare().toString(), jid);
    assert.equal(xmpp.jid.toString(), `${jid}/node`);
    await ping(xmpp);
  });

  it("logs in with PLAIN over STARTTLS", { timeout: TEST_TIMEOUT }, async () => {
    const { user, jid, password } = server.newAccount("node");
    const xmpp = await login({ user, password, mechanism: "PLAIN" });
    assert.deepEqual(xmpp.authMechanisms, ["PLAIN"]);
    assert.equal(xmpp.isSecure(), true);
    assert.equal(xmpp.jid.bare().toString(), jid);
    assert.ok(xmpp.jid.getResource(), "server bound an empty resource");
  });

  it("logs in with SCRAM-SHA-1 over direct TLS (xmpps://, XEP-0368)", { timeout: TEST_TIMEOUT }, async () => {
    const { user, jid, password } = server.newAccount("node");
    const xmpp = await login({ user, password, mechanism: "SCRAM-SHA-1", directTls: true, resource: "tls" });
    assert.deepEqual(xmpp.authMechanisms, ["SCRAM-SHA-1"]);
    assert.equal(xmpp.isSecure(), true);
    assert.equal(xmpp.socket.socket.encrypted, true);
    assert.equal(xmpp.jid.toString(), `${jid}/tls`);
    await ping(xmpp);
  });

  it("logs in with PLAIN over direct TLS", { timeout: TEST_TIMEOUT }, async () => {
    const { user, jid, password } = server.newAccount("node");
    const xmpp = await login({ user, password, mechanism: "PLAIN", directTls: true });
    assert.equal(xmpp.jid.bare().toString(), jid);
  });

  it("rejects a wrong password with not-authorized", { timeout: TEST_TIMEOUT }, async () => {
    const { user, password } = server.newAccount("node");
    const xmpp = makeClient(server, { user, password: `${password}-wrong`, mechanism: "SCRAM-SHA-1" });
    clients.push(xmpp);
    await assert.rejects(withTimeout(xmpp.start(), 20000, "login with a wrong password"), (err) => {
      assert.equal(err.name, "SASLError", String(err));
      assert.equal(err.condition, "not-authorized", String(err));
      return true;
    });
  });

  it("delivers a chat message between two clients with 'from' stamped", { timeout: TEST_TIMEOUT }, async () => {
    const alice = server.newAccount("alice");
    const bob = server.newAccount("bob");
    const a = await login({ ...alice, mechanism: "SCRAM-SHA-1", resource: "a1" });
    const b = await login({ ...bob, mechanism: "SCRAM-SHA-1", directTls: true, resource: "b1" });
    // Available so that messages to the bare JID are delivered live (RFC 6121 §8.5.2.1.1).
    await b.send(xml("presence"));
    await ping(b); // in-order processing: the presence is handled once the ping is answered

    await a.send(xml("message", { to: bob.jid, type: "chat", id: "m1" }, xml("body", {}, "hello from node")));
    const got = await waitForStanza(b, (s) => s.is("message") && s.getChildText("body") === "hello from node",
      "message 'hello from node'");
    assert.equal(got.attrs.from, `${alice.jid}/a1`, "server must stamp the sender's full JID (RFC 6120 §8.1.2.1)");
    assert.equal(got.attrs.type, "chat");
    assert.equal(String(got.attrs.to).split("/")[0], bob.jid);

    await b.send(xml("message", { to: `${alice.jid}/a1`, type: "chat" }, xml("body", {}, "hello back")));
    const back = await waitForStanza(a, (s) => s.is("message") && s.getChildText("body") === "hello back",
      "message 'hello back'");
    assert.equal(back.attrs.from, `${bob.jid}/b1`);
    assert.equal(back.attrs.to, `${alice.jid}/a1`);
  });

  it("answers a XEP-0199 ping to the server", { timeout: TEST_TIMEOUT }, async () => {
    const { user, password } = server.newAccount("node");
    const xmpp = await login({ user, password, mechanism: "SCRAM-SHA-1" });
    const result = await ping(xmpp); // iqCaller rejects on a type='error' reply
    assert.equal(result.name, "iq", String(result));
    assert.equal(result.attrs.type, "result", String(result));
    assert.equal(result.attrs.from, DOMAIN, String(result));
  });
});
