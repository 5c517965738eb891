"""Audience membership over the user directory, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from engine.delivery.audience_rules import AudienceError, audience_attribute_problems, check_audience_attributes
from engine.delivery.audiences import Member, audience_size, snapshot_info, task_members
from engine.delivery.directory import NoDirectory, import_users, known_attributes
from engine.state import StateStore

DIRECTORY = [
    # user_id, first_name, points, city, segment, zip, opt_out
    ("u01", "Juan", "1500", "Manila", "vip", "007", ""),
    ("u02", "Ana", "80", "Cebu", "new", "1000", "push"),
    ("u03", "Tess", "2400", "Quezon City", "returning", "", "sms|push"),
    ("u04", "", "999", "Makati", "new", "", ""),
    ("u05", "Mark", "", "Davao", "", "", ""),
    ("u06", "Joy", "1000", "manila", "vip", "", "inbox-ewallet"),
    ("u07", "Luz", "N/A", "Manila", "dormant", "", ""),
    ("u08", "Ñoño", "2.5", "São Paulo", "new", "", ""),
]


def csv_text(header: list[str], rows: Iterable[Iterable[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def load_directory(store: StateStore, folder: Path, rows=DIRECTORY, *, replace: bool = False) -> None:
    path = folder / f"directory-{len(list(folder.iterdir()))}.csv"
    path.write_text(csv_text(["user_id", "first_name", "points", "city", "segment", "zip", "opt_out"], rows))
    import_users(store, path, replace=replace)


def where(*groups: list[dict], refresh: str = "auto") -> dict:
    rule = {"any": [{"all": group} for group in groups]} if len(groups) > 1 else {"all": groups[0]}
    return {"name": "A", "site": "ph", "refresh": refresh, "source": {"where": rule}}


def source(refresh: str = "auto", **kinds: Any) -> dict:
    return {"name": "A", "site": "ph", "refresh": refresh, "source": kinds}


def put_csv(store: StateStore, text: str, path: str = "audiences/list.csv") -> str:
    """Store a CSV as apply does (an attachment, by digest); returns the digest."""
    content = text.encode()
    digest = hashlib.sha256(content).hexdigest()
    meta = store.meta()
    with store.transaction(meta.lineage, meta.serial) as tx:
        tx.put_attachments([(digest, path, content)])
    return digest


def csv_audience(digest: str, path: str = "audiences/list.csv", refresh: str = "auto") -> dict:
    return {**source(refresh, csv=Path(path).name), "csv_digest": digest, "csv_path": path}


def members(store: StateStore, audiences: list[str], bodies: Mapping[str, dict], task_id: str = "t1", **options: Any) -> list[Member]:
    found: list[Member] = []
    for batch in task_members(store, task_id, {"audiences": audiences}, bodies, **options):
        assert batch, "no empty batches"
        found.extend(batch)
    return found


def ids(store: StateStore, audiences: list[str], bodies: Mapping[str, dict], **options: Any) -> list[str]:
    return [member.user_id for member in members(store, audiences, bodies, **options)]


@pytest.fixture
def directory(state_store: StateStore, tmp_path: Path) -> StateStore:
    folder = tmp_path / "csv"
    folder.mkdir()
    load_directory(state_store, folder)
    return state_store


# -- where rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([{"attr": "city", "eq": "Manila"}], ["u01", "u07"]),  # case-sensitive: not u06 "manila"
        ([{"attr": "city", "ne": "Manila"}], ["u02", "u03", "u04", "u05", "u06", "u08"]),
        ([{"attr": "segment", "ne": "new"}], ["u01", "u03", "u05", "u06", "u07"]),  # u05 has no segment
        ([{"attr": "segment", "in": ["vip", "dormant"]}], ["u01", "u06", "u07"]),
        ([{"attr": "segment", "not_in": ["vip", "new"]}], ["u03", "u05", "u07"]),
        ([{"attr": "points", "gte": 1000}], ["u01", "u03", "u06"]),  # "N/A" is text: never >= a number
        ([{"attr": "points", "gt": 1000}], ["u01", "u03"]),
        ([{"attr": "points", "lt": 1000}], ["u02", "u04", "u08"]),
        ([{"attr": "points", "lte": 2.5}], ["u08"]),
        ([{"attr": "points", "eq": 1000}], ["u06"]),
        ([{"attr": "points", "eq": "1000"}], ["u06"]),  # a numeral operand is a number
        ([{"attr": "points", "eq": 1000.0}], ["u06"]),
        ([{"attr": "points", "eq": "N/A"}], ["u07"]),
        ([{"attr": "points", "in": [80, "999", "N/A"]}], ["u02", "u04", "u07"]),
        ([{"attr": "points", "gte": "A"}], ["u07"]),  # a text operand compares text values only
        ([{"attr": "zip", "eq": "007"}], ["u01"]),  # "007" is not a numeral: text
        ([{"attr": "zip", "eq": 7}], []),
        ([{"attr": "zip", "eq": 1000}], ["u02"]),
        ([{"attr": "zip", "exists": True}], ["u01", "u02"]),
        ([{"attr": "zip", "exists": False}], ["u03", "u04", "u05", "u06", "u07", "u08"]),
        ([{"attr": "first_name", "exists": False}], ["u04"]),
        ([{"attr": "city", "gt": "Manila"}], ["u03", "u06", "u08"]),  # code points: "manila" > "Manila"
        ([{"attr": "city", "lt": "Cebu"}], []),
        ([{"attr": "first_name", "gte": "Z"}], ["u08"]),  # "Ñ" sorts after "Z"
        ([{"attr": "user_id", "in": ["u02", "u05", "nobody"]}], ["u02", "u05"]),
        ([{"attr": "user_id", "gt": "u06"}], ["u07", "u08"]),
        ([{"attr": "segment", "eq": "new"}, {"attr": "points", "lt": 100}], ["u02", "u08"]),
    ],
)
def test_where_operators(directory: StateStore, conditions: list[dict], expected: list[str]) -> None:
    bodies = {"a": where(conditions)}
    assert ids(directory, ["a"], bodies) == expected
    assert audience_size(directory, {"audiences": ["a"]}, bodies) == len(expected)


def test_any_of_all_groups_is_an_or_of_ands(directory: StateStore) -> None:
    bodies = {
        "high": where(
            [{"attr": "points", "gte": 1000}, {"attr": "city", "in": ["Manila", "Quezon City", "Makati"]}],
            [{"attr": "segment", "eq": "vip"}],
        )
    }
    assert ids(directory, ["high"], bodies) == ["u01", "u03", "u06"]


def test_members_carry_attributes_user_id_and_opt_outs(directory: StateStore) -> None:
    found = {m.user_id: m for m in members(directory, ["a"], {"a": where([{"attr": "city", "exists": True}])})}
    assert found["u01"] == Member("u01", {"user_id": "u01", "first_name": "Juan", "points": 1500, "city": "Manila", "segment": "vip", "zip": "007"}, frozenset())
    assert found["u03"].opt_out == frozenset({"sms", "push"})
    assert found["u04"].attributes == {"user_id": "u04", "points": 999, "city": "Makati", "segment": "new"}
    assert found["u08"].attributes["points"] == 2.5 and found["u08"].attributes["first_name"] == "Ñoño"


def test_injection_attempts_in_values_are_just_values(directory: StateStore, tmp_path: Path) -> None:
    hostile = "x' OR '1'='1"
    load_directory(directory, tmp_path / "csv", [("evil", "Robert'); DROP TABLE campaigns_users;--", "1", hostile, "", "", "")])
    bodies = {
        "a": where([{"attr": "city", "eq": hostile}]),
        "b": where([{"attr": "city", "in": ["'; DELETE FROM campaigns_users; --", "\\"]}]),
        "c": where([{"attr": "first_name", "eq": "Robert'); DROP TABLE campaigns_users;--"}]),
    }
    assert ids(directory, ["a"], bodies) == ["evil"]
    assert ids(directory, ["b"], bodies) == []
    assert ids(directory, ["c"], bodies) == ["evil"]
    assert audience_size(directory, {"audiences": ["a"]}, {"a": where([{"attr": "city", "exists": True}])}) == 9


@pytest.mark.parametrize("name", ["city') OR 1=1 --", "points\"", "a.b", "$.city", "city[0]"])
def test_injection_attempts_in_attribute_names_are_refused(directory: StateStore, name: str) -> None:
    bodies = {"a": where([{"attr": name, "eq": "x"}])}
    with pytest.raises(AudienceError, match="audience 'a'"):
        task_members(directory, "t1", {"audiences": ["a"]}, bodies)
    assert len(ids(directory, ["b"], {"b": where([{"attr": "city", "exists": True}])})) == 8  # table intact


def test_an_unknown_attribute_is_a_clear_error(directory: StateStore) -> None:
    bodies = {"a": where([{"attr": "pointz", "gte": 1}])}
    with pytest.raises(AudienceError) as caught:
        task_members(directory, "t1", {"audiences": ["a"]}, bodies)
    message = str(caught.value)
    assert "audience 'a'" in message and "no attribute 'pointz'" in message and "did you mean 'points'?" in message


def test_check_audience_attributes_names_each_unknown_attribute(directory: StateStore) -> None:
    known = known_attributes(directory)
    assert known == {"first_name", "points", "city", "segment", "zip"}
    body = where([{"attr": "points", "gte": 1}, {"attr": "ctiy", "eq": "x"}], [{"attr": "tier", "eq": "gold"}, {"attr": "user_id", "eq": "u1"}])
    messages = check_audience_attributes(body, known)
    assert len(messages) == 2
    assert "no attribute 'ctiy' (did you mean 'city'?)" in messages[0]
    assert "no attribute 'tier'" in messages[1] and "it has: city, first_name, points, segment, zip" in messages[1]
    paths = [path for path, _ in audience_attribute_problems(body, known)]
    assert paths == [("source", "where", "any", 0, "all", 1, "attr"), ("source", "where", "any", 1, "all", 0, "attr")]
    assert check_audience_attributes(where([{"attr": "city", "eq": "x"}]), known) == []
    assert check_audience_attributes(source(users=["u1"]), known) == []
    assert check_audience_attributes({"source": {"where": {"all": [{"attr": "x", "eq": 1}]}}}, set())[0].endswith("it has none")


def test_a_where_rule_without_a_directory(state_store: StateStore) -> None:
    bodies = {"a": where([{"attr": "city", "eq": "Manila"}]), "l": source(users=["u1", "u2"])}
    assert known_attributes(state_store) is None
    assert audience_size(state_store, {"audiences": ["a"]}, bodies) is None
    with pytest.raises(NoDirectory, match="no user directory was imported"):
        task_members(state_store, "t1", {"audiences": ["a"]}, bodies)
    # a list needs no directory
    assert audience_size(state_store, {"audiences": ["l"]}, bodies) == 2
    assert ids(state_store, ["l"], bodies) == ["u1", "u2"]


def test_nan_is_refused(directory: StateStore) -> None:
    with pytest.raises(AudienceError, match="finite number"):
        task_members(directory, "t1", {"audiences": ["a"]}, {"a": where([{"attr": "points", "gt": float("nan")}])})


def test_huge_numbers_compare_without_overflow(directory: StateStore) -> None:
    # ±2**53 is the largest operand a where rule takes (validation refuses more, as does the model)
    bodies = {"a": where([{"attr": "points", "lt": 2**53}]), "b": where([{"attr": "points", "gt": -(2**53)}])}
    assert len(ids(directory, ["a"], bodies)) == 6  # every numeric points value
    assert ids(directory, ["a"], bodies) == ids(directory, ["b"], bodies)


# -- lists -------------------------------------------------------------------------------------


def test_users_source_includes_ids_outside_the_directory(directory: StateStore) -> None:
    bodies = {"l": source(users=["u03", "zz-new", "u01", "a-first"])}
    found = members(directory, ["l"], bodies)
    assert [m.user_id for m in found] == ["a-first", "u01", "u03", "zz-new"]
    by_id = {m.user_id: m for m in found}
    assert by_id["zz-new"] == Member("zz-new", {"user_id": "zz-new"}, frozenset())
    assert by_id["u03"].attributes["city"] == "Quezon City" and by_id["u03"].opt_out == {"sms", "push"}
    assert audience_size(directory, {"audiences": ["l"]}, bodies) == 4


def test_csv_columns_lie_over_the_directory(directory: StateStore) -> None:
    text = csv_text(
        ["user_id", "tier", "city", "opt_out"],
        [("u01", "platinum", "Pasig", ""), ("u02", "gold", "", "sms"), ("x-outside", "silver", "Taguig", "")],
    )
    digest = put_csv(directory, text)
    bodies = {"vip": csv_audience(digest)}
    found = {m.user_id: m for m in members(directory, ["vip"], bodies)}
    assert list(found) == ["u01", "u02", "x-outside"]
    assert found["u01"].attributes == {
        "user_id": "u01", "first_name": "Juan", "points": 1500, "city": "Pasig", "segment": "vip", "zip": "007", "tier": "platinum",
    }
    assert found["u02"].attributes["city"] == "Cebu"  # empty CSV cell: the directory's value shows
    assert found["u02"].opt_out == {"push", "sms"}  # directory and CSV opt-outs together
    assert found["x-outside"].attributes == {"user_id": "x-outside", "tier": "silver", "city": "Taguig"}
    assert audience_size(directory, {"audiences": ["vip"]}, bodies) == 3


def test_a_csv_is_parsed_once_per_content(directory: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.delivery import directory as directory_module

    digest = put_csv(directory, csv_text(["user_id"], [("u01",), ("u02",)]))
    bodies = {"a": csv_audience(digest), "b": {**csv_audience(digest), "name": "same file"}}
    assert ids(directory, ["a"], bodies) == ["u01", "u02"]

    def no_parsing(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the CSV was parsed again")

    monkeypatch.setattr(directory_module.UsersCsv, "from_bytes", classmethod(no_parsing))
    assert ids(directory, ["a", "b"], bodies, task_id="t2") == ["u01", "u02"]


def test_a_csv_from_the_callers_files_when_the_state_lacks_it(directory: StateStore) -> None:
    content = csv_text(["user_id", "tier"], [("u05", "gold")]).encode()
    digest = hashlib.sha256(content).hexdigest()
    bodies = {"a": csv_audience(digest)}
    assert audience_size(directory, {"audiences": ["a"]}, bodies) is None  # nowhere to be found
    with pytest.raises(AudienceError, match="not in the state; apply first"):
        task_members(directory, "t1", {"audiences": ["a"]}, bodies)
    assert audience_size(directory, {"audiences": ["a"]}, bodies, attachments={digest: content}) == 1
    assert members(directory, ["a"], bodies, attachments={digest: content})[0].attributes["tier"] == "gold"


def test_a_bad_csv_audience_names_its_lines(directory: StateStore) -> None:
    digest = put_csv(directory, "user_id,tier\nu1,a\nu1,b\n")
    with pytest.raises(AudienceError, match=r"(?s)audience 'a': audiences/list.csv has 1 bad row.*line 3: duplicate user_id 'u1' \(first on line 2\)"):
        task_members(directory, "t1", {"audiences": ["a"]}, {"a": csv_audience(digest)})


# -- include / exclude ---------------------------------------------------------------------------


def library(digest: str | None = None) -> dict[str, dict]:
    bodies = {
        "manila": where([{"attr": "city", "eq": "Manila"}]),
        "new": where([{"attr": "segment", "eq": "new"}]),
        "vip": where([{"attr": "segment", "eq": "vip"}]),
        "listed": source(users=["u02", "u07", "outsider"]),
        "both": source(include=["manila", "new"]),
        "both-but-vip": source(include=["manila", "new"], exclude=["vip"]),
        "nested": source(include=["both-but-vip", "listed"], exclude=["listed-small"]),
        "listed-small": source(users=["u07"]),
        "lists-only": source(include=["listed", "listed-small"], exclude=["new"]),
    }
    if digest:
        bodies["from-csv"] = csv_audience(digest)
        bodies["csv-minus-vip"] = source(include=["from-csv"], exclude=["vip"])
    return bodies


@pytest.mark.parametrize(
    ("audiences", "expected"),
    [
        (["both"], ["u01", "u02", "u04", "u07", "u08"]),
        (["both-but-vip"], ["u02", "u04", "u07", "u08"]),
        (["nested"], ["outsider", "u02", "u04", "u08"]),
        (["lists-only"], ["outsider", "u07"]),
        (["manila", "new"], ["u01", "u02", "u04", "u07", "u08"]),  # de-duplicated across audiences
        (["listed", "vip"], ["outsider", "u01", "u02", "u06", "u07"]),
        (["listed", "listed-small", "both"], ["outsider", "u01", "u02", "u04", "u07", "u08"]),
        (["csv-minus-vip"], ["u03", "z-outsider"]),
        (["from-csv", "manila"], ["u01", "u03", "u06", "u07", "z-outsider"]),
    ],
)
def test_include_exclude_and_union_across_audiences(directory: StateStore, audiences: list[str], expected: list[str]) -> None:
    digest = put_csv(directory, csv_text(["user_id", "tier"], [("u06", "gold"), ("u03", "silver"), ("z-outsider", "x")]))
    bodies = library(digest)
    found = ids(directory, audiences, bodies)
    assert found == expected
    assert len(set(found)) == len(found)
    assert audience_size(directory, {"audiences": audiences}, bodies) == len(expected)


def test_members_of_several_audiences_get_the_first_csvs_columns(directory: StateStore) -> None:
    first = put_csv(directory, csv_text(["user_id", "tier"], [("u01", "gold")]), "audiences/a.csv")
    second = put_csv(directory, csv_text(["user_id", "tier", "code"], [("u01", "silver", "X1")]), "audiences/b.csv")
    bodies = {"a": csv_audience(first, "audiences/a.csv"), "b": csv_audience(second, "audiences/b.csv")}
    (member,) = members(directory, ["a", "b"], bodies)
    assert member.attributes["tier"] == "gold" and member.attributes["code"] == "X1"
    (member,) = members(directory, ["b", "a"], bodies)
    assert member.attributes["tier"] == "silver"


def test_include_cycles_and_undefined_audiences_are_errors(directory: StateStore) -> None:
    bodies = {"a": source(include=["b"]), "b": source(include=["c"]), "c": source(include=["a"]), "d": source(include=["ghost"])}
    with pytest.raises(AudienceError, match=r"audience 'a' includes itself: a -> b -> c -> a"):
        task_members(directory, "t1", {"audiences": ["a"]}, bodies)
    with pytest.raises(AudienceError, match=r"audience 'ghost' \(included by 'd'\) is not defined"):
        task_members(directory, "t1", {"audiences": ["d"]}, bodies)
    with pytest.raises(AudienceError, match="audience 'nope' is not defined"):
        audience_size(directory, {"audiences": ["nope"]}, bodies)


def test_an_audience_included_twice_is_not_a_cycle(directory: StateStore) -> None:
    bodies = {"x": where([{"attr": "segment", "eq": "vip"}]), "a": source(include=["x", "b"]), "b": source(include=["x"])}
    assert ids(directory, ["a", "b", "x"], bodies) == ["u01", "u06"]


# -- refresh -------------------------------------------------------------------------------------


def test_refresh_once_fixes_membership_at_the_first_delivery(directory: StateStore, tmp_path: Path) -> None:
    bodies = {
        "once": where([{"attr": "segment", "eq": "new"}], refresh="once"),
        "auto": where([{"attr": "segment", "eq": "new"}], refresh="auto"),
    }
    assert ids(directory, ["once"], bodies, task_id="t1", snapshot=False) == ["u02", "u04", "u08"]
    assert snapshot_info(directory, "t1") == {}  # snapshot=False takes none
    assert ids(directory, ["once"], bodies, task_id="t1") == ["u02", "u04", "u08"]  # first delivery
    assert snapshot_info(directory, "t1")["once"][0] == 3

    # the directory changes: u09 is new, u02 is no longer new, u04 left
    changed = [row for row in DIRECTORY if row[0] not in ("u02", "u04")]
    changed += [("u02", "Ana", "80", "Cebu", "returning", "", ""), ("u09", "Kim", "5", "Cebu", "new", "", "")]
    load_directory(directory, tmp_path / "csv", changed, replace=True)

    assert ids(directory, ["auto"], bodies) == ["u08", "u09"]
    snapshot = members(directory, ["once"], bodies, task_id="t1")
    assert [m.user_id for m in snapshot] == ["u02", "u04", "u08"]  # fixed
    assert snapshot[0].attributes["segment"] == "returning"  # attributes are read at delivery
    assert snapshot[1].attributes == {"user_id": "u04"}  # no longer in the directory
    assert audience_size(directory, {"audiences": ["once"]}, bodies, task_id="t1") == 3
    assert audience_size(directory, {"audiences": ["once"]}, bodies) == 2  # no task: live
    # another task delivering the same audience now gets today's members
    assert ids(directory, ["once"], bodies, task_id="t2") == ["u08", "u09"]
    # a snapshot alongside an auto audience
    assert ids(directory, ["once", "auto"], bodies, task_id="t1") == ["u02", "u04", "u08", "u09"]


def test_a_snapshot_of_a_list_with_outsiders_merges_with_a_where(directory: StateStore) -> None:
    bodies = {
        "listed": source("once", users=["u01", "b-out", "zz-out"]),
        "vip": where([{"attr": "segment", "eq": "vip"}]),
    }
    assert ids(directory, ["listed", "vip"], bodies, task_id="t9") == ["b-out", "u01", "u06", "zz-out"]
    assert ids(directory, ["listed", "vip"], bodies, task_id="t9", batch_size=1) == ["b-out", "u01", "u06", "zz-out"]
    assert audience_size(directory, {"audiences": ["listed", "vip"]}, bodies, task_id="t9") == 4


def test_a_nested_audiences_refresh_follows_the_task_audience(directory: StateStore, tmp_path: Path) -> None:
    bodies = {"inner": where([{"attr": "segment", "eq": "vip"}], refresh="once"), "outer": source(include=["inner"])}
    assert ids(directory, ["outer"], bodies) == ["u01", "u06"]
    load_directory(directory, tmp_path / "csv", [("u03", "Tess", "1", "X", "vip", "", "")])
    assert ids(directory, ["outer"], bodies) == ["u01", "u03", "u06"]  # outer is auto: re-evaluated


# -- streaming -----------------------------------------------------------------------------------


def test_batches_are_ordered_and_sized(directory: StateStore) -> None:
    bodies = {"all": where([{"attr": "city", "exists": True}]), "l": source(users=["u05", "a0", "zz"])}
    batches = list(task_members(directory, "t1", {"audiences": ["all", "l"]}, bodies, batch_size=3))
    assert [len(batch) for batch in batches] == [3, 3, 3, 1]
    flat = [m.user_id for batch in batches for m in batch]
    assert flat == sorted(flat) == ["a0", "u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "zz"]
    with pytest.raises(ValueError):
        task_members(directory, "t1", {"audiences": ["all"]}, bodies, batch_size=0)


@pytest.mark.slow
def test_a_big_audience_streams_in_bounded_memory(state_store: StateStore, tmp_path: Path) -> None:
    import tracemalloc

    total = 200_000
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("user_id,first_name,points,city\n")
        for n in range(total):
            out.write(f"u{n:06d},Name{n % 97},{n % 5000},{'Manila' if n % 3 else 'Cebu'}\n")
    import_users(state_store, path)
    bodies = {"many": where([{"attr": "points", "gte": 0}])}

    tracemalloc.start()
    try:
        stream = task_members(state_store, "big", {"audiences": ["many"]}, bodies, batch_size=2000)
        first = next(stream)
        after_first, _ = tracemalloc.get_traced_memory()
        count, last = len(first), first[-1].user_id
        for batch in stream:
            assert batch[0].user_id > last
            count += len(batch)
            last = batch[-1].user_id
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == total
    # the whole audience as Members is ~100 MB; the stream holds a couple of batches at a time
    assert after_first < 8_000_000, after_first
    assert peak < 24_000_000, peak


def test_numbers_of_any_size_and_mixed_lists_compare_exactly(directory: StateStore, tmp_path: Path) -> None:
    load_directory(directory, tmp_path / "csv", [("big", "", "123456789012345", "", "", "", ""), ("half", "", "-0.5", "", "", "", "")])
    cases = {
        "a": ([{"attr": "points", "in": [0, 2.5]}], ["u08"]),  # an int first must not make 2.5 an integer
        "b": ([{"attr": "points", "in": [80, 2.5, "999"]}], ["u02", "u04", "u08"]),
        "c": ([{"attr": "points", "gt": 3_000_000_000}], ["big"]),  # past PostgreSQL's INTEGER
        "d": ([{"attr": "points", "eq": 123456789012345}], ["big"]),
        "e": ([{"attr": "points", "lt": 0}], ["half"]),
        "f": ([{"attr": "points", "lte": -0.5}], ["half"]),
    }
    for name, (conditions, expected) in cases.items():
        assert ids(directory, [name], {name: where(conditions)}) == expected, name


def test_the_shipped_example_audiences(state_store: StateStore, tmp_path: Path) -> None:
    """Every task of the example repository, its audiences stored as apply stores them, against
    the example CSVs evaluated in Python."""
    import importlib.util

    from repos import example_repo

    from engine.validation.pipeline import load_repository

    spec = importlib.util.spec_from_file_location("audiences_oracle", Path(__file__).with_name("test_audiences_oracle.py"))
    assert spec is not None and spec.loader is not None
    oracle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle)
    oracle_condition = oracle.oracle_condition

    repo = example_repo(tmp_path / "repo")
    repository = load_repository(repo, use_cache=False)
    import_users(state_store, repo / "audiences/users.csv")
    directory = list(csv.DictReader((repo / "audiences/users.csv").open()))

    bodies: dict[str, dict] = {}
    expected: dict[str, set[str]] = {}
    for audience_id, resource in repository.audiences.items():
        body = dict(resource.data)
        source_data = body["source"]
        if "csv" in source_data:
            relative = f"audiences/{source_data['csv']}"
            digest = put_csv(state_store, (repo / relative).read_text(), relative)
            body.update(csv_digest=digest, csv_path=relative)
            expected[audience_id] = {row["user_id"] for row in csv.DictReader((repo / relative).open())}
        bodies[audience_id] = body
    for audience_id, body in bodies.items():
        rule = body["source"].get("where")
        if rule:
            groups = [g["all"] for g in rule["any"]] if "any" in rule else [rule["all"]]
            expected[audience_id] = {
                row["user_id"] for row in directory if any(all(oracle_condition(row, c) for c in g) for g in groups)
            }
    for audience_id, body in bodies.items():
        source_data = body["source"]
        if "include" in source_data:
            expected[audience_id] = set().union(*(expected[i] for i in source_data["include"])) - set().union(
                *(expected[e] for e in source_data.get("exclude", []))
            )

    assert repository.tasks
    for task_id, task in repository.tasks.items():
        wanted = sorted(set().union(*(expected[a] for a in task.data["audiences"])))
        assert wanted, task_id  # the example's audiences are not empty
        found = members(state_store, task.data["audiences"], bodies, task_id=task_id)
        assert [m.user_id for m in found] == wanted, task_id
        assert audience_size(state_store, {"audiences": task.data["audiences"]}, bodies, task_id=task_id) == len(wanted)
        for member in found:
            assert member.attributes["user_id"] == member.user_id
    known = known_attributes(state_store)
    assert all(check_audience_attributes(body, known) == [] for body in bodies.values())
