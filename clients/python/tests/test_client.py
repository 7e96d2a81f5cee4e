"""The client against a real auditrail server: batching, ordering, idempotent retries
across a server killed and restarted mid-stream, queue policies, refusals, search,
exports, offline verification; the same for the asyncio client."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import threading
import time

import pytest

from auditrail import (
    AsyncClient,
    Client,
    ClientClosedError,
    QueueFullError,
    UnsentError,
    VerificationError,
    verify,
    verify_note,
)
from auditrail.verify import ed25519_verify


def count_in_flight(client):
    """Counts the client's requests in flight at once; the list holds the most seen."""
    lock, now, most = threading.Lock(), [0], [0]
    send = client.http.request

    def counting(method, path, body=None, content_type="application/json", extra=None):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        try:
            return send(method, path, body, content_type, extra)
        finally:
            with lock:
                now[0] -= 1

    client.http.request = counting
    return most


def event(i: int, org: str = "") -> dict:
    return {
        "action": "addProject",
        "actor": {"id": f"u-{i % 7}", "type": "USER"},
        "resource": {"type": "PROJECT", "id": f"p-{i}"},
        "details": {"n": i, "org": org},
    }


def ours(client: Client, **params) -> list:
    """The test's own events (the org's log also holds auditrail's record of its key)."""
    return list(client.search(action="addProject", **params))


def test_ed25519_matches_rfc_8032_test_vector_1():
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert ed25519_verify(public, b"", sig)
    assert not ed25519_verify(public, b"x", sig)
    assert not ed25519_verify(public, b"", sig[:-1] + bytes([sig[-1] ^ 1]))


def test_both_json_encoders_write_the_same_events_and_refuse_the_same_values():
    """orjson (the `fast` extra) and the standard library write an event alike: the same
    bytes where there are no floats (whose digits may differ), the same values always."""
    import importlib
    import os

    from auditrail import _encoding

    try:
        orjson = importlib.import_module("orjson")
    except ImportError:
        if os.environ.get("AUDITRAIL_REQUIRE_ORJSON"):
            raise
        pytest.skip("orjson is not installed")
    fast, stdlib = _encoding._with(orjson), _encoding._with_stdlib
    events = [
        event(1),
        {"z": 1, "a": 2, "m": {"y": [], "b": {}}},
        {"text": "é ü 漢字 😀 \u2028 \x00 \x1f \"quoted\" \\ / \t\n", "ok": True, "none": None},
        {"big": 2**63 - 1, "neg": -(2**63), "list": [1, [2, [3, {"k": "v"}]]]},
    ]
    for e in events:
        assert fast(e) == stdlib(e), e
    floats = {"f": [0.1, 2.5, 1e100, -3.25e-7, 12345678.9]}
    assert json.loads(fast(floats)) == json.loads(stdlib(floats)) == floats
    for f in (fast, stdlib):
        with pytest.raises(TypeError):
            f({"at": dt.datetime(2026, 12, 7)})
        with pytest.raises(TypeError):
            f({"o": object()})
    with pytest.raises(ValueError):
        stdlib({"n": float("nan")})


def test_record_batches_events_that_arrive_in_order_once_each(server):
    token = server.org_key("ordered")
    client = Client(server.url, token, batch_size=300)
    # Several batches (4 at most) go together once the server has shown it keeps their
    # order.
    most = count_in_flight(client)
    for i in range(2500):
        client.record(event(i, "ordered"))
    client.close()
    assert client.stats.sent == 2500
    assert 2 <= most[0] <= 4, f"batches in flight at once: {most[0]}"
    got = ours(client, order="asc", limit=1000)
    assert [e["details"]["n"] for e in got] == list(range(2500))
    assert all(a["seq"] < b["seq"] for a, b in zip(got, got[1:]))
    with pytest.raises(ClientClosedError):
        client.record(event(0))


def test_a_server_killed_and_restarted_mid_stream_loses_and_duplicates_nothing(server):
    token = server.org_key("restart")
    client = Client(server.url, token, batch_size=100, flush_interval=0.02, max_backoff=0.3)
    n = 3000
    i = 0
    while i < n:
        client.record(event(i, "restart"))
        if i == 1200:
            assert client.flush(30)
            server.kill()
            for _ in range(300):
                i += 1
                client.record(event(i, "restart"))
            time.sleep(0.5)
            server.start()
        i += 1
    assert client.flush(60)
    assert client.stats.retries > 0
    got = ours(client, order="asc", limit=1000)
    assert [e["details"]["n"] for e in got] == list(range(n))
    assert len({e["id"] for e in got}) == n
    client.close()


def test_a_resent_id_is_stored_once(server):
    token = server.org_key("idem")
    with Client(server.url, token) as client:
        e = {**event(1, "idem"), "id": "fixed-id-1"}
        client.record(e)
        client.record(e)
    assert len(ours(client)) == 1


