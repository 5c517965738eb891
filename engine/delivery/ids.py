"""Deterministic identities of deliveries: the message id and the creative a user gets.

Both are pure functions of names that never change for a delivery, so every executor, every
restart after a crash and every retry computes the same values without asking anyone:

- ``message_id(task, occurrence, user_id)``: the idempotency key the provider receives. It is
  recorded in the ledger before the send; a re-send after a crash carries the same id, so a
  gateway that de-duplicates by id delivers once, and a user can never get two *different* ids
  for one occurrence.
- ``creative_index(task, user_id, n)``: which of the task's ``n`` creatives a user gets. It does
  not depend on the occurrence, so a user sees the same variant every time (a stable A/B split),
  and a hash spreads users evenly whatever their ids look like.
"""

from __future__ import annotations

from hashlib import blake2b

from engine.delivery.providers.base import MESSAGE_ID_MAX

_SEP = "\x1f"  # unit separator: cannot appear in ids, so ("a", "b:c") and ("a:b", "c") differ
MESSAGE_ID_LENGTH = 32
assert MESSAGE_ID_LENGTH <= MESSAGE_ID_MAX


def message_id(task: str, occurrence: str, user_id: str) -> str:
    """32 lowercase hex characters (128 bits of BLAKE2b over task, occurrence and user)."""
    return blake2b(f"{task}{_SEP}{occurrence}{_SEP}{user_id}".encode(), digest_size=16).hexdigest()


def creative_index(task: str, user_id: str, count: int) -> int:
    """Index in ``[0, count)`` of the creative ``user_id`` gets for ``task``."""
    if count <= 1:
        return 0
    digest = blake2b(f"{task}{_SEP}{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count
