// Standalone verification: an event as auditrail returned it, its inclusion proof and a
// signed checkpoint, checked with nothing but WebCrypto (Node >= 18, browsers).

/** An inclusion proof as `GET /v1/proofs/inclusion` returns it. */
export interface InclusionProof {
  seq: number;
  leaf_index: number;
  tree_size: number;
  leaf_hash: string;
  root_hash: string;
  hashes: string[];
}

/** What a successful verification established. */
export interface Verified {
  seq: number;
  treeSize: number;
  rootHash: string;
  origin: string;
}

export class VerificationError extends Error {
  override name = "VerificationError";
}

async function subtle(): Promise<SubtleCrypto> {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c?.subtle) return c.subtle;
  // Node 18 keeps WebCrypto off the global object.
  const node = await import("node:crypto" as string);
  return (node as { webcrypto: Crypto }).webcrypto.subtle;
}

async function sha256(...parts: Uint8Array[]): Promise<Uint8Array> {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await (await subtle()).digest("SHA-256", all));
}

function b64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function toB64(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s);
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const utf8 = new TextEncoder();

/**
 * The stored text of an event as search returned it (`raw`: its JSON text, which ends
 * with the `leaf_hash` member auditrail adds), and that leaf hash.
 */
export function storedText(raw: string): { stored: string; leafHash: string } {
  const m = /,"leaf_hash":"([0-9a-f]{64})"\}$/.exec(raw);
  if (!m || m[1] === undefined) throw new VerificationError("the event has no leaf_hash at its end");
  return { stored: raw.slice(0, m.index) + "}", leafHash: m[1] };
}

/** RFC 6962 leaf hash of a stored event's text. */
export async function leafHash(stored: string): Promise<string> {
  return hex(await sha256(new Uint8Array([0]), utf8.encode(stored)));
}

/** The root an RFC 9162 inclusion proof leads to from `leaf`. */
async function rootFromInclusion(
  leaf: Uint8Array,
  index: number,
  size: number,
  path: Uint8Array[],
): Promise<Uint8Array> {
  if (index >= size) throw new VerificationError("leaf index beyond the tree");
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  const node = new Uint8Array([1]);
  for (const p of path) {
    if (sn === 0) throw new VerificationError("the proof is too long");
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(node, p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = await sha256(node, r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new VerificationError("the proof is too short");
  return r;
}

/** A C2SP checkpoint: its origin, size and root, and its signed text. */
export function parseCheckpoint(note: string): { origin: string; size: number; root: Uint8Array; text: string; sigs: string[] } {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new VerificationError("the checkpoint has no signatures");
  const text = note.slice(0, split + 1);
  const [origin, size, root] = text.split("\n");
  if (!origin || !size || !root || !/^[0-9]+$/.test(size)) {
    throw new VerificationError("the checkpoint is not origin, size and root");
  }
  const sigs = note.slice(split + 2).split("\n").filter((l) => l.startsWith("\u2014 "));
  return { origin, size: Number(size), root: b64(root), text, sigs };
}

/** Checks `note`'s signature by the C2SP verifier key `vkey` (`name+hash+base64`). */
export async function verifyNote(note: string, vkey: string): Promise<void> {
  // name+hexhash+base64: the base64 may itself hold '+'.
  const v = vkey.trim();
  const i = v.indexOf("+");
  const j = v.indexOf("+", i + 1);
  const [name, hashHex, keyB64] = [v.slice(0, i), v.slice(i + 1, j), v.slice(j + 1)];
  if (i <= 0 || j < 0 || !/^[0-9a-f]{8}$/i.test(hashHex) || !keyB64) throw new VerificationError("not a verifier key");
  const key = b64(keyB64);
  if (key.length !== 33 || key[0] !== 1) throw new VerificationError("not an Ed25519 verifier key");
  const keyHash = (await sha256(utf8.encode(name + "\n"), key)).slice(0, 4);
  if (hex(keyHash) !== hashHex.toLowerCase()) throw new VerificationError("the verifier key's hash does not match it");
  const { text, sigs } = parseCheckpoint(note);
  const s = await subtle();
  const pub = await s.importKey("raw", key.slice(1), { name: "Ed25519" }, false, ["verify"]);
  for (const line of sigs) {
    const [, signer, sigB64] = line.split(" ");
    if (signer !== name || !sigB64) continue;
    const sig = b64(sigB64);
    if (sig.length !== 68 || !same(sig.slice(0, 4), keyHash)) continue;
    if (await s.verify({ name: "Ed25519" }, pub, sig.slice(4), utf8.encode(text))) return;
  }
  throw new VerificationError(`no valid signature by ${name}`);
}

/**
 * Verifies, offline, that the event `raw` (its JSON text as auditrail returned it) is
 * in the log the checkpoint `note` signs: its leaf hash from its own bytes, the
 * inclusion proof up to the checkpoint's root, and the checkpoint's signature by
 * `vkey` (the org's verifier key, `GET /v1/public-key`).
 */
export async function verify(raw: string, proof: InclusionProof, note: string, vkey: string): Promise<Verified> {
  const { stored, leafHash: claimed } = storedText(raw);
  const leaf = await leafHash(stored);
  if (leaf !== claimed) throw new VerificationError("the event's bytes do not hash to its leaf_hash");
  if (hex(b64(proof.leaf_hash)) !== leaf) throw new VerificationError("the proof is for another leaf");
  const seq = (JSON.parse(stored) as { seq?: number }).seq;
  if (seq !== proof.seq || proof.leaf_index !== proof.seq - 1) throw new VerificationError("the proof is for another seq");
  const cp = parseCheckpoint(note);
  if (cp.size !== proof.tree_size) throw new VerificationError("the proof is for another tree size than the checkpoint's");
  const root = await rootFromInclusion(b64(proof.leaf_hash), proof.leaf_index, proof.tree_size, proof.hashes.map(b64));
  if (!same(root, cp.root)) throw new VerificationError("the proof does not lead to the checkpoint's root");
  await verifyNote(note, vkey);
  return { seq, treeSize: cp.size, rootHash: toB64(root), origin: cp.origin };
}