def test_a_full_queue_blocks_drops_or_raises_and_close_hands_back_the_rest():
    url = "http://127.0.0.1:9"  # nothing listens: nothing leaves the queue
    drop = Client(url, "t", max_queue=10, when_full="drop", flush_interval=60, batch_size=1000)
    for i in range(25):
        drop.record(event(i))
    assert (drop.pending, drop.stats.dropped) == (10, 15)
    raise_ = Client(url, "t", max_queue=5, when_full="raise", flush_interval=60, batch_size=1000)
    for i in range(5):
        raise_.record(event(i))
    with pytest.raises(QueueFullError):
        raise_.record(event(5))
    block = Client(url, "t", max_queue=3, when_full="block", flush_interval=60, batch_size=1000)
    for i in range(3):
        block.record(event(i))
    outcome = []

    def waiting():
        try:
            block.record(event(3))
            outcome.append("recorded")
        except ClientClosedError:
            outcome.append("refused")

    t = threading.Thread(target=waiting)
    t.start()
    time.sleep(0.1)
    assert outcome == [], "record() waits for room"
    for client, queued in ((drop, 10), (raise_, 5), (block, 3)):
        with pytest.raises(UnsentError) as e:
            client.close(timeout=0.05)
        assert len(e.value.events) == queued
        # Handed back as recorded, each with the id it was (or would have been) sent with.
        assert [{k: v for k, v in x.items() if k != "id"} for x in e.value.events] == [event(i) for i in range(queued)]
        ids = [x["id"] for x in e.value.events]
        assert len(set(ids)) == queued and all(isinstance(i, str) and i for i in ids)
    t.join(5)
    assert outcome == ["refused"]


def test_a_refused_batch_is_reported_not_retried(server):
    token = server.org_key("refused")
    errors = []
    refused = []
    client = Client(server.url, token, on_error=lambda e, evs: (errors.append((e.status, len(evs))), refused.extend(evs)))
    client.record({"action": ""})
    client.record(event(1, "refused"))
    client.record({})
    client.record({"id": "", "action": "x"})
    assert client.flush(10)
    assert errors == [(422, 4)]
    # The events as recorded, each with its own id (an empty one replaced).
    assert [{k: v for k, v in x.items() if k != "id"} for x in refused] == [{"action": ""}, event(1, "refused"), {}, {"action": "x"}]
    assert len({x["id"] for x in refused}) == 4 and all(x["id"] for x in refused)
    assert (client.stats.failed, client.stats.retries) == (4, 0)
    client.close()


def test_search_an_export_and_offline_verification(server):
    token = server.org_key("verify")
    with Client(server.url, token) as client:
        for i in range(40):
            client.record(event(i, "verify"))
    u3 = ours(client, actor_id="u-3", limit=2)
    assert sorted(e["details"]["n"] for e in u3) == [3, 10, 17, 24, 31, 38]

    note, vkey = client.checkpoint(), client.public_key()
    size = int(note.split("\n")[1])
    e = u3[0]
    proof = client.inclusion_proof(e["seq"], size)
    ok = verify(e["raw"], proof, note, vkey)
    assert (ok.seq, ok.tree_size) == (e["seq"], size)
    with pytest.raises(VerificationError):
        verify(e["raw"].replace('"u-3"', '"u-4"'), proof, note, vkey)
    if len(proof["hashes"]) > 1:
        with pytest.raises(VerificationError):
            verify(e["raw"], {**proof, "hashes": proof["hashes"][::-1]}, note, vkey)
    lines = note.split("\n")
    root = bytearray(base64.b64decode(lines[2]))
    root[0] ^= 1
    forged = "\n".join([lines[0], lines[1], base64.b64encode(bytes(root)).decode(), *lines[3:]])
    with pytest.raises(VerificationError):
        verify(e["raw"], proof, forged, vkey)
    verify_note(note, vkey)
    tampered = re.sub(r"(\u2014 \S+ \S{20})(\S)", lambda m: m.group(1) + ("B" if m.group(2) == "A" else "A"), note, count=1)
    assert tampered != note
    with pytest.raises(VerificationError):
        verify_note(tampered, vkey)

    day = lambda d: (dt.date.today() + dt.timedelta(days=d)).isoformat()
    job = client.create_export({"from": day(-1), "to": day(1), "format": "ndjson"})
    client.wait_export(job["id"])
    rows = [json.loads(line) for line in client.download_export(job["id"]).decode().strip().split("\n")]
    assert sum(1 for r in rows if r.get("details", {}).get("org") == "verify") == 40


def test_the_asyncio_client_records_in_order_across_a_restart_and_reads(server):
    token = server.org_key("aio")

    async def run():
        client = AsyncClient(server.url, token, batch_size=100, flush_interval=0.02, max_backoff=0.3)
        for i in range(1500):
            await client.record(event(i, "aio"))
            if i == 600:
                assert await client.flush(30)
                server.kill()
                for j in range(1, 101):
                    await client.record(event(i + j, "aio"))
                await asyncio.sleep(0.5)
                server.start()
                break
        for i in range(701, 1500):
            await client.record(event(i, "aio"))
        await client.close()
        got = [e async for e in client.search(action="addProject", order="asc", limit=1000)]
        return client, got

    client, got = asyncio.run(run())
    assert [e["details"]["n"] for e in got] == list(range(1500))
    assert client.stats.retries > 0


def test_the_asyncio_client_keeps_several_batches_in_flight_in_order(server):
    token = server.org_key("aio-flight")
    most = []

    async def run():
        client = AsyncClient(server.url, token, batch_size=300)
        most.append(count_in_flight(client))
        for i in range(2500):
            await client.record(event(i, "aio-flight"))
        await client.close()
        return [e async for e in client.search(action="addProject", order="asc", limit=1000)]

    got = asyncio.run(run())
    assert [e["details"]["n"] for e in got if e["details"].get("org") == "aio-flight"] == list(range(2500))
    assert 2 <= most[0][0] <= 4, f"batches in flight at once: {most[0][0]}"
