"""The official auditrail client for asyncio: the same behaviour as `Client`, with
requests made on a worker thread (the standard library has no async HTTP client)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections import deque
from typing import Any, AsyncIterator, Deque, Dict, List, Optional, Tuple, cast

from . import types as api

from .client import (
    AuditrailError,
    events_of,
    Batcher,
    Event,
    Http,
    Options,
    UnsentError,
    _Dropped,
    _Flight,
    _event_texts,
    _obj,
)


# An answer to a batch: status (None for a network error), headers, body.
_Answer = Tuple[Optional[int], Dict[str, str], bytes]


class AsyncClient:
    """`await client.record(event)` queues; a task sends batches, up to `in_flight` at
    once and stored in order (`Auditrail-Order`), retrying each until acknowledged.
    Create it inside a running event loop."""

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
            events = events_of(self._b.queue)
            self._b.queue.clear()
            raise UnsentError(events)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _run(self) -> None:
        flights: Deque[Tuple[_Flight, "asyncio.Task[_Answer]"]] = deque()
        assigned = 0
        try:
            while True:
                async with self._changed:
                    while not flights:
                        wait = self._b.due()
                        if wait is None:
                            break
                        try:
                            await asyncio.wait_for(self._changed.wait(), None if wait == float("inf") else wait)
                        except asyncio.TimeoutError:
                            pass
                    while (f := self._b.next_flight(len(flights), assigned)) is not None:
                        flights.append((f, asyncio.create_task(self._attempt(f, bool(flights)))))
                        assigned += f.n
                    self._b.busy = True
                head, task = flights[0]
                wait = self._b.outcome(*(await task), head.texts, head.attempt + 1)
                if wait is not None:
                    # Sent again alone: every batch before it is settled, so it follows none.
                    head.attempt += 1
                    await asyncio.sleep(wait)
                    flights[0] = (head, asyncio.create_task(self._attempt(head, False)))
                    continue
                flights.popleft()
                assigned -= head.n
                async with self._changed:
                    self._b.settled(head.n, head.size)
                    self._b.busy = bool(flights)
                    self._changed.notify_all()
        finally:
            for _, t in flights:
                t.cancel()

    async def _attempt(self, f: _Flight, follows: bool) -> _Answer:
        """One request for a batch, on a thread of the loop's executor."""
        return await asyncio.to_thread(self._b.attempt, self.http, f, follows)

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
