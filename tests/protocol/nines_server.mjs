// Runs the real `nines` binary for the node protocol tests (the JS twin of harness.py's Server).
//
// Contract used (docs/cli.md): `nines serve -c FILE` prints exactly one line
// `ready c2s=HOST:PORT c2s_tls=HOST:PORT` on stdout once listening; SIGTERM exits 0;
// `nines user add USER --password-stdin -c FILE` creates an account.
// Every wait is bounded. NINES_BIN overrides the binary (default build/release/nines).

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, accessSync, constants } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, "..", "..");
export const DOMAIN = "localhost";

export function ninesBin() {
  const env = process.env.NINES_BIN;
  const bin = env || path.join("build", "release", "nines");
  return path.isAbsolute(bin) ? bin : path.join(REPO_ROOT, bin);
}

export function parseReadyLine(line) {
  const m = /^ready(?: (.*))?$/.exec(line.trim());
  if (!m) throw new Error(`first stdout line is not a ready line: ${JSON.stringify(line)}`);
  const listeners = {};
  for (const pair of (m[1] || "").split(/\s+/).filter(Boolean)) {
    const [name, addr] = pair.split("=", 2);
    const idx = addr ? addr.lastIndexOf(":") : -1;
    if (!name || idx < 0) throw new Error(`malformed listener ${pair} in ready line ${line}`);
    listeners[name] = { host: addr.slice(0, idx).replace(/^\[|\]$/g, ""), port: Number(addr.slice(idx + 1)) };
  }
  return listeners;
}

let counter = 0;
export function uniqueUser(prefix) {
  counter += 1;
  return `${prefix}${counter}x${randomBytes(3).toString("hex")}`;
}

export class NinesServer {
  constructor({ startTimeout = 30000 } = {}) {
    this.binary = ninesBin();
    this.tmp = mkdtempSync(path.join(tmpdir(), "nines-node-proto-"));
    this.configPath = path.join(this.tmp, "nines.toml");
    this.stderrPath = path.join(this.tmp, "stderr.log");
    this.startTimeout = startTimeout;
    this.stdoutLines = [];
    this.keepTmp = process.env.NINES_KEEP_TMP === "1";
    const level = process.env.NINES_LOG_LEVEL || "debug";
    writeFileSync(
      this.configPath,
      [
        "[server]",
        `domain = "${DOMAIN}"`,
        `data_dir = ${JSON.stringify(path.join(this.tmp, "data"))}`,
        "threads = 2",
        "",
        "[listen]",
        'c2s_address = "127.0.0.1"',
        "c2s_port = 0",
        'c2s_tls_address = "127.0.0.1"',
        "c2s_tls_port = 0",
        "",
        "[log]",
        `level = "${level}"`,
        "",
      ].join("\n"),
    );
  }

  async start() {
    accessSync(this.binary, constants.X_OK);
    const errFd = openSync(this.stderrPath, "w");
    this.proc = spawn(this.binary, ["serve", "-c", this.configPath], {
      cwd: this.tmp,
      stdio: ["ignore", "pipe", errFd],
    });
    closeSync(errFd);
    // Never leave an orphaned server behind if this test process exits early.
    const killOnExit = () => this.kill();
    process.on("exit", killOnExit);
    this.exited = new Promise((resolve) => {
      this.proc.on("exit", () => process.removeListener("exit", killOnExit));
      this.proc.on("exit", (code, signal) => resolve({ code, signal }));
    });
    const line = await new Promise((resolve, reject) => {
      let buffer = "";
      const timer = setTimeout(() => {
        reject(new Error(`no ready line within ${this.startTimeout} ms\n${this.report()}`));
      }, this.startTimeout);
      this.proc.stdout.setEncoding("utf8");
      this.proc.stdout.on("data", (chunk) => {
        buffer += chunk;
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const l = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          this.stdoutLines.push(l);
          if (this.stdoutLines.length === 1) {
            clearTimeout(timer);
            resolve(l);
          }
        }
      });
      this.proc.on("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`server exited (code ${code}, signal ${signal}) before the ready line\n${this.report()}`));
      });
    }).catch((err) => {
      this.kill();
      throw err;
    });
    this.listeners = parseReadyLine(line);
    if (!this.listeners.c2s || !this.listeners.c2s_tls) {
      this.kill();
      throw new Error(`ready line lacks c2s or c2s_tls: ${line}`);
    }
    return this;
  }

  get c2s() {
    return this.listeners.c2s;
  }

  get c2sTls() {
    return this.listeners.c2s_tls;
  }

  addUser(user, password) {
    const done = spawnSync(this.binary, ["user", "add", user, "--password-stdin", "-c", this.configPath], {
      cwd: this.tmp,
      input: `${password}\n`,
      timeout: 30000,
    });
    if (done.error) throw done.error;
    if (done.status !== 0) {
      throw new Error(`nines user add ${user} failed (status ${done.status}): ${String(done.stderr).trim()}`);
    }
  }

  newAccount(prefix) {
    const user = uniqueUser(prefix);
    const password = `pw-${randomBytes(9).toString("base64url")}`;
    this.addUser(user, password);
    return { user, jid: `${user}@${DOMAIN}`, password };
  }

  kill() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
  }

  // SIGTERM and wait (bounded); throws unless the exit status is 0 (docs/cli.md).
  async stop(timeoutMs = 15000) {
    if (!this.proc) return;
    try {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`server had already exited (code ${this.proc.exitCode}, signal ${this.proc.signalCode})\n${this.report()}`);
      }
      this.proc.kill("SIGTERM");
      let timer;
      const timeout = new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), timeoutMs);
      });
      const result = await Promise.race([this.exited, timeout]);
      clearTimeout(timer);
      if (result === null) {
        this.kill();
        throw new Error(`server did not exit within ${timeoutMs} ms of SIGTERM\n${this.report()}`);
      }
      if (result.code !== 0) {
        throw new Error(`server exited with code ${result.code}, signal ${result.signal} after SIGTERM (expected 0)\n${this.report()}`);
      }
    } catch (err) {
      this.keepTmp = true;
      throw err;
    } finally {
      if (this.keepTmp) process.stderr.write(`[harness] kept server directory ${this.tmp}\n`);
      else rmSync(this.tmp, { recursive: true, force: true });
    }
  }

  stderrTail(lines = 80) {
    try {
      return readFileSync(this.stderrPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no stderr captured)";
    }
  }

  report() {
    return `--- nines stderr (${this.stderrPath}) ---\n${this.stderrTail()}\n--- end of nines stderr ---`;
  }
}
