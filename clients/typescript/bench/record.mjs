// Throughput of record(): one Node process sending N events through the client to a
// real `auditrail serve` (AUDITRAIL_BIN, a release build for a fair figure), the events
// shaped as the ingest bench's. `npm run build && AUDITRAIL_BIN=… node bench/record.mjs`
// (BENCH_EVENTS, default 200,000). With AUDITRAIL_URL and AUDITRAIL_TOKEN (an ingest key)
// it sends to that server instead of starting one (`cargo bench --bench clients` does).
import { AuditrailClient } from "../dist/index.js";
import { Server, binary } from "../support/server.mjs";

const n = Number(process.env.BENCH_EVENTS ?? 200_000);
const external = process.env.AUDITRAIL_URL;
const server = external ? undefined : await new Server(binary() ?? "auditrail").start();
try {
  const url = external ?? server.url;
  const token = external ? process.env.AUDITRAIL_TOKEN : await server.orgKey("acme", "ingest");
  const batchSize = process.env.BENCH_BATCH ? Number(process.env.BENCH_BATCH) : undefined;
  const inFlight = process.env.BENCH_IN_FLIGHT ? Number(process.env.BENCH_IN_FLIGHT) : undefined;
  const client = new AuditrailClient({ url, token, batchSize, inFlight });
  const actions = ["addProject", "releaseProject", "addPipeline", "updatePipeline"];
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    await client.record({
      action: actions[i % actions.length],
      actor: { id: `u-${i % 1000}`, type: "USER", email: `user${i % 1000}@example.com`, name: "Ann Lee", role: "ORG_ADMIN" },
      resource: { type: "PROJECT", id: `p-${(i * 7919) % 100_000}` },
      scope: { type: "GRAPH", id: `graph-${i % 200}` },
      details: { name: `project ${i}`, language: "scala", branch: "main", version: i % 97 },
      context: { ip: "203.0.113.7", user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0" },
      outcome: "success",
    });
  }
  await client.close();
  const s = (performance.now() - t) / 1000;
  console.log(`typescript client record(): ${n} events in ${s.toFixed(2)} s = ${Math.round(n / s)} events/s (sent ${client.stats.sent}, retries ${client.stats.retries})`);
} finally {
  await server?.stop();
}
