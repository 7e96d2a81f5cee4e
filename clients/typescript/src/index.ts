// The official auditrail client: no runtime dependencies, `fetch` only (Node >= 18 and
// browsers).

export * from "./verify.js";
import type { InclusionProof } from "./verify.js";
import type { components } from "./schema.js";
export type { components, paths, operations } from "./schema.js";

/**
 * An event as the host product sends it (only `action` is required): the `Event` schema
 * of the server's OpenAPI document, in `schema.ts` as openapi-typescript generates it.
 */
export type AuditEvent = components["schemas"]["Event"];

/** An event as auditrail stored it (the `StoredEvent` schema), with `raw`: its JSON text exactly as returned. */
export type StoredEvent = components["schemas"]["StoredEvent"] & { raw: string };

export interface SearchParams {
  actor_id?: string;
  action?: string;
  resource_type?: string;
  resource_id?: string;
  scope_id?: string;
  q?: string;
  from?: string;
  to?: string;
  order?: "asc" | "desc";
  limit?: number;
}

/** An export request (the `ExportRequest` schema). */
export type ExportRequest = components["schemas"]["ExportRequest"];

/** An export job (the `Export` schema). */
export type ExportJob = components["schemas"]["Export"];

/** What `record()` does when the queue is full. */
export type WhenFull = "block" | "drop" | "throw";

export interface ClientOptions {
  /** The server, e.g. `https://audit.example.com`. */
  url: string;
  /** An org API key (role `ingest` to record; `viewer` or `admin` to read). */
  token: string;
  /** Events per request, at most (default and most: 1,000, the server's bound). */
  batchSize?: number;
  /** Bytes of JSON per request, at most (default 1 MB). */
  maxBatchBytes?: number;
  /** How long an event may wait for others before its batch goes (default 200 ms). */
  flushIntervalMs?: number;
  /** Events held before `record()` applies `whenFull` (default 10,000). */
  maxQueue?: number;
  whenFull?: WhenFull;
  /** Longest wait between retries (default 10 s). */
  maxBackoffMs?: number;
  /**
   * Batches sent at once, at most (default 4, at most 8). Each names its place in the
   * client's stream (`Auditrail-Order`), and the server stores them in that order.
   */
  inFlight?: number;
  /** Called with a batch the server refused for good (a 4xx other than 408/429). */
  onError?: (error: AuditrailError, events: AuditEvent[]) => void;
  fetch?: typeof fetch;
}

/** An answer of the server that is not a success, with its error body. */
export class AuditrailError extends Error {
  override name = "AuditrailError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown[] = [],
  ) {
    super(`${status} ${code}: ${message}`);
  }
}

export class QueueFullError extends Error {
  override name = "QueueFullError";
}

export class ClientClosedError extends Error {
  override name = "ClientClosedError";
}

/** `close()` ran out of time: these events were not acknowledged. */
export class UnsentError extends Error {
  override name = "UnsentError";
  constructor(readonly events: AuditEvent[]) {
    super(`${events.length} events were not acknowledged`);
  }
}

/** How one attempt at a batch ended. */
interface Outcome {
  settled: boolean;
  /** Refused only because the batch before it was not stored yet. */
  outOfOrder?: boolean;
  waitMs?: number | undefined;
}

/** A batch in flight. */
interface Flight {
  number: number;
  batch: Queued[];
  bytes: number;
  body: string;
  attempt: number;
  outcome: Promise<Outcome>;
}

interface Queued {
  /**
   * The event's JSON text (with its `id`), written once: it sizes the batch and is the
   * batch's body. Only the text is kept, so the caller's object is garbage as soon as
   * `record()` returns; the rare event handed back (`onError`, `UnsentError`) is parsed
   * from it.
   */
  json: string;
}

/** `event` as JSON with an `id`: its own, or a new one written first. */
function withId(event: AuditEvent): string {
  if (event.id) return JSON.stringify(event);
  if (event.id === undefined) {
    // No object copy: the id goes in front of the event's own text.
    const text = JSON.stringify(event);
    if (text === "{}") return `{"id":"${newId()}"}`;
    if (text.charCodeAt(0) === 123) return `{"id":"${newId()}",${text.slice(1)}`;
  }
  return JSON.stringify({ ...event, id: newId() });
}

