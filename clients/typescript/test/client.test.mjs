// The client against a real auditrail server: batching, ordering, idempotent retries
// across a server killed and restarted mid-stream, queue policies, refusals, search,
// exports and offline verification.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { AuditrailClient, QueueFullError, UnsentError, VerificationError, verify, verifyNote } from "../dist/index.js";
import { Server, binary } from "../support/server.mjs";

const bin = binary();
const skip = bin ? false : "AUDITRAIL_BIN is not set (the auditrail binary)";
let server;

before(async () => {
  if (bin) server = await new Server(bin).start();
});
after(async () => {
  await server?.stop();
});

const event = (i, org) => ({
  action: "addProject",
  actor: { id: `u-${i % 7}`, type: "USER" },
  resource: { type: "PROJECT", id: `p-${i}` },
  details: { n: i, org },
});

/** The test's own events (the org's log also holds auditrail's record of its key). */
async function all(client, params) {
  const out = [];
  for await (const e of client.search({ action: "addProject", ...params })) out.push(e);
  return out;
}

test("record() batches events that arrive in the order recorded, once each", { skip }, async () => {
  const token = await server.orgKey("ordered");
  // Counts requests in flight at once: several batches (4 at most) go together once the
  // server has shown it keeps their order.
  let inFlight = 0;
  let most = 0;
  const counting = async (url, init) => {
    most = Math.max(most, ++inFlight);
    try {
      return await fetch(url, init);
    } finally {
      inFlight--;
    }
  };
  const client = new AuditrailClient({ url: server.url, token, batchSize: 300, fetch: counting });
  for (let i = 0; i < 2500; i++) await client.record(event(i, "ordered"));
  await client.close();
  assert.equal(client.stats.sent, 2500);
  assert.ok(most >= 2 && most <= 4, `batches in flight at once: ${most}`);
  const got = await all(client, { order: "asc", limit: 1000 });
  assert.deepEqual(got.map((e) => e.details.n), [...Array(2500).keys()]);
  // Seqs follow the order events were recorded in.
  assert.ok(got.every((e, i) => i === 0 || e.seq > got[i - 1].seq));
  await assert.rejects(client.record(event(0)), /closed/);
});

test("a server killed and restarted mid-stream loses and duplicates nothing", { skip }, async () => {
  const token = await server.orgKey("restart");
  const client = new AuditrailClient({ url: server.url, token, batchSize: 100, flushIntervalMs: 20, maxBackoffMs: 300 });
  const n = 3000;
  let restarted = false;
  for (let i = 0; i < n; i++) {
    await client.record(event(i, "restart"));
    if (i === 1200) {
      await client.flush();
      // Batches are in flight or queued while the server is down.
      await server.kill();
      for (let j = 0; j < 300; j++) await client.record(event(++i, "restart"));
      await new Promise((r) => setTimeout(r, 500));
      await server.start();
      restarted = true;
    }
  }
  await client.flush();
  assert.ok(restarted);
  assert.ok(client.stats.retries > 0, "the client retried while the server was down");
  const got = await all(client, { order: "asc", limit: 1000 });
  assert.equal(got.length, n);
  assert.deepEqual(got.map((e) => e.details.n), [...Array(n).keys()]);
  assert.equal(new Set(got.map((e) => e.id)).size, n);
  await client.close();
});

test("a resent batch is not stored twice (ids make retries idempotent)", { skip }, async () => {
  const token = await server.orgKey("idem");
  const client = new AuditrailClient({ url: server.url, token });
  const e = { ...event(1, "idem"), id: "fixed-id-1" };
  await client.record(e);
  await client.record(e);
  await client.close();
  assert.equal((await all(client, {})).length, 1);
});

