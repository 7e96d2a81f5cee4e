"""The official auditrail client for asyncio: the same behaviour as `Client`, with
requests made on a worker thread (the standard library has no async HTTP client)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from typing import Any, AsyncIterator, Dict, List, Optional, cast

from . import types as api

from .client import (
    AuditrailError,
    Batcher,
    Event,
    Http,
    Options,
    UnsentError,
    _Dropped,
    _event_texts,
    _obj,
)


class AsyncClient:
    """`await client.record(event)` queues; a task sends batches one at a time, in
    order, retrying each until acknowledged. Create it inside a running event loop."""

    def __init__(self, url: str, token: str, **options: Any):
        self.opts = Options(**options)
        self.stats = self.opts.stats
        self.http = Http(url, token, self.opts.timeout)
        self._b = Batcher(self.opts)
        self._changed = asyncio.Condition()
        self._abandoned = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def pending(self) -> int:
        return len(self._b.queue)

    async def record(self, event: api.Event) -> None:
        async with self._changed:
            try:
                while self._b.full():
                    await self._changed.wait()
            except _Dropped:
                return
            if self._b.add(cast(Event, event)):
                self._changed.notify_all()

    async def flush(self, timeout: Optional[float] = None) -> bool:
        async def drained() -> None:
            async with self._changed:
                self._b.urgent = True
                self._changed.notify_all()
                await self._changed.wait_for(lambda: not self._b.queue and not self._b.busy)

        try:
            await asyncio.wait_for(drained(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self, timeout: Optional[float] = None) -> None:
        async with self._changed:
            self._b.closed = True
            self._changed.notify_all()
        flushed = await self.flush(timeout)
        self._abandoned = True
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        if not flushed:
            events = [e for e, _ in self._b.queue]
            self._b.queue.clear()
            raise UnsentError(events)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _run(self) -> None:
        while True:
            async with self._changed:
                while True:
                    wait = self._b.due()
                    if wait is None:
                        break
                    try:
                        await asyncio.wait_for(self._changed.wait(), None if wait == float("inf") else wait)
                    except asyncio.TimeoutError:
                        pass
                events, n, size, body = self._b.take()
                self._b.busy = True
            attempt = 0
            while True:
                try:
                    status, headers, data = await asyncio.to_thread(self.http.request, "POST", "/v1/events", body)
                except OSError:
                    status, headers, data = None, {}, b""
                attempt += 1
                wait = self._b.outcome(status, headers, data, events, attempt)
                if wait is None:
                    break
                await asyncio.sleep(wait)
            async with self._changed:
                self._b.busy = False
                self._b.settled(n, size)
                self._changed.notify_all()

    async def _ok(self, method: str, path: str, body: Optional[bytes] = None) -> bytes:
        return await asyncio.to_thread(self.http.ok, method, path, body)

    async def search(self, **params: Any) -> AsyncIterator[Event]:
        cursor: Optional[str] = None
        while True:
            q = {k: str(v) for k, v in params.items() if v is not None}
            if cursor:
                q["cursor"] = cursor
            text = (await self._ok("GET", "/v1/events?" + urllib.parse.urlencode(q))).decode()
            for raw in _event_texts(text):
                yield {**json.loads(raw), "raw": raw}
            cursor = json.loads(text).get("next_cursor")
            if not cursor:
                return

    async def create_export(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return _obj(json.loads(await self._ok("POST", "/v1/exports", json.dumps(request).encode())))

    async def wait_export(self, export_id: str, timeout: float = 600.0, poll: float = 0.25) -> Dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            job = _obj(json.loads(await self._ok("GET", f"/v1/exports/{urllib.parse.quote(export_id)}")))
            if job["status"] == "succeeded":
                return job
            if job["status"] in ("failed", "expired"):
                raise AuditrailError(409, f"export_{job['status']}", f"export {export_id} {job['status']}")
            if time.monotonic() > end:
                raise TimeoutError(f"export {export_id} not done after {timeout} s")
            await asyncio.sleep(poll)

    async def download_export(self, export_id: str) -> bytes:
        return await self._ok("GET", f"/v1/exports/{urllib.parse.quote(export_id)}/download")

    async def checkpoint(self) -> str:
        return (await self._ok("GET", "/v1/checkpoints/latest")).decode()

    async def public_key(self) -> str:
        return (await self._ok("GET", "/v1/public-key")).decode()

    async def inclusion_proof(self, seq: int, tree_size: int) -> Dict[str, Any]:
        return _obj(json.loads(await self._ok("GET", f"/v1/proofs/inclusion?seq={seq}&tree_size={tree_size}")))


__all__: List[str] = ["AsyncClient"]