/** The events of queued entries, as sent. */
function eventsOf(queued: Queued[]): AuditEvent[] {
  return queued.map((q) => JSON.parse(q.json) as AuditEvent);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function newId(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const b = new Uint8Array(16);
  for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Seconds or an HTTP date, as `Retry-After` says; capped at 15 minutes. */
function retryAfterMs(h: string | null): number | undefined {
  if (!h) return undefined;
  const s = Number(h);
  const ms = Number.isFinite(s) ? s * 1000 : Date.parse(h) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 900_000) : undefined;
}

/** Splits the `events` array of a search answer into each event's own JSON text. */
function eventTexts(body: string): string[] {
  const start = body.indexOf("[");
  const out: string[] = [];
  let depth = 0;
  let from = -1;
  let inString = false;
  for (let i = start + 1; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") {
      if (depth++ === 0) from = i;
    } else if (c === "}") {
      if (--depth === 0) out.push(body.slice(from, i + 1));
    } else if (c === "]" && depth === 0) break;
  }
  return out;
}

export class AuditrailClient {
  readonly stats = { sent: 0, dropped: 0, failed: 0, retries: 0 };
  private readonly base: string;
  private readonly opts: Required<Omit<ClientOptions, "onError" | "fetch">> & Pick<ClientOptions, "onError">;
  private readonly doFetch: typeof fetch;
  private queue: Queued[] = [];
  private queuedBytes = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private pumping: Promise<void> | undefined;
  private spaceWaiters: (() => void)[] = [];
  private closed = false;
  /** Set when `close()` gives up: sending stops, what is queued stays unsent. */
  private abandoned = false;
  private wake: (() => void) | undefined;
  /** This client's `Auditrail-Order` stream, and its next batch's number. */
  private readonly stream = newId().replace(/-/g, "");
  private batchNumber = 0;
  /** Whether the server has acknowledged an ordered batch (it keeps their order). */
  private ordered = false;
  /** Set by `flush()` and the flush timer: send what is queued, full batches or not. */
  private draining = false;

