// Starts a real `auditrail serve` (the binary AUDITRAIL_BIN names) on a data dir of its own.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export const ADMIN = "client-test-platform-admin";

export function binary() {
  const bin = process.env.AUDITRAIL_BIN;
  if (!bin && process.env.AUDITRAIL_REQUIRE_CLIENTS) throw new Error("AUDITRAIL_BIN must name the auditrail binary");
  return bin;
}

export class Server {
  constructor(bin) {
    this.bin = bin;
    this.dir = mkdtempSync(join(tmpdir(), "auditrail-client-"));
    this.listen = "127.0.0.1:0";
  }

  async start() {
    this.child = spawn(this.bin, ["serve", "--listen", this.listen, "--data-dir", this.dir], {
      env: { ...process.env, AUDITRAIL_ADMIN_TOKEN: ADMIN, AUDITRAIL_LOG: "warn" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines = createInterface({ input: this.child.stdout });
    const first = await new Promise((resolve, reject) => {
      lines.once("line", resolve);
      this.child.once("exit", (c) => reject(new Error(`auditrail serve exited (${c})`)));
    });
    const m = /^auditrail listening on (http:\/\/[^\s]+)$/.exec(first);
    if (!m) throw new Error(`unexpected first line: ${first}`);
    this.url = m[1];
    this.listen = new URL(this.url).host;
    return this;
  }

  /** SIGKILL, as a crash would. */
  async kill() {
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await exited;
  }

  async stop() {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async post(path, token, body) {
    const r = await fetch(this.url + path, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return r.json();
  }

  /** Creates org `org` and an admin key of it; returns the key. */
  async orgKey(org, role = "admin") {
    await this.post("/v1/orgs", ADMIN, { id: org });
    return (await this.post(`/v1/orgs/${org}/keys`, ADMIN, { name: "client", role })).token;
  }
}
