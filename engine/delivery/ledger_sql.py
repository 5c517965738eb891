"""The ledger's statements, each named once (``engine.delivery.ledger`` runs them through
``engine.state.dialect.Dialect``: ``?`` placeholders; a trailing ``FOR UPDATE`` is kept on
PostgreSQL only). The names say which step of the claim protocol uses them."""

from __future__ import annotations

from engine.state.ledger_tables import deliveries

DELIVERY_COLUMNS = ("task_id", "occurrence", "user_id", "message_id", "status", "creative", "cap_key", "attempts", "at", "error")
"""The columns a claim writes, in the order of its rows (``bulk_copy``)."""

DELIVERIES = deliveries.name

# -- occurrences -----------------------------------------------------------------------------

OPEN_OCCURRENCE = (
    "INSERT INTO campaigns_delivery_occurrences (task_id, occurrence, site, channel, status, "
    "last_user, finish_at, started_at, closed_at, pending, sent, failed, expired, capped, suppressed) "
    "VALUES (?, ?, ?, ?, 'open', NULL, ?, ?, NULL, 0, 0, 0, 0, 0, 0) "
    "ON CONFLICT (task_id, occurrence) DO NOTHING"
)
LOCK_OCCURRENCE = (
    "SELECT status, last_user FROM campaigns_delivery_occurrences WHERE task_id = ? AND occurrence = ? FOR UPDATE"
)
BUMP_COUNTS = (
    "UPDATE campaigns_delivery_occurrences SET pending = pending + ?, sent = sent + ?, failed = failed + ?, "
    "expired = expired + ?, unconfirmed = unconfirmed + ?, capped = capped + ?, suppressed = suppressed + ?, "
    "last_user = coalesce(?, last_user), status = coalesce(?, status) WHERE task_id = ? AND occurrence = ?"
)
"""Counts per status (in ``COUNTED`` order) added; ``last_user`` and ``status`` set unless NULL."""
COUNT_CLAIMS = "SELECT count(*) FROM campaigns_delivery_claims WHERE task_id = ? AND occurrence = ?"
CLOSE_OCCURRENCE = (
    "UPDATE campaigns_delivery_occurrences SET status = 'closed', closed_at = ? "
    "WHERE task_id = ? AND occurrence = ? AND status = 'fanned'"
)
FAN_OCCURRENCE = (
    "UPDATE campaigns_delivery_occurrences SET status = 'fanned' WHERE task_id = ? AND occurrence = ? AND status = 'open'"
)
BUMP_REASONS = (
    "INSERT INTO campaigns_delivery_reasons (task_id, occurrence, status, reason, count) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (task_id, occurrence, status, reason) DO UPDATE "
    "SET count = campaigns_delivery_reasons.count + excluded.count"
)

# -- claim -----------------------------------------------------------------------------------

