"""The official auditrail client, synchronous: the standard library only."""

from __future__ import annotations

import concurrent.futures
import http.client
import itertools
import json
import random
import secrets
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Literal, Optional, Tuple, cast

from . import types as api
from ._encoding import encode_event

Event = Dict[str, Any]
WhenFull = Literal["block", "drop", "raise"]


class AuditrailError(Exception):
    """An answer of the server that is not a success, with its error body."""

    def __init__(self, status: int, code: str, message: str, details: Optional[List[Any]] = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details or []


class _Dropped(Exception):
    """The queue was full and the event was dropped (counted)."""


class QueueFullError(Exception):
    """`record()` found the queue full and `when_full` is "raise"."""


class ClientClosedError(Exception):
    """The client is closed."""


class UnsentError(Exception):
    """`close(timeout=...)` ran out of time: these events were not acknowledged."""

    def __init__(self, events: List[Event]):
        super().__init__(f"{len(events)} events were not acknowledged")
        self.events = events


@dataclass
class Stats:
    sent: int = 0
    dropped: int = 0
    failed: int = 0
    retries: int = 0


@dataclass
class Options:
    batch_size: int = 1000
    max_batch_bytes: int = 1_000_000
    flush_interval: float = 0.2
    max_queue: int = 10_000
    when_full: WhenFull = "block"
    max_backoff: float = 10.0
    # Batches sent at once, at most; each names its place in the client's stream
    # (`Auditrail-Order`), and the server stores them in that order.
    in_flight: int = 4
    timeout: float = 30.0
    on_error: Optional[Callable[[AuditrailError, List[Event]], None]] = None
    stats: Stats = field(default_factory=Stats)


def _obj(v: Any) -> Dict[str, Any]:
    """A JSON object the server answered."""
    if not isinstance(v, dict):
        raise AuditrailError(200, "unexpected_answer", f"expected a JSON object, got {type(v).__name__}")
    return v


def _retry_after(h: Optional[str]) -> Optional[float]:
    """Seconds, as `Retry-After` says (seconds or an HTTP date), capped at 15 minutes."""
    if not h:
        return None
    try:
        s = float(h)
    except ValueError:
        try:
            s = parsedate_to_datetime(h).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(s, 0.0), 900.0)


def _error_of(status: int, body: bytes) -> AuditrailError:
    try:
        e = json.loads(body).get("error") or {}
        return AuditrailError(status, e.get("code", "error"), e.get("message", ""), e.get("details"))
    except (ValueError, AttributeError):
        return AuditrailError(status, "http_error", body.decode(errors="replace"))


