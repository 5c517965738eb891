"""The user directory: ``import_users`` and its readers, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.delivery.directory import (
    DirectoryError,
    UserImportError,
    directory_info,
    directory_store,
    import_users,
    known_attributes,
    lookup_users,
    open_directory,
    parse_numeral,
)
from engine.state import StateStore


def write_csv(folder: Path, text: str, name: str = "users.csv", *, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def all_users(store: StateStore) -> dict[str, dict]:
    from sqlalchemy import select

    from engine.state import directory_tables as dt

    with store.reading() as conn:
        ids = list(conn.execute(select(dt.users.c.user_id)).scalars())
    return lookup_users(store, ids)


def opt_outs(store: StateStore) -> dict[str, str | None]:
    from sqlalchemy import select

    from engine.state import directory_tables as dt

    with store.reading() as conn:
        return dict(conn.execute(select(dt.users.c.user_id, dt.users.c.opt_out)).all())


# -- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("1250", 1250),
        ("-3", -3),
        ("0", 0),
        ("2.5", 2.5),
        ("-0.75", -0.75),
        ("123456789012345", 123456789012345),
        ("007", None),
        ("1.50", None),
        ("1.", None),
        (".5", None),
        ("+5", None),
        ("-0", None),
        ("1e3", None),
        (" 12", None),
        ("12 ", None),
        ("1,000", None),
        ("1234567890123456", None),  # 16 digits: kept as text, never rounded
        ("NaN", None),
        ("Infinity", None),
        ("١٢", None),  # non-ASCII digits
        ("", None),
    ],
)
def test_canonical_numerals_are_numbers_and_everything_else_text(cell: str, value: object) -> None:
    parsed = parse_numeral(cell)
    assert parsed == value
    assert type(parsed) is type(value)


@given(st.one_of(st.integers(-(10**15) + 1, 10**15 - 1), st.floats(allow_nan=False, allow_infinity=False)))
def test_a_number_written_canonically_reads_back_as_itself(number: float) -> None:
    text = repr(number) if isinstance(number, float) else str(number)
    parsed = parse_numeral(text)
    if parsed is not None:  # what is stored as a number prints exactly as the cell was written
        assert parsed == number
        assert (repr(parsed) if isinstance(parsed, float) else str(parsed)) == text


@given(st.text(max_size=12))
def test_any_cell_is_either_a_number_that_prints_as_written_or_text(cell: str) -> None:
    parsed = parse_numeral(cell)
    if parsed is not None:
        assert (repr(parsed) if isinstance(parsed, float) else str(parsed)) == cell


# -- importing -----------------------------------------------------------------------------------


def test_import_types_values_skips_empty_cells_and_reads_opt_outs(state_store: StateStore, tmp_path: Path) -> None:
    assert known_attributes(state_store) is None
    assert directory_info(state_store) is None
    path = write_csv(
        tmp_path,
        "user_id,first_name,points,city,zip,opt_out\n"
        "u1,Juan,1250,Manila,007,\n"
        "u2,,-3,Cebu,1000, sms | push \n"
        "u3,Ana,2.5,,,inbox-ewallet|inbox-miniprogram|push\n",
    )
    result = import_users(state_store, path)
    assert (result.rows, result.added, result.updated, result.total) == (3, 3, 0, 3)
    assert result.attributes == ("first_name", "points", "city", "zip")
    assert result.summary().startswith("Imported 3 users (4 attributes: city, first_name, points, zip) in ")

    users = all_users(state_store)
    assert users == {
        "u1": {"user_id": "u1", "first_name": "Juan", "points": 1250, "city": "Manila", "zip": "007"},
        "u2": {"user_id": "u2", "points": -3, "city": "Cebu", "zip": 1000},
        "u3": {"user_id": "u3", "first_name": "Ana", "points": 2.5},
    }
    assert opt_outs(state_store) == {"u1": None, "u2": "push|sms", "u3": "inbox-ewallet|inbox-miniprogram|push"}
    assert known_attributes(state_store) == {"first_name", "points", "city", "zip"}
    info = directory_info(state_store)
    assert info is not None and info.users == 3 and info.last_source == "users.csv"


def test_text_survives_the_bulk_path_exactly(state_store: StateStore, tmp_path: Path) -> None:
    """Quotes, backslashes, tabs, newlines, commas, JSON-looking text and non-ASCII go through
    COPY / executemany and back unchanged."""
    tricky = [
        'say "hi"',
        "back\\slash \\N \\t",
        "tab\there",
        "two\nlines",
        "comma, inside",
        '{"json": 1}',
        "null",
        "true",
        "Ñoño 日本 🎉",
        "\\",
        "'; DROP TABLE campaigns_users; --",
    ]
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["user_id", "note"])
    for number, text in enumerate(tricky):
        writer.writerow([f"u{number}", text])
    path = write_csv(tmp_path, buffer.getvalue())
    import_users(state_store, path)
    users = all_users(state_store)
    assert {user_id: values["note"] for user_id, values in users.items()} == {f"u{n}": t for n, t in enumerate(tricky)}


def test_a_utf8_bom_and_quoted_headers_are_fine(state_store: StateStore, tmp_path: Path) -> None:
    path = write_csv(tmp_path, '\ufeff"user_id","city" \r\nu1,Manila\r\n\r\nu2,"Quezon City"\r\n')
    result = import_users(state_store, path)
    assert result.rows == 2
    assert lookup_users(state_store, ["u2"]) == {"u2": {"user_id": "u2", "city": "Quezon City"}}


def test_merge_adds_new_users_and_replaces_the_listed_ones_whole(state_store: StateStore, tmp_path: Path) -> None:
    import_users(state_store, write_csv(tmp_path, "user_id,city,tier,opt_out\nu1,Manila,gold,push\nu2,Cebu,silver,\n"))
    result = import_users(state_store, write_csv(tmp_path, "user_id,city,points\nu2,Davao,10\nu3,Makati,20\n", "more.csv"))
    assert (result.rows, result.added, result.updated, result.total) == (2, 1, 1, 3)
    assert "1 new, 1 updated, 3 in the directory" in result.summary()
    assert all_users(state_store) == {
        "u1": {"user_id": "u1", "city": "Manila", "tier": "gold"},  # not in the file: untouched
        "u2": {"user_id": "u2", "city": "Davao", "points": 10},  # listed: its old tier is gone
        "u3": {"user_id": "u3", "city": "Makati", "points": 20},
    }
    assert opt_outs(state_store)["u1"] == "push"
    assert known_attributes(state_store) == {"city", "tier", "points"}  # u1 still has a tier


def test_a_merge_clears_the_opt_out_of_a_listed_user(state_store: StateStore, tmp_path: Path) -> None:
    import_users(state_store, write_csv(tmp_path, "user_id,opt_out\nu1,push|sms\n"))
    import_users(state_store, write_csv(tmp_path, "user_id,opt_out\nu1,\n", "again.csv"))
    assert opt_outs(state_store) == {"u1": None}


def test_replace_makes_the_directory_exactly_the_file(state_store: StateStore, tmp_path: Path) -> None:
    import_users(state_store, write_csv(tmp_path, "user_id,city,tier\nu1,Manila,gold\nu2,Cebu,silver\n"))
    result = import_users(state_store, write_csv(tmp_path, "user_id,points\nu2,5\nu9,7\n", "new.csv"), replace=True)
    assert (result.rows, result.removed, result.total) == (2, 2, 2)
    assert all_users(state_store) == {"u2": {"user_id": "u2", "points": 5}, "u9": {"user_id": "u9", "points": 7}}
    assert known_attributes(state_store) == {"points"}


def test_a_file_with_only_user_ids_is_a_directory_without_attributes(state_store: StateStore, tmp_path: Path) -> None:
    result = import_users(state_store, write_csv(tmp_path, "user_id\nu1\nu2\n"))
    assert result.summary().startswith("Imported 2 users (0 attributes) in ")
    assert known_attributes(state_store) == set()  # imported: an empty set, not None
    assert all_users(state_store) == {"u1": {"user_id": "u1"}, "u2": {"user_id": "u2"}}


# -- rejecting -----------------------------------------------------------------------------------


def test_bad_rows_reject_the_whole_file_with_line_numbers(state_store: StateStore, tmp_path: Path) -> None:
    import_users(state_store, write_csv(tmp_path, "user_id,city\nkeep,Manila\n"))
    bad = write_csv(
        tmp_path,
        "user_id,city,opt_out\n"
        "u1,Manila,push|fax\n"
        "u2,Cebu,\n"
        "u2,Davao,\n"
        ",Nowhere,\n"
        f"{'x' * 33},Makati,\n"
        "u 3,Taguig,\n"
        "u4,Pasig\n"
        "u5,Pasay,sms\n",
        "bad.csv",
    )
    with pytest.raises(UserImportError) as caught:
        import_users(state_store, bad)
    error = caught.value
    assert error.count == 6
    assert [(p.line, p.message.split(" ")[0]) for p in error.problems] == [
        (2, "opt_out"),
        (4, "duplicate"),
        (5, "user_id"),
        (6, "user_id"),
        (7, "user_id"),
        (8, "has"),
    ]
    text = str(error)
    assert "bad.csv has 6 bad rows; nothing was imported" in text
    assert "line 2: opt_out names unknown channel 'fax'" in text
    assert "line 4: duplicate user_id 'u2' (first on line 3)" in text
    assert "line 5: user_id is empty" in text
    assert "is 33 characters; at most 32" in text
    assert "line 7: user_id 'u 3' contains white space" in text
    assert "line 8: has 2 cells; the first row names 3 columns" in text
    # nothing of the bad file was written; the earlier directory is intact
    assert all_users(state_store) == {"keep": {"user_id": "keep", "city": "Manila"}}
    assert known_attributes(state_store) == {"city"}


def test_many_problems_are_counted_and_the_first_twenty_listed(state_store: StateStore, tmp_path: Path) -> None:
    rows = "".join(f"u{n},\nu{n},\n" for n in range(30))
    with pytest.raises(UserImportError) as caught:
        import_users(state_store, write_csv(tmp_path, "user_id,city\n" + rows))
    assert caught.value.count == 30
    assert len(caught.value.problems) == 20
    assert "... and 10 more" in str(caught.value)
    assert known_attributes(state_store) is None


def test_a_bad_row_far_into_a_big_file_rolls_everything_back(state_store: StateStore, tmp_path: Path) -> None:
    rows = "".join(f"u{n},{n}\n" for n in range(30_000))
    path = write_csv(tmp_path, "user_id,points\n" + rows + "u7,dup\n")
    with pytest.raises(UserImportError, match=r"line 30002: duplicate user_id 'u7' \(first on line 9\)"):
        import_users(state_store, path)
    assert all_users(state_store) == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty; its first row must name the columns"),
        (b"id,city\n1,x\n", "has no user_id column (its first row names: 'id', 'city')"),
        (b"user_id;city\nu1;x\n", "columns must be separated by commas"),
        (b"user_id,city,city\nu1,a,b\n", "names column 'city' twice"),
        (b"user_id,,city\nu1,a,b\n", "column 2 of the first row has no name"),
        (b"user_id,city\nu1,Manila\nu2,S\xe3o Paulo\n", "is not UTF-8 text (line 3: byte 0xe3); save it as UTF-8"),
    ],
)
def test_unreadable_files_fail_with_one_clear_line(
    state_store: StateStore, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(content)
    with pytest.raises(DirectoryError) as caught:
        import_users(state_store, path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert known_attributes(state_store) is None


def test_a_missing_file_is_a_clear_error(state_store: StateStore, tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="no such file"):
        import_users(state_store, tmp_path / "nope.csv")


# -- where the directory lives -------------------------------------------------------------------


def test_the_directory_is_the_state_unless_platform_names_another(
    state_store: StateStore, make_state_url, tmp_path: Path
) -> None:
    from engine.config.models import Platform

    site = {"ph": {"name": "PH", "timezone": "Asia/Manila", "channels": ["push"]}}
    assert directory_store(Platform(sites=site), state_store, tmp_path) is state_store
    assert directory_store({"sites": site}, state_store, tmp_path) is state_store

    other = make_state_url()
    platform = Platform(sites=site, user_directory=other)
    with open_directory(platform, state_store, tmp_path) as directory:
        assert directory is not state_store
        import_users(directory, write_csv(tmp_path, "user_id,city\nu1,Manila\n"))
        assert known_attributes(directory) == {"city"}
    assert known_attributes(state_store) is None  # nothing went to the state
    with StateStore.open(other, tmp_path) as again:
        assert lookup_users(again, ["u1"]) == {"u1": {"user_id": "u1", "city": "Manila"}}


def test_lookup_users_handles_many_ids_and_unknown_ones(state_store: StateStore, tmp_path: Path) -> None:
    rows = "".join(f"u{n},{n}\n" for n in range(1200))
    import_users(state_store, write_csv(tmp_path, "user_id,points\n" + rows))
    wanted = [f"u{n}" for n in range(0, 1200, 2)] + ["nobody"]
    found = lookup_users(state_store, wanted)
    assert len(found) == 600 and "nobody" not in found
    assert found["u1198"] == {"user_id": "u1198", "points": 1198}


def test_the_import_history_records_each_import(state_store: StateStore, tmp_path: Path) -> None:
    from sqlalchemy import select

    from engine.state import directory_tables as dt

    import_users(state_store, write_csv(tmp_path, "user_id,city\nu1,Manila\n"))
    # u1 goes, all of the directory: a shrink, allowed
    import_users(state_store, write_csv(tmp_path, "user_id,points\nu2,1\n", "b.csv"), replace=True, allow_shrink=True)
    with state_store.reading() as conn:
        rows = conn.execute(select(dt.user_imports).order_by(dt.user_imports.c.id)).all()
    assert [(r.source, r.mode, r.rows, json.loads(r.attributes), r.total_users) for r in rows] == [
        ("users.csv", "merge", 1, ["city"], 1),
        ("b.csv", "replace", 1, ["points"], 1),
    ]
