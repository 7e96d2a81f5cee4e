"""Throughput of record(): one Python process sending N events through the client to a
real `auditrail serve` (AUDITRAIL_BIN, a release build for a fair figure), shaped as the
ingest bench's events. `AUDITRAIL_BIN=... PYTHONPATH=src python3 bench/record.py`
(BENCH_EVENTS, default 200,000). Events are written with orjson if it is installed, else
with the standard library (`AUDITRAIL_JSON=stdlib` chooses it). With AUDITRAIL_URL and
AUDITRAIL_TOKEN (an ingest key) it sends to that server instead of starting one
(`cargo bench --bench clients` does)."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from conftest import Server  # noqa: E402

from auditrail import Client  # noqa: E402
from auditrail._encoding import ENCODER  # noqa: E402

n = int(os.environ.get("BENCH_EVENTS", "200000"))
url = os.environ.get("AUDITRAIL_URL")
server = None if url else Server(os.environ.get("AUDITRAIL_BIN", "auditrail")).start()
try:
    if server is None:
        token = os.environ["AUDITRAIL_TOKEN"]
    else:
        url, token = server.url, server.org_key("acme", "ingest")
    client = Client(url, token, batch_size=int(os.environ.get("BENCH_BATCH", "1000")), in_flight=int(os.environ.get("BENCH_IN_FLIGHT", "4")))
    actions = ["addProject", "releaseProject", "addPipeline", "updatePipeline"]
    t = time.perf_counter()
    for i in range(n):
        client.record(
            {
                "action": actions[i % len(actions)],
                "actor": {"id": f"u-{i % 1000}", "type": "USER", "email": f"user{i % 1000}@example.com", "name": "Ann Lee", "role": "ORG_ADMIN"},
                "resource": {"type": "PROJECT", "id": f"p-{(i * 7919) % 100_000}"},
                "scope": {"type": "GRAPH", "id": f"graph-{i % 200}"},
                "details": {"name": f"project {i}", "language": "scala", "branch": "main", "version": i % 97},
                "context": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0"},
                "outcome": "success",
            }
        )
    client.close()
    s = time.perf_counter() - t
    print(f"python client record() ({ENCODER}): {n} events in {s:.2f} s = {n / s:.0f} events/s (sent {client.stats.sent}, retries {client.stats.retries})")
finally:
    if server is not None:
        server.stop()