SENT_ON_CAP_DAY = (
    "SELECT user_id, count(*) FROM campaigns_deliveries WHERE cap_key = ? AND user_id >= ? AND user_id <= ? "
    "GROUP BY user_id"
)
INSERT_CLAIM = (
    "INSERT INTO campaigns_delivery_claims (claim_id, task_id, occurrence, executor, "
    "first_user, last_user, size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
ENSURE_PACING = (
    "INSERT INTO campaigns_delivery_pacing (site, channel, next_free) VALUES (?, ?, 0) ON CONFLICT (site, channel) DO NOTHING"
)
LOCK_PACING = "SELECT next_free FROM campaigns_delivery_pacing WHERE site = ? AND channel = ? FOR UPDATE"
SET_PACING = "UPDATE campaigns_delivery_pacing SET next_free = ? WHERE site = ? AND channel = ?"

# -- finish ----------------------------------------------------------------------------------

LOCK_CLAIM = "SELECT executor FROM campaigns_delivery_claims WHERE claim_id = ? FOR UPDATE"
PUT_OFF_ROW = (
    "UPDATE campaigns_deliveries SET status = 'retrying', attempts = attempts + ?, error = ?, "
    "reason = ?, at = ? WHERE task_id = ? AND occurrence = ? AND user_id = ? AND status = 'pending'"
)
FAIL_ROW = (
    "UPDATE campaigns_deliveries SET status = 'failed', attempts = attempts + ?, error = ?, "
    "reason = ?, at = ?, cap_key = NULL "
    "WHERE task_id = ? AND occurrence = ? AND user_id = ? AND status = 'pending'"
)
SEND_ROW = (
    "UPDATE campaigns_deliveries SET status = 'sent', attempts = attempts + ?, at = ? "
    "WHERE task_id = ? AND occurrence = ? AND user_id = ? AND status = 'pending'"
)
SEND_RANGE = (
    "UPDATE campaigns_deliveries SET status = 'sent', attempts = attempts + 1, at = ? "
    "WHERE task_id = ? AND occurrence = ? AND user_id >= ? AND user_id <= ? AND status = 'pending'"
)
PENDING_AGAIN = (
    "UPDATE campaigns_deliveries SET status = 'pending' WHERE task_id = ? AND occurrence = ? "
    "AND user_id >= ? AND user_id <= ? AND status = 'retrying'"
)
HOLD_BACK_RANGE = (
    "UPDATE campaigns_deliveries SET reason = ?, error = ? WHERE task_id = ? AND occurrence = ? "
    "AND user_id >= ? AND user_id <= ? AND status = 'pending'"
)
RELEASE_FOR_RETRY = (
    "UPDATE campaigns_delivery_claims SET executor = NULL, first_user = ?, size = ?, "
    "retry_at = ?, retries = retries + 1 WHERE claim_id = ?"
)
RELEASE_TAIL = (
    "UPDATE campaigns_delivery_claims SET executor = NULL, first_user = ?, size = ?, retry_at = NULL WHERE claim_id = ?"
)
DELETE_CLAIM = "DELETE FROM campaigns_delivery_claims WHERE claim_id = ?"

# -- recovery and expiry ---------------------------------------------------------------------

TAKE_CLAIM = "UPDATE campaigns_delivery_claims SET executor = ? WHERE claim_id = ?"
CLAIM_PENDING_ROWS = (
    "SELECT user_id, message_id, creative FROM campaigns_deliveries WHERE task_id = ? AND "
    "occurrence = ? AND user_id >= ? AND user_id <= ? AND status = 'pending' ORDER BY user_id"
)
WAITING = (
    "SELECT coalesce(sum(size), 0), min(retry_at) FROM campaigns_delivery_claims "
    "WHERE task_id = ? AND occurrence = ? AND executor IS NULL AND retry_at > ?"
)
RELEASE_CLAIM = "UPDATE campaigns_delivery_claims SET executor = NULL WHERE claim_id = ? AND executor = ?"
LOCK_CLAIMS = (
    "SELECT claim_id, executor, first_user, last_user FROM campaigns_delivery_claims "
    "WHERE task_id = ? AND occurrence = ? FOR UPDATE SKIP LOCKED"
)
EXPIRE_UNAVAILABLE = (
    "UPDATE campaigns_deliveries SET status = 'expired', at = ?, cap_key = NULL, "
    "error = ? || coalesce(error, '') WHERE task_id = ? AND occurrence = ? AND user_id >= ? "
    "AND user_id <= ? AND status = 'pending' AND reason = ?"
)
EXPIRE_RANGE = (
    "UPDATE campaigns_deliveries SET status = 'expired', error = ?, at = ?, cap_key = NULL "
    "WHERE task_id = ? AND occurrence = ? AND user_id >= ? AND user_id <= ? AND status = 'pending'"
)
UNCONFIRM_RANGE = (
    "UPDATE campaigns_deliveries SET status = 'unconfirmed', error = ?, at = ?, reason = NULL "
    "WHERE task_id = ? AND occurrence = ? AND user_id >= ? AND user_id <= ? AND status = 'pending'"
)

# -- reading ---------------------------------------------------------------------------------

FAILED_ROWS = "SELECT occurrence, user_id, reason, error FROM campaigns_deliveries WHERE task_id = ? AND status = 'failed'"


def claims_of(dead: int, released: bool) -> str:
    """Claims to take over: those of ``dead`` dead executors (ids as parameters after task and
    occurrence) and, with ``released``, released ones whose ``retry_at`` passed (its ``now``
    parameter first); first user first, up to a LIMIT, skipping claims locked by another taker."""
    conditions = []
    if released:
        conditions.append("(executor IS NULL AND (retry_at IS NULL OR retry_at <= ?))")
    if dead:
        conditions.append(f"executor IN ({', '.join('?' * dead)})")
    return (
        "SELECT claim_id, first_user, last_user, retries FROM campaigns_delivery_claims "
        f"WHERE task_id = ? AND occurrence = ? AND ({' OR '.join(conditions)}) ORDER BY first_user LIMIT ? "
        "FOR UPDATE SKIP LOCKED"
    )
