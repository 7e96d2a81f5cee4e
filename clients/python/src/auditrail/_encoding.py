"""Events as JSON bytes, written once when recorded.

With orjson installed (`pip install "auditrail[fast]"`) an event is written about ten
times faster than with the standard library, which is most of what `record()` costs;
without it, the standard library's encoder. Both write compact UTF-8 JSON with the
caller's keys in the caller's order, and both raise `TypeError` for a value JSON has no
form for (a `datetime`, a dataclass, an object). One difference: the standard library
raises `ValueError` for NaN and the infinities, where orjson writes `null`.

`AUDITRAIL_JSON=stdlib` in the environment uses the standard library even where orjson
is installed.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any, Callable, Optional, cast

_stdlib = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _with_stdlib(event: Any) -> bytes:
    return _stdlib(event).encode()


def _orjson() -> Optional[Any]:
    if os.environ.get("AUDITRAIL_JSON", "") == "stdlib":
        return None
    try:
        return importlib.import_module("orjson")
    except ImportError:
        return None


def _with(orjson: Any) -> Callable[[Any], bytes]:
    dumps = orjson.dumps
    # What the standard library refuses, refused here too (orjson would write them).
    option = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def encode(event: Any) -> bytes:
        return cast(bytes, dumps(event, option=option))

    return encode


_lib = _orjson()
#: The encoder in use: "orjson" or "json".
ENCODER = "orjson" if _lib is not None else "json"
#: An event (a dict) as JSON bytes.
encode_event: Callable[[Any], bytes] = _with(_lib) if _lib is not None else _with_stdlib