def _event_texts(body: str) -> List[str]:
    """The `events` array of a search answer, split into each event's own JSON text."""
    out: List[str] = []
    depth, start, in_string, i = 0, -1, False, body.index("[") + 1
    while i < len(body):
        c = body[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                out.append(body[start : i + 1])
        elif c == "]" and depth == 0:
            break
        i += 1
    return out


def events_of(texts: Iterable[bytes]) -> List[Event]:
    """Queued events as the caller recorded them, with their ids."""
    return [json.loads(t) for t in texts]


class Http:
    """Requests to the server with the org's key, over one kept-alive connection per
    thread. A request that finds its kept connection closed by the server is sent again
    on a new one when that is safe: reads, and event batches (their ids make a repeat
    harmless). Network failures raise `OSError`."""

    def __init__(self, url: str, token: str, timeout: float):
        self.base, self.token, self.timeout = url.rstrip("/"), token, timeout
        parts = urllib.parse.urlsplit(self.base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port, self._prefix = parts.hostname, parts.port, parts.path
        self._local = threading.local()

    def _connection(self) -> Tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it has served a request before."""
        c: Optional[http.client.HTTPConnection] = getattr(self._local, "conn", None)
        if c is not None:
            return c, True
        if self._https:
            c = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        else:
            c = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        self._local.conn = c
        return c, False

    def _drop(self) -> None:
        c = getattr(self._local, "conn", None)
        self._local.conn = None
        if c is not None:
            c.close()

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        content_type: str = "application/json",
        extra: Optional[Dict[str, str]] = None,
    ) -> Tuple[int, Dict[str, str], bytes]:
        headers = {"authorization": f"Bearer {self.token}", **(extra or {})}
        if body is not None:
            headers["content-type"] = content_type
        repeatable = method == "GET" or (method == "POST" and path == "/v1/events")
        while True:
            c, reused = self._connection()
            try:
                c.request(method, self._prefix + path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                if reused and repeatable:
                    continue
                raise e if isinstance(e, OSError) else ConnectionError(str(e)) from e
            if r.will_close:
                self._drop()
            return r.status, dict(r.getheaders()), data

    def ok(self, method: str, path: str, body: Optional[bytes] = None) -> bytes:
        status, _, data = self.request(method, path, body)
        if status >= 300:
            raise _error_of(status, data)
        return data


@dataclass
class _Flight:
    """A batch in flight: its number in the stream, its events' texts, count, bytes and
    body."""

    number: int
    texts: List[bytes]
    n: int
    size: int
    body: bytes
    attempt: int = 0
    future: "Optional[concurrent.futures.Future[Tuple[Optional[int], Dict[str, str], bytes]]]" = None


class Batcher:
    """The queue and the rules for sending it, shared by the sync and async clients."""

    def __init__(self, opts: Options):
        self.opts = opts
        # Each event's JSON text (with its id), written once: it sizes the batch and is its
        # body. Only the text is kept: the rare event handed back (`on_error`,
        # `UnsentError`) is read back from it.
        self.queue: Deque[bytes] = deque()
        self.bytes = 0
        # When the oldest queued event was recorded; a flush or close makes it due now.
        self.since = 0.0
        self.urgent = False
        self.closed = False
        self.busy = False
        # Idempotency ids: 96 random bits for this client, then a counter.
        self._ids = itertools.count()
        self._id_prefix = secrets.token_hex(12)
        # The client's `Auditrail-Order` stream and its batches' numbers; `ordered` once
        # the server has acknowledged an ordered batch (it keeps their order).
        self.stream = secrets.token_hex(12)
        self.numbers = itertools.count()
        self.ordered = False

    def follower_ready(self, assigned: int) -> bool:
        """Whether another batch may go while `assigned` queued events are in flight."""
        rest = len(self.queue) - assigned
        return self.ordered and rest > 0 and (rest >= self.opts.batch_size or self.urgent or self.closed)

    def order(self, number: int, follows: bool) -> Dict[str, str]:
        return {"auditrail-order": f"{self.stream} {number} {1 if follows else 0}"}

    def next_flight(self, flying: int, assigned: int) -> "Optional[_Flight]":
        """The next batch to launch with `flying` in flight covering the first `assigned`
        queued events, if there is room: a follower only as a full batch."""
        if flying >= max(1, self.opts.in_flight) or len(self.queue) <= assigned:
            return None
        if flying and not self.follower_ready(assigned):
            return None
        texts, n, size, body = self.take(assigned)
        return _Flight(next(self.numbers), texts, n, size, body)

    def attempt(self, http: "Http", f: "_Flight", follows: bool) -> Tuple[Optional[int], Dict[str, str], bytes]:
        """One request for a batch (a network error is status None); notes a server that
        acknowledged an ordered batch: it keeps their order."""
        try:
            status, headers, data = http.request("POST", "/v1/events", f.body, extra=self.order(f.number, follows))
        except OSError:
            return None, {}, b""
        if status < 300 and any(k.lower() == "auditrail-order" for k in headers):
            self.ordered = True
        return status, headers, data

    def full(self) -> bool:
        """True if `record()` must wait; drops (and counts) or raises per `when_full`."""
        if self.closed:
            raise ClientClosedError("the client is closed")
        if len(self.queue) < self.opts.max_queue:
            return False
        if self.opts.when_full == "drop":
            self.opts.stats.dropped += 1
            raise _Dropped()
        if self.opts.when_full == "raise":
            raise QueueFullError(f"{len(self.queue)} events are queued")
        return True

    def due(self) -> Optional[float]:
        """None if a batch should go now, else how long to wait (inf: nothing queued)."""
        if not self.queue:
            return float("inf")
        o = self.opts
        if self.urgent or self.closed or len(self.queue) >= o.batch_size or self.bytes >= o.max_batch_bytes:
            return None
        left = self.since + o.flush_interval - time.monotonic()
        return None if left <= 0 else left

    def settled(self, n: int, size: int) -> None:
        """The batch at the head was acknowledged or refused for good."""
        self.done(n, size)
        self.since = time.monotonic()
        if not self.queue:
            self.urgent = False

    def take(self, skip: int = 0) -> Tuple[List[bytes], int, int, bytes]:
        """The next batch after the first `skip` queued events (not removed): their texts,
        count, bytes, its body."""
        texts: List[bytes] = []
        size = 0
        for text in itertools.islice(self.queue, skip, None):
            b = len(text) + 1
            if len(texts) >= self.opts.batch_size or (texts and size + b > self.opts.max_batch_bytes):
                break
            texts.append(text)
            size += b
        return texts, len(texts), size, b'{"events":[' + b",".join(texts) + b"]}"

    def done(self, n: int, size: int) -> None:
        for _ in range(n):
            self.queue.popleft()
        self.bytes -= size

    def add(self, event: Event) -> bool:
        """Queues `event` (with an `id`); true if the sender should look again."""
        if not self.queue:
            self.since = time.monotonic()
        if event.get("id") or "id" in event:
            text = encode_event(event if event.get("id") else {**event, "id": self._new_id()})
        else:
            # No copy of the event: its id goes in front of its own text.
            text = encode_event(event)
            text = b'{"id":"' + self._new_id().encode() + (b'",' + text[1:] if len(text) > 2 else b'"}')
        self.queue.append(text)
        self.bytes += len(text) + 1
        return len(self.queue) == 1 or len(self.queue) >= self.opts.batch_size or self.bytes >= self.opts.max_batch_bytes

    def _new_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids):x}"

    def outcome(self, status: Optional[int], headers: Dict[str, str], body: bytes, texts: List[bytes], attempt: int) -> Optional[float]:
        """None when the batch is settled (sent or refused for good), else seconds to wait."""
        stats = self.opts.stats
        if status is not None and status < 300:
            stats.sent += len(texts)
            return None
        if status == 409 and _error_of(status, body).code == "batch_out_of_order":
            # Refused only because the batch before it is not stored yet: sent again,
            # at once, after it.
            return 0.0
        if status is not None and status < 500 and status not in (408, 429):
            stats.failed += len(texts)
            if self.opts.on_error:
                self.opts.on_error(_error_of(status, body), events_of(texts))
            return None
        stats.retries += 1
        wait = _retry_after({k.lower(): v for k, v in headers.items()}.get("retry-after"))
        backoff = min(self.opts.max_backoff, 0.1 * 2 ** min(attempt, 16))
        return wait if wait is not None else backoff / 2 + random.random() * backoff / 2


class Client:
    """Records events in batches from a background thread; reads the org's log.

    `record(event)` queues the event and returns; batches go one at a time, in order,
    each retried until acknowledged (429/503 as `Retry-After` says; 5xx, 408 and network
    errors with jittered backoff), so events are stored in the order recorded and once
    each (every event gets an `id`). A batch refused for good goes to `on_error`.
    """

    def __init__(self, url: str, token: str, **options: Any):
        self.opts = Options(**options)
        self.stats = self.opts.stats
        self.http = Http(url, token, self.opts.timeout)
        self._b = Batcher(self.opts)
        # A plain lock, taken directly where nothing waits (`record()` runs for every
        # event); the condition shares it.
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._abandoned = False
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, self.opts.in_flight), thread_name_prefix="auditrail-send"
        )
        self._thread = threading.Thread(target=self._run, name="auditrail-sender", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._b.queue)

    def record(self, event: api.Event) -> None:
        with self._lock:
            try:
                while self._b.full():
                    self._cv.wait()
            except _Dropped:
                return
            if self._b.add(cast(Event, event)):
                self._cv.notify_all()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until everything recorded so far is acknowledged; false on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            self._b.urgent = True
            self._cv.notify_all()
            while self._b.queue or self._b.busy:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def close(self, timeout: Optional[float] = None) -> None:
        """Flushes and refuses further events; with `timeout`, gives up after that many
        seconds and raises `UnsentError` with the events not acknowledged."""
        with self._cv:
            self._b.closed = True
            self._cv.notify_all()
        if not self.flush(timeout):
            with self._cv:
                self._abandoned = True
                self._cv.notify_all()
            self._thread.join()
            self._pool.shutdown(wait=False)
            events = events_of(self._b.queue)
            self._b.queue.clear()
            raise UnsentError(events)
        with self._cv:
            self._abandoned = True
            self._cv.notify_all()
        self._thread.join()
        self._pool.shutdown(wait=False)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self) -> None:
        flights: Deque[_Flight] = deque()
        assigned = 0
        while True:
            with self._cv:
                while not self._abandoned and not flights:
                    wait = self._b.due()
                    if wait is None:
                        break
                    self._cv.wait(None if wait == float("inf") else wait)
                if self._abandoned:
                    return
                while (f := self._b.next_flight(len(flights), assigned)) is not None:
                    f.future = self._pool.submit(self._b.attempt, self.http, f, bool(flights))
                    flights.append(f)
                    assigned += f.n
                self._b.busy = True
            head = flights[0]
            result = self._result(head)
            if result is None:
                return
            wait = self._b.outcome(*result, head.texts, head.attempt + 1)
            if wait is not None:
                # Sent again alone: every batch before it is settled, so it follows none.
                head.attempt += 1
                with self._cv:
                    if self._cv.wait_for(self._gave_up, wait):
                        return
                head.future = self._pool.submit(self._b.attempt, self.http, head, False)
                continue
            flights.popleft()
            assigned -= head.n
            with self._cv:
                self._b.settled(head.n, head.size)
                self._b.busy = bool(flights)
                self._cv.notify_all()

    def _gave_up(self) -> bool:
        return self._abandoned

    def _result(self, f: "_Flight") -> Optional[Tuple[Optional[int], Dict[str, str], bytes]]:
        """The flight's answer; None if `close()` gave up first."""
        assert f.future is not None
        while True:
            try:
                return f.future.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                if self._abandoned:
                    return None

    # --- reading ---------------------------------------------------------------------

    def search(self, **params: Any) -> Iterator[Event]:
        """Every event matching `params` (the filters of `GET /v1/events`), page by
        page. Each event is a dict of its fields plus `raw`, its JSON text as returned."""
        cursor: Optional[str] = None
        while True:
            q = {k: str(v) for k, v in params.items() if v is not None}
            if cursor:
                q["cursor"] = cursor
            text = self.http.ok("GET", "/v1/events?" + urllib.parse.urlencode(q)).decode()
            for raw in _event_texts(text):
                yield {**json.loads(raw), "raw": raw}
            cursor = json.loads(text).get("next_cursor")
            if not cursor:
                return

    def create_export(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return _obj(json.loads(self.http.ok("POST", "/v1/exports", json.dumps(request).encode())))

    def get_export(self, export_id: str) -> Dict[str, Any]:
        return _obj(json.loads(self.http.ok("GET", f"/v1/exports/{urllib.parse.quote(export_id)}")))

    def wait_export(self, export_id: str, timeout: float = 600.0, poll: float = 0.25) -> Dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            job = self.get_export(export_id)
            if job["status"] == "succeeded":
                return job
            if job["status"] in ("failed", "expired"):
                raise AuditrailError(409, f"export_{job['status']}", f"export {export_id} {job['status']}")
            if time.monotonic() > end:
                raise TimeoutError(f"export {export_id} not done after {timeout} s")
            time.sleep(poll)

    def download_export(self, export_id: str) -> bytes:
        return self.http.ok("GET", f"/v1/exports/{urllib.parse.quote(export_id)}/download")

    def checkpoint(self) -> str:
        return self.http.ok("GET", "/v1/checkpoints/latest").decode()

    def public_key(self) -> str:
        return self.http.ok("GET", "/v1/public-key").decode()

    def inclusion_proof(self, seq: int, tree_size: int) -> Dict[str, Any]:
        return _obj(json.loads(self.http.ok("GET", f"/v1/proofs/inclusion?seq={seq}&tree_size={tree_size}")))

    def consistency_proof(self, first: int, second: int) -> Dict[str, Any]:
        return _obj(json.loads(self.http.ok("GET", f"/v1/proofs/consistency?from={first}&to={second}")))