test("a full queue blocks, drops with a count, or throws, as asked", { skip }, async () => {
  // Nothing listens here, so nothing leaves the queue.
  const url = "http://127.0.0.1:9";
  const drop = new AuditrailClient({ url, token: "t", maxQueue: 10, whenFull: "drop", flushIntervalMs: 60_000, batchSize: 1000 });
  for (let i = 0; i < 25; i++) await drop.record(event(i));
  assert.equal(drop.pending, 10);
  assert.equal(drop.stats.dropped, 15);
  const raise = new AuditrailClient({ url, token: "t", maxQueue: 5, whenFull: "throw", flushIntervalMs: 60_000, batchSize: 1000 });
  for (let i = 0; i < 5; i++) await raise.record(event(i));
  await assert.rejects(raise.record(event(5)), QueueFullError);
  const block = new AuditrailClient({ url, token: "t", maxQueue: 3, whenFull: "block", flushIntervalMs: 60_000, batchSize: 1000 });
  for (let i = 0; i < 3; i++) await block.record(event(i));
  let done = false;
  const waiting = block.record(event(3)).then(
    () => (done = true),
    (e) => e,
  );
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(done, false, "record() waits for room");
  // close() with a deadline gives up and hands back what was not acknowledged.
  for (const [client, queued] of [[drop, 10], [raise, 5], [block, 3]]) {
    const err = await client.close({ timeoutMs: 50 }).catch((e) => e);
    assert.ok(err instanceof UnsentError);
    assert.equal(err.events.length, queued);
    // Handed back as recorded, each with the id it was (or would have been) sent with.
    assert.deepEqual(
      err.events.map(({ id, ...rest }) => rest),
      Array.from({ length: queued }, (_, i) => JSON.parse(JSON.stringify(event(i)))),
    );
    assert.equal(new Set(err.events.map((e) => e.id)).size, queued);
    assert.ok(err.events.every((e) => typeof e.id === "string" && e.id.length > 0));
  }
  assert.ok((await waiting) instanceof Error, "the waiting record() is refused");
});

test("a batch the server refuses is reported, not retried", { skip }, async () => {
  const token = await server.orgKey("refused");
  const errors = [];
  const client = new AuditrailClient({ url: server.url, token, onError: (e, evs) => errors.push([e, evs.length, evs]) });
  await client.record({ action: "" });
  await client.record(event(1, "refused"));
  await client.flush();
  assert.equal(errors.length, 1);
  assert.equal(errors[0][0].status, 422);
  assert.equal(errors[0][1], 2, "the whole batch was refused");
  const [bad, good] = errors[0][2];
  assert.equal(bad.action, "");
  assert.deepEqual({ ...good, id: undefined }, { ...event(1, "refused"), id: undefined });
  assert.ok(typeof good.id === "string" && good.id !== bad.id);
  assert.equal(client.stats.failed, 2);
  assert.equal(client.stats.retries, 0);
});

test("search, an export and offline verification of an event", { skip }, async () => {
  const token = await server.orgKey("verify");
  const client = new AuditrailClient({ url: server.url, token });
  for (let i = 0; i < 40; i++) await client.record(event(i, "verify"));
  await client.close();
  const u3 = await all(client, { actor_id: "u-3", limit: 2 });
  assert.deepEqual(u3.map((e) => e.details.n).sort((a, b) => a - b), [3, 10, 17, 24, 31, 38]);

  const note = await client.checkpoint();
  const vkey = await client.publicKey();
  const size = Number(note.split("\n")[1]);
  const e = u3[0];
  const proof = await client.inclusionProof(e.seq, size);
  const ok = await verify(e.raw, proof, note, vkey);
  assert.equal(ok.seq, e.seq);
  assert.equal(ok.treeSize, size);
  // Any change to the event, the proof or the checkpoint is caught.
  await assert.rejects(verify(e.raw.replace('"u-3"', '"u-4"'), proof, note, vkey), VerificationError);
  const bad = { ...proof, hashes: [...proof.hashes].reverse() };
  if (proof.hashes.length > 1) await assert.rejects(verify(e.raw, bad, note, vkey), VerificationError);
  const forged = note.replace(/\n(\d+)\n/, (_, n) => `\n${n}\n`).replace(/^(.*\n.*\n)(.)/, (_, a, c) => a + (c === "A" ? "B" : "A"));
  await assert.rejects(verify(e.raw, proof, forged, vkey), VerificationError);
  // A checkpoint whose signature was altered, or checked with another key, fails.
  await verifyNote(note, vkey);
  const sigTampered = note.replace(/(\u2014 \S+ \S{20})(\S)/, (_, a, c) => a + (c === "A" ? "B" : "A"));
  assert.notEqual(sigTampered, note);
  await assert.rejects(verifyNote(sigTampered, vkey), VerificationError);
  const otherKey = vkey.replace(/\+([0-9a-f]{8})\+/, "+00000000+");
  await assert.rejects(verifyNote(note, otherKey), VerificationError);

  const day = (d) => new Date(Date.now() + d * 86_400_000).toISOString().slice(0, 10);
  const job = await client.createExport({ from: day(-1), to: day(1), format: "ndjson" });
  await client.waitExport(job.id);
  const file = new TextDecoder().decode(await client.downloadExport(job.id));
  const lines = file.trim().split("\n");
  assert.equal(lines.filter((l) => JSON.parse(l).details?.org === "verify").length, 40);
});
