"""Failures of the state store, each with a one-line message a person can act on.

They are ``CampaignsError`` subclasses so the CLI prints them as ``Error: ...`` and exits 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import CampaignsError

if TYPE_CHECKING:
    from engine.state.records import LockInfo


class StateError(CampaignsError):
    """Any failure to read or write the state."""


class StateConnectionError(StateError):
    """The state database cannot be reached or opened (bad host, missing database, permissions)."""


class StateNotFound(StateError):
    """The state does not exist yet and the caller asked not to create it."""


class NotAStateDatabase(StateError):
    """The URL points at something that is not a campaigns state (not SQLite, foreign tables, ...)."""


class SchemaTooNew(StateError):
    """The state was migrated by a newer campaigns; this version must not write to it."""

    def __init__(self, found: int, supported: int, where: str) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"state schema version {found} at {where} is newer than this campaigns supports "
            f"({supported}); upgrade campaigns"
        )


class StaleState(StateError):
    """The state changed (another apply, or a new lineage) since the caller read it: compare-and-swap failed."""

    def __init__(
        self, expected_lineage: str, expected_serial: int, actual_lineage: str, actual_serial: int
    ) -> None:
        self.expected_lineage = expected_lineage
        self.expected_serial = expected_serial
        self.actual_lineage = actual_lineage
        self.actual_serial = actual_serial
        if expected_lineage != actual_lineage:
            what = f"lineage is {actual_lineage}, expected {expected_lineage} (a different state)"
        else:
            what = f"serial is {actual_serial}, expected {expected_serial}"
        super().__init__(f"state changed since it was read: {what}; plan again")


class StateLocked(StateError):
    """Another process holds the state lock."""

    def __init__(self, holder: LockInfo | None, waited: float = 0.0) -> None:
        self.holder = holder
        self.waited = waited
        after = f" (waited {waited:g}s)" if waited > 0 else ""
        if holder is None:
            super().__init__(f"state is locked by another process{after}; its holder did not record itself")
        else:
            super().__init__(
                f"state is locked by {holder.describe()}{after}; "
                f"if that process is gone, break the lock with `campaigns state unlock {holder.lock_id}`"
            )


class LockNotFound(StateError):
    """``unlock`` was given a lock id that does not hold the state."""


class LockStillHeld(StateError):
    """``unlock`` refused: the lock belongs to a process that is still alive."""