  constructor(options: ClientOptions) {
    this.base = options.url.replace(/\/+$/, "");
    this.opts = {
      url: this.base,
      token: options.token,
      batchSize: Math.min(options.batchSize ?? 1000, 1000),
      maxBatchBytes: options.maxBatchBytes ?? 1_000_000,
      flushIntervalMs: options.flushIntervalMs ?? 200,
      maxQueue: options.maxQueue ?? 10_000,
      whenFull: options.whenFull ?? "block",
      maxBackoffMs: options.maxBackoffMs ?? 10_000,
      inFlight: Math.max(1, Math.min(options.inFlight ?? 4, 8)),
      onError: options.onError,
    };
    this.doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Events waiting to be sent (not counting a batch in flight). */
  get pending(): number {
    return this.queue.length;
  }

  /**
   * Queues `event` to be sent in a batch. Resolves once it is queued, not sent (see
   * `flush()`). It gets an `id` if it has none, so every retry of its batch is
   * idempotent. With a full queue it waits (`block`), is dropped and counted
   * (`drop`), or throws `QueueFullError` (`throw`), as `whenFull` says.
   */
  async record(event: AuditEvent): Promise<void> {
    if (this.closed) throw new ClientClosedError("the client is closed");
    while (this.queue.length >= this.opts.maxQueue) {
      if (this.opts.whenFull === "drop") {
        this.stats.dropped++;
        return;
      }
      if (this.opts.whenFull === "throw") throw new QueueFullError(`${this.queue.length} events are queued`);
      await new Promise<void>((r) => this.spaceWaiters.push(r));
      if (this.closed) throw new ClientClosedError("the client is closed");
    }
    const json = withId(event);
    this.queue.push({ json });
    this.queuedBytes += json.length + 1;
    if (this.queue.length >= this.opts.batchSize || this.queuedBytes >= this.opts.maxBatchBytes) {
      this.kick();
    } else {
      this.timer ??= setTimeout(() => {
        this.draining = true;
        this.kick();
      }, this.opts.flushIntervalMs);
    }
  }

  /** Sends everything queued so far; resolves once the server has acknowledged it. */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.pumping) {
      this.draining = true;
      this.kick();
      await this.pumping;
    }
  }

  /**
   * Flushes, then refuses further events. With `timeoutMs`, gives up after that long:
   * sending stops and it rejects with `UnsentError`, whose `events` were not
   * acknowledged (they may still have reached the server; resending them is safe).
   */
  async close({ timeoutMs }: { timeoutMs?: number } = {}): Promise<void> {
    this.closed = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<"expired">((r) => {
      if (timeoutMs !== undefined) timer = setTimeout(() => r("expired"), timeoutMs);
    });
    const outcome = await Promise.race([this.flush().then(() => "flushed" as const), expired]);
    clearTimeout(timer);
    for (const w of this.spaceWaiters.splice(0)) w();
    if (outcome === "expired") {
      this.abandoned = true;
      this.wake?.();
      await this.pumping?.catch(() => undefined);
      const events = eventsOf(this.queue);
      this.queue = [];
      this.queuedBytes = 0;
      throw new UnsentError(events);
    }
  }

  private kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined;
    });
  }

  /**
   * Sends the queue in batches, in order, until it is empty: up to `inFlight` batches at
   * once, each numbered in this client's `Auditrail-Order` stream so that the server
   * appends each only after the one before it. A batch that must be sent again is sent
   * again before any later one is settled.
   */
  private async pump(): Promise<void> {
    const flights: Flight[] = [];
    let assigned = 0;
    while (!this.abandoned && (flights.length > 0 || this.queue.length > assigned)) {
      // Launches batches while there is room: a follower only with a full batch to send
      // (or when flushing), so that batches stay large.
      while (flights.length < this.opts.inFlight && this.queue.length > assigned) {
        let n = 0;
        let bytes = 0;
        for (let i = assigned; i < this.queue.length; i++) {
          const b = this.queue[i]!.json.length + 1;
          if (n >= this.opts.batchSize || (n > 0 && bytes + b > this.opts.maxBatchBytes)) break;
          n++;
          bytes += b;
        }
        const full = n >= this.opts.batchSize || assigned + n < this.queue.length;
        // Followers only to a server that has shown it keeps their order.
        if (flights.length > 0 && (!this.ordered || (!full && !this.draining))) break;
        const batch = this.queue.slice(assigned, assigned + n);
        const f: Flight = {
          number: this.batchNumber++,
          batch,
          bytes,
          body: `{"events":[${batch.map((q) => q.json).join(",")}]}`,
          attempt: 0,
          outcome: Promise.resolve<Outcome>({ settled: true }),
        };
        f.outcome = this.send(f, flights.length > 0);
        flights.push(f);
        assigned += n;
      }
      const head = flights[0]!;
      const out = await head.outcome;
      if (this.abandoned) return;
      if (!out.settled) {
        // Sent again alone: every batch before it is settled, so it follows none.
        head.attempt++;
        this.stats.retries++;
        const backoff = Math.min(this.opts.maxBackoffMs, 100 * 2 ** Math.min(head.attempt, 16));
        await this.pause(out.waitMs ?? backoff / 2 + Math.random() * (backoff / 2));
        if (this.abandoned) return;
        head.outcome = this.send(head, false);
        continue;
      }
      flights.shift();
      // A follower that was refused because this one was not yet stored goes again.
      const next = flights[0];
      if (next) {
        next.outcome = next.outcome.then((o) => (o.settled || !o.outOfOrder ? o : this.send(next, false)));
      }
      this.queue.splice(0, head.batch.length);
      assigned -= head.batch.length;
      this.queuedBytes -= head.bytes;
      for (const w of this.spaceWaiters.splice(0, head.batch.length)) w();
    }
    this.draining = false;
  }

  /** Waits `ms`, or less if `close()` gives up. */
  private async pause(ms: number): Promise<void> {
    await new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      this.wake = () => {
        clearTimeout(t);
        r();
      };
    });
    this.wake = undefined;
  }

  /** One attempt at a batch: settled (acknowledged, or refused for good) or not. */
  private async send(f: Flight, follows: boolean): Promise<Outcome> {
    try {
      const r = await this.doFetch(`${this.base}/v1/events`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${this.opts.token}`,
          "content-type": "application/json",
          "auditrail-order": `${this.stream} ${f.number} ${follows ? 1 : 0}`,
        },
        body: f.body,
      });
      if (r.ok) {
        await r.arrayBuffer();
        this.stats.sent += f.batch.length;
        if (r.headers.has("auditrail-order")) this.ordered = true;
        return { settled: true };
      }
      const err = await errorOf(r);
      // Refused only because the batch before it is not stored yet: sent again after it.
      if (r.status === 409 && err.code === "batch_out_of_order") return { settled: false, outOfOrder: true, waitMs: 0 };
      if (r.status < 500 && r.status !== 408 && r.status !== 429) {
        this.stats.failed += f.batch.length;
        this.opts.onError?.(err, eventsOf(f.batch));
        return { settled: true };
      }
      return { settled: false, waitMs: retryAfterMs(r.headers.get("retry-after")) };
    } catch {
      // A network error: the server may or may not have the batch; ids make the
      // resend safe either way.
      return { settled: false };
    }
  }

  private async request(path: string, init: RequestInit = {}): Promise<Response> {
    const r = await this.doFetch(`${this.base}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${this.opts.token}`, ...(init.headers ?? {}) },
    });
    if (!r.ok) throw await errorOf(r);
    return r;
  }

  private async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    return (await (await this.request(path, init)).json()) as T;
  }

  /** Every event matching `params`, page after page (`limit` per request). */
  async *search(params: SearchParams = {}): AsyncGenerator<StoredEvent> {
    let cursor: string | null = null;
    do {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
      if (cursor) q.set("cursor", cursor);
      const text = await (await this.request(`/v1/events?${q}`)).text();
      for (const raw of eventTexts(text)) yield { ...(JSON.parse(raw) as StoredEvent), raw };
      cursor = (JSON.parse(text) as { next_cursor: string | null }).next_cursor;
    } while (cursor);
  }

  /** Requests an export (`POST /v1/exports`). */
  createExport(req: ExportRequest): Promise<ExportJob> {
    return this.json("/v1/exports", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(req),
    });
  }

  getExport(id: string): Promise<ExportJob> {
    return this.json(`/v1/exports/${encodeURIComponent(id)}`);
  }

  /** Polls an export until it is done; throws if it failed or `timeoutMs` passes. */
  async waitExport(id: string, { timeoutMs = 600_000, pollMs = 250 } = {}): Promise<ExportJob> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.getExport(id);
      if (job.status === "succeeded") return job;
      if (job.status === "failed" || job.status === "expired") {
        throw new AuditrailError(409, `export_${job.status}`, `export ${id} ${job.status}`);
      }
      if (Date.now() > end) throw new Error(`export ${id} not done after ${timeoutMs} ms`);
      await sleep(pollMs);
    }
  }

  /** The export's file. */
  async downloadExport(id: string): Promise<Uint8Array> {
    const r = await this.request(`/v1/exports/${encodeURIComponent(id)}/download`);
    return new Uint8Array(await r.arrayBuffer());
  }

  /** The org's latest signed checkpoint (a C2SP note). */
  async checkpoint(): Promise<string> {
    return (await this.request("/v1/checkpoints/latest")).text();
  }

  /** The org's C2SP verifier key. */
  async publicKey(): Promise<string> {
    return (await this.request("/v1/public-key")).text();
  }

  inclusionProof(seq: number, treeSize: number): Promise<InclusionProof> {
    return this.json(`/v1/proofs/inclusion?seq=${seq}&tree_size=${treeSize}`);
  }

  consistencyProof(from: number, to: number): Promise<components["schemas"]["ConsistencyProof"]> {
    return this.json(`/v1/proofs/consistency?from=${from}&to=${to}`);
  }
}

async function errorOf(r: Response): Promise<AuditrailError> {
  const text = await r.text().catch(() => "");
  try {
    const e = (JSON.parse(text) as { error?: { code?: string; message?: string; details?: unknown[] } }).error;
    if (e) return new AuditrailError(r.status, e.code ?? "error", e.message ?? text, e.details ?? []);
  } catch {
    // not JSON
  }
  return new AuditrailError(r.status, "http_error", text || r.statusText);
}
