"""The API's types, as tools/generate_types.py writes them from auditrail's OpenAPI
document. Do not edit: regenerate."""

from typing import Any, Dict, List, Literal, Optional, TypedDict, Union

# A value inside `details`: any JSON value (the server bounds its nesting).
DetailValue = Union[str, int, float, bool, None, List[Any], Dict[str, Any]]


class EventActor(TypedDict, total=False):
    email: Optional[str]
    id: Optional[str]
    name: Optional[str]
    role: Optional[str]
    type: Optional[Literal["USER", "API_KEY", "GRAPH", "SYSTEM"]]


class EventResource(TypedDict, total=False):
    id: Optional[str]
    name: Optional[str]
    type: Optional[str]


class EventScope(TypedDict, total=False):
    id: Optional[str]
    name: Optional[str]
    type: Optional[str]


_EventRequired = TypedDict("_EventRequired", {"action": str})


class Event(_EventRequired, total=False):
    actor: Optional[EventActor]
    context: Optional[Dict[str, str]]
    details: Optional[Dict[str, DetailValue]]
    id: Optional[str]
    occurred_at: Optional[str]
    outcome: Optional[Literal["success", "failure", "unknown"]]
    resource: Optional[EventResource]
    scope: Optional[EventScope]


_StoredEventRequired = TypedDict("_StoredEventRequired", {"action": str, "id": str, "leaf_hash": str, "occurred_at": str, "org_id": str, "received_at": str, "seq": int})


class StoredEvent(_StoredEventRequired, total=False):
    """an event exactly as stored and hashed, plus its `leaf_hash`"""

    actor: Dict[str, Optional[str]]
    context: Dict[str, str]
    details: Dict[str, DetailValue]
    outcome: Literal["success", "failure", "unknown"]
    resource: Dict[str, Optional[str]]
    scope: Dict[str, Optional[str]]


_IngestAckAcceptedItemRequired = TypedDict("_IngestAckAcceptedItemRequired", {"id": str, "seq": int})


class IngestAckAcceptedItem(_IngestAckAcceptedItemRequired, total=False):
    duplicate: bool


_IngestAckRequired = TypedDict("_IngestAckRequired", {"accepted": List[IngestAckAcceptedItem]})


class IngestAck(_IngestAckRequired, total=False):
    pass


_ExportRequestRequired = TypedDict("_ExportRequestRequired", {"from": str, "to": str})


class ExportRequest(_ExportRequestRequired, total=False):
    """An export request as the API takes it (and the job stores it)."""

    action: Optional[str]
    actor_id: Optional[str]
    format: Literal["csv", "ndjson", "parquet", "ocsf", "ocsf_parquet"]
    gzip: bool
    layout: str
    notify_email: Optional[str]
    resource_type: Optional[str]
    scope_id: Optional[str]


_ExportRequired = TypedDict("_ExportRequired", {"created_at": str, "format": str, "from": str, "id": str, "status": Literal["queued", "running", "succeeded", "failed", "expired"], "to": str})


class Export(_ExportRequired, total=False):
    attempts: int
    bytes: Optional[int]
    checkpoint_size: Optional[int]
    checkpoint_url: Optional[str]
    completed_at: Optional[str]
    download_url: Optional[str]
    error: Optional[str]
    expires_at: Optional[str]
    gzip: bool
    layout: str
    requester: Dict[str, Any]
    row_count: int
    sha256: Optional[str]
    started_at: Optional[str]


_InclusionProofRequired = TypedDict("_InclusionProofRequired", {"hashes": List[str], "leaf_hash": str, "leaf_index": int, "root_hash": str, "seq": int, "tree_size": int})


class InclusionProof(_InclusionProofRequired, total=False):
    pass


_ConsistencyProofRequired = TypedDict("_ConsistencyProofRequired", {"from": int, "from_root": str, "hashes": List[str], "to": int, "to_root": str})


class ConsistencyProof(_ConsistencyProofRequired, total=False):
    pass
