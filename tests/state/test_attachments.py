"""Files referenced by resources (an audience's CSV) are kept in the state by content digest."""

import pytest

from engine.state import StateStore


def test_attachment_is_stored_once_and_read_back(state_store: StateStore):
    meta = state_store.meta()
    with state_store.transaction(meta.lineage, meta.serial) as tx:
        assert tx.put_attachments([("d1", "audiences/vip.csv", b"user_id\nu1\n")]) == 1
    with state_store.transaction(meta.lineage, meta.serial + 1) as tx:
        # the same content again is not written twice
        assert tx.put_attachments([("d1", "audiences/vip.csv", b"user_id\nu1\n")]) == 0
    assert state_store.attachment("d1") == b"user_id\nu1\n"
    assert state_store.attachment("missing") is None


def test_attachment_written_in_a_failed_apply_is_rolled_back(state_store: StateStore):
    meta = state_store.meta()
    with pytest.raises(RuntimeError):
        with state_store.transaction(meta.lineage, meta.serial) as tx:
            tx.put_attachments([("d2", "audiences/x.csv", b"user_id\n")])
            raise RuntimeError("crash in the middle of the apply")
    assert state_store.attachment("d2") is None
    assert state_store.meta().serial == meta.serial
