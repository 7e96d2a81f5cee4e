"""The official auditrail client: record events in batches, search, export and verify."""

from . import types
from .aio import AsyncClient
from .client import (
    AuditrailError,
    Client,
    ClientClosedError,
    QueueFullError,
    Stats,
    UnsentError,
)
from .verify import VerificationError, Verified, verify, verify_note

__all__ = [
    "AsyncClient",
    "AuditrailError",
    "Client",
    "ClientClosedError",
    "QueueFullError",
    "Stats",
    "UnsentError",
    "VerificationError",
    "types",
    "Verified",
    "verify",
    "verify_note",
]
