"""Standalone verification: an event as auditrail returned it, its inclusion proof and a
signed checkpoint, checked with the standard library alone (Ed25519 per RFC 8032)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple


class VerificationError(Exception):
    """The event, the proof or the checkpoint does not check out."""


@dataclass(frozen=True)
class Verified:
    seq: int
    tree_size: int
    root_hash: str
    origin: str


# --- Ed25519 verification (RFC 8032, section 5.1.7) -------------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

Point = Tuple[int, int, int, int]


def _add(a: Point, b: Point) -> Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = t1 * 2 * _D * t2 % _P
    dd = z1 * 2 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: Point) -> Point:
    q: Point = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _equal(a: Point, b: Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _x_of(y: int, sign: int) -> Optional[int]:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decode(b: bytes) -> Optional[Point]:
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _x_of(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_BY = 4 * pow(5, _P - 2, _P) % _P
_BX = _x_of(_BY, 0)
assert _BX is not None
_B: Point = (_BX, _BY, 1, _BX * _BY % _P)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True if `signature` is `public`'s Ed25519 signature of `message`."""
    if len(signature) != 64:
        return False
    a = _decode(public)
    r = _decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _L
    return _equal(_mul(s, _B), _add(r, _mul(h, a)))


# --- The log ----------------------------------------------------------------------

_LEAF_HASH = re.compile(r',"leaf_hash":"([0-9a-f]{64})"\}$')


def stored_text(raw: str) -> Tuple[str, str]:
    """The stored text of an event as search returned it, and its leaf hash."""
    m = _LEAF_HASH.search(raw)
    if not m:
        raise VerificationError("the event has no leaf_hash at its end")
    return raw[: m.start()] + "}", m.group(1)


def leaf_hash(stored: str) -> str:
    """RFC 6962 leaf hash of a stored event's text."""
    return hashlib.sha256(b"\x00" + stored.encode()).hexdigest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf: bytes, index: int, size: int, path: List[bytes]) -> bytes:
    """The root an RFC 9162 inclusion proof leads to from `leaf`."""
    if index >= size:
        raise VerificationError("leaf index beyond the tree")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise VerificationError("the proof is too long")
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the proof is too short")
    return r


def parse_checkpoint(note: str) -> Tuple[str, int, bytes, str, List[str]]:
    """A C2SP checkpoint's origin, size, root, signed text and signature lines."""
    split = note.find("\n\n")
    if split < 0:
        raise VerificationError("the checkpoint has no signatures")
    text = note[: split + 1]
    lines = text.split("\n")
    if len(lines) < 4 or not lines[1].isdigit():
        raise VerificationError("the checkpoint is not origin, size and root")
    sigs = [line for line in note[split + 2 :].split("\n") if line.startswith("\u2014 ")]
    return lines[0], int(lines[1]), base64.b64decode(lines[2]), text, sigs


def verify_note(note: str, vkey: str) -> None:
    """Checks `note`'s signature by the C2SP verifier key `vkey` (name+hash+base64)."""
    name, _, rest = vkey.strip().partition("+")
    hash_hex, _, key_b64 = rest.partition("+")
    if not name or not re.fullmatch(r"[0-9a-fA-F]{8}", hash_hex) or not key_b64:
        raise VerificationError("not a verifier key")
    key = base64.b64decode(key_b64)
    if len(key) != 33 or key[0] != 1:
        raise VerificationError("not an Ed25519 verifier key")
    key_hash = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    if key_hash.hex() != hash_hex.lower():
        raise VerificationError("the verifier key's hash does not match it")
    _, _, _, text, sigs = parse_checkpoint(note)
    for line in sigs:
        parts = line.split(" ")
        if len(parts) != 3 or parts[1] != name:
            continue
        sig = base64.b64decode(parts[2])
        if len(sig) == 68 and sig[:4] == key_hash and ed25519_verify(key[1:], text.encode(), sig[4:]):
            return
    raise VerificationError(f"no valid signature by {name}")


def verify(raw: str, proof: Mapping[str, Any], note: str, vkey: str) -> Verified:
    """Verifies, offline, that the event `raw` (its JSON text as auditrail returned it)
    is in the log the checkpoint `note` signs: its leaf hash from its own bytes, the
    inclusion proof up to the checkpoint's root, and the checkpoint's signature by
    `vkey` (the org's verifier key, `GET /v1/public-key`)."""
    stored, claimed = stored_text(raw)
    leaf = leaf_hash(stored)
    if leaf != claimed:
        raise VerificationError("the event's bytes do not hash to its leaf_hash")
    if base64.b64decode(proof["leaf_hash"]).hex() != leaf:
        raise VerificationError("the proof is for another leaf")
    seq = json.loads(stored).get("seq")
    if seq != proof["seq"] or proof["leaf_index"] != proof["seq"] - 1:
        raise VerificationError("the proof is for another seq")
    origin, size, root, _, _ = parse_checkpoint(note)
    if size != proof["tree_size"]:
        raise VerificationError("the proof is for another tree size than the checkpoint's")
    path = [base64.b64decode(h) for h in proof["hashes"]]
    got = root_from_inclusion(bytes.fromhex(leaf), proof["leaf_index"], size, path)
    if got != root:
        raise VerificationError("the proof does not lead to the checkpoint's root")
    verify_note(note, vkey)
    return Verified(seq=seq, tree_size=size, root_hash=base64.b64encode(got).decode(), origin=origin)
