"""The state store: lineage and serial, last applied resources, task statuses, pilot tests,
history of applies, and the lock, on SQLite or PostgreSQL behind one interface.

    from engine.state import StateStore, ResourceVersion, TaskStateWrite, Approval

    with StateStore.open(url, base_dir=repo_root) as store:
        meta = store.meta()
        with store.lock("apply", timeout=0):
            with store.transaction(meta.lineage, meta.serial) as tx:
                tx.put_resources([...]); tx.set_task_states([...]); tx.append_history(...)

Records and errors import without SQLAlchemy; ``StateStore`` loads it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.state.errors import (
    LockNotFound,
    LockStillHeld,
    NotAStateDatabase,
    SchemaTooNew,
    StaleState,
    StateConnectionError,
    StateError,
    StateLocked,
    StateNotFound,
)
from engine.state.records import (
    TASK_STATUSES,
    Approval,
    HistoryEntry,
    LockInfo,
    PilotResult,
    PilotTestRun,
    ResourceVersion,
    StateMeta,
    StoredResource,
    TaskState,
    TaskStateWrite,
    TaskStatus,
    canonical_json,
    content_digest,
)

if TYPE_CHECKING:
    from engine.state.store import StateStore, Transaction

DEFAULT_STATE_URL = "sqlite:///.campaigns/state.db"

__all__ = [
    "DEFAULT_STATE_URL",
    "TASK_STATUSES",
    "Approval",
    "HistoryEntry",
    "LockInfo",
    "LockNotFound",
    "LockStillHeld",
    "NotAStateDatabase",
    "PilotResult",
    "PilotTestRun",
    "ResourceVersion",
    "SchemaTooNew",
    "StaleState",
    "StateConnectionError",
    "StateError",
    "StateLocked",
    "StateMeta",
    "StateNotFound",
    "StateStore",
    "StoredResource",
    "TaskState",
    "TaskStateWrite",
    "TaskStatus",
    "Transaction",
    "canonical_json",
    "content_digest",
]


def __getattr__(name: str) -> Any:
    if name in ("StateStore", "Transaction"):
        from engine.state import store

        return getattr(store, name)
    raise AttributeError(f"module 'engine.state' has no attribute {name!r}")
