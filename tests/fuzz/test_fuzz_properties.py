"""The fuzz suite's properties under hypothesis (issue 10 item 8), bounded so the suite stays fast:

- never an internal error: each parser (the YAML loader and validate's per-file checks, the Jinja
  checker and renderer, saved plans, GitHub events, the gateway's reply parser, users CSVs)
  answers any input with a result or its own clean error (``fuzz/targets.py`` says which);
- never over the time or memory budget: every input of these tests is answered in a bounded
  time (hypothesis' deadline) and hostile shapes (deep nesting, huge repeats) are refused early;
- "validate accepts => plan, schedule and a render succeed": a repository whose one file is
  changed, when it validates, plans against an empty state, schedules, and renders with its
  templates' examples.

``fuzz/run_all.py`` runs the same targets coverage-guided under atheris in ``.ci/run``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fuzz import targets

FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
SLOW = settings(max_examples=25, deadline=8000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# -- inputs shaped like the real ones ------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["2026-12-01", "0001-01-01", "9999-12-31", "09:00", "u-1\n", "{{ user.first_name }}", ".inf", "~"]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=30)
KEYS = ["name", "site", "channel", "schedule", "start_date", "finish_date", "recurrence", "windows", "creatives",
        "audiences", "template", "title", "content", "redirection", "status", "fields", "variables", "source",
        "where", "csv", "users", "testers", "sites", "timezone", "approval", "main_branch"]
yaml_documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6),
    max_leaves=25,
).map(lambda value: json.dumps(value, default=str))  # JSON is YAML; keys from the schema reach deeper checks
yaml_bytes = st.one_of(yaml_documents.map(str.encode), st.binary(max_size=300))

JINJA_PIECES = ["{{ ", " }}", "{% ", " %}", "{# ", " #}", "user.", "first_name", "points", "user_id", "|", "upper",
                "default('x')", "urlencode", "truncate(5)", "if ", "elif ", "else", "endif", "for ", "endfor", " in ",
                "range(10)", "lipsum(", "'A'", " * ", "10**9", "(", ")", "[", "]", "~", " + ", "1", "-", "\"", "'",
                "tojson", "format", "user", "attr('x')", "__class__", "self", "loop", "cycler", "namespace",
                " and ", " not ", " > ", " == ", "x", " ", "\n", "é"]
jinja_texts = st.one_of(
    st.lists(st.sampled_from(JINJA_PIECES), max_size=25).map("".join),
    st.text(alphabet=st.sampled_from("{}%#|.()'\" uxsepr_1+*~"), max_size=60),
)

pull_requests = st.fixed_dictionaries(
    {},
    optional={
        "number": st.one_of(st.integers(-3, 10**12), st.text(max_size=5), st.none()),
        "state": st.sampled_from(["closed", "open", "", None]),
        "merged": st.one_of(st.booleans(), st.none(), st.just("true")),
        "user": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"login": scalars, "id": scalars})),
        "merged_by": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"login": scalars, "id": scalars})),
        "base": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"ref": scalars, "repo": json_values})),
        "merge_commit_sha": st.one_of(st.none(), st.text(alphabet="0123456789abcdefX", min_size=0, max_size=41)),
        "title": scalars,
        "body": scalars,
        "html_url": scalars,
    },
)
events = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["closed", "opened", "", None]),
        "number": scalars,
        "pull_request": st.one_of(pull_requests, json_values),
        "repository": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"full_name": scalars, "default_branch": scalars})),
    },
)

replies = st.fixed_dictionaries(
    {},
    optional={
        "result": st.one_of(json_values, st.fixed_dictionaries({}, optional={
            "resultStatus": st.sampled_from(["S", "F", "U", "X", None]), "resultCode": scalars, "resultMessage": scalars})),
        "messageSendResults": st.one_of(json_values, st.lists(st.fixed_dictionaries({}, optional={
            "messageId": scalars, "success": scalars, "retry": scalars, "error": scalars, "code": scalars}), max_size=5)),
    },
)

csv_cells = st.text(alphabet=st.sampled_from(['a', '1', ',', '"', '\n', '\r', '\x00', ' ', '|', 'é', '-']), max_size=12)
csv_files = st.lists(st.lists(csv_cells, min_size=1, max_size=4), max_size=8).map(
    lambda rows: "\n".join(",".join(row) for row in [["user_id", "first_name", "opt_out"], *rows])
)

REPOSITORY_EDITS = {
    "creatives/flash-a.yaml": [("title", jinja_texts), ("redirection", st.sampled_from([
        "https://shop.example.com/{{ user.first_name }}", "https://shop.example.com{{ user.first_name }}",
        "https://shop.example.com/?n={{ user.first_name | urlencode }}", "gcash://shop/{{ user.points }}",
        "https://a@shop.example.com/", "https://shop.example.com:99999/", "javascript:alert(1)"]))],
    "templates/push-promo.yaml": [("variables", st.dictionaries(st.sampled_from(["first_name", "points", "city"]),
                                                                 st.fixed_dictionaries({"example": scalars}), max_size=3))],
    "campaigns/december-flash-sale/flash-sale-push.yaml": [
        ("start_date", st.sampled_from(["2026-12-01", "2000-01-01", "2199-12-31", "1999-12-31", "9999-12-31", "2026-02-30"])),
        ("finish_date", st.sampled_from(["2026-12-31", "2036-11-30", "2199-12-31", "0001-01-01", "2027-01-01"])),
        ("recurrence", st.one_of(json_values, st.sampled_from([{"type": "one_time"}, {"type": "daily", "every": 2},
                                                                {"type": "weekly", "days": ["mon"]}, {"type": "daily", "every": 0}]))),
        ("testers", st.lists(st.sampled_from(["u-tester-1", "u-1\n", "", "x" * 40, "u\x00"]), max_size=2)),
    ],
    "audiences/high-points-ph.yaml": [("source", st.one_of(json_values, st.fixed_dictionaries(
        {"where": st.fixed_dictionaries({"attr": st.sampled_from(["points", "city"]), "gte": scalars})})))],
}


@st.composite
def repository_edits(draw) -> bytes:
    """One example file with one field replaced (the first byte says which file, as the target reads)."""
    from engine.config import yamlload

    path = draw(st.sampled_from(sorted(REPOSITORY_EDITS)))
    data = yamlload.load((targets.PROJECT / path).read_bytes())
    key, values = draw(st.sampled_from(REPOSITORY_EDITS[path]))
    if key == "start_date" or key == "finish_date" or key == "recurrence":
        data["schedule"][key] = draw(values)
    else:
        data[key] = draw(values)
    index = targets._REPOSITORY_FILES.index(path)
    return bytes([index]) + json.dumps(data, default=str).encode()


# -- the properties ----------------------------------------------------------------------------


@FAST
@given(yaml_bytes, st.sampled_from(targets.KINDS))
@example(b"a: &a [*a]\n", "task")
@example(b"[" * 3000, "creative")
@example(("k: " + "1" * 400 + "\n").encode(), "audience")
@example(b"x: !!python/object:os.system ls\n", "platform")
def test_yaml_loader_and_file_checks_never_fail_inside(document, kind):
    targets.yaml_file(bytes([targets.KINDS.index(kind)]) + document)


@FAST
@given(jinja_texts)
@example("{% for a in range(10**5) %}{% for b in range(10**5) %}x{% endfor %}{% endfor %}")
@example("{{ lipsum(n=10**7) }}")
@example("{{ 'A' * 10**9 }}")
@example("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}")
@example("{% if user.points > 100 %}{{ user.points }}{% endif %}")
@example("{{ user|tojson }}")
def test_the_creative_checker_and_renderer_answer_cleanly_and_within_budget(text):
    targets.jinja(text.encode())


@FAST
@given(st.one_of(json_values.map(lambda value: json.dumps(value).encode()), st.binary(max_size=200)))
@example(b"[" * 100_000 + b"]" * 100_000)
@example(b'{"kind": "campaigns-plan", "format_version": 1, "checksum": 5}')
@example(b'{"a": NaN}')
@example(b"1" * 5000)
def test_saved_plans_are_read_or_refused_in_one_line(raw):
    targets.saved_plan(raw)


def test_a_saved_plan_of_the_example_survives_any_field_being_replaced():
    """A real saved plan, each of its top-level fields replaced by a hostile value: still only
    PlanFileError (the checksum refuses the edit before any field is trusted)."""
    from fuzz.run_all import _saved_plan

    document = json.loads(_saved_plan())
    for key in list(document):
        for value in (None, [], {}, "x", 10**30, [[[[]]]]):
            targets.saved_plan(json.dumps({**document, key: value}).encode())


@FAST
@given(events)
@example({"action": "closed", "pull_request": {"number": 1, "state": "closed", "merged": True,
          "user": {"login": "Marketer"}, "merged_by": {"login": "marketer"},
          "merge_commit_sha": "a" * 40, "base": {"ref": "main"}}})
@example({"action": "closed", "pull_request": {"number": 1, "state": "closed", "merged": True,
          "user": {"login": ""}, "merged_by": {"login": None}, "merge_commit_sha": "a" * 40}})
def test_github_events_give_an_approval_only_with_two_people(event):
    targets.github_event(json.dumps(event).encode())


@FAST
@given(st.one_of(replies.map(lambda reply: json.dumps(reply).encode()), st.binary(max_size=200)))
@example(b"[" * 100_000)
@example(b'{"messageSendResults": 5}')
@example(b'{"result": {"resultStatus": "S"}, "messageSendResults": [{"messageId": 1}, 7, null]}')
def test_gateway_replies_are_read_or_refused_cleanly(raw):
    targets.gateway_reply(raw)


def test_the_gateway_reply_parser_fuzzed_is_the_providers_own():
    name, parse, _clean = targets.gateway_entry_point()
    assert name.startswith("engine.delivery.providers.gateway.") and callable(parse)


@FAST
@given(st.one_of(csv_files.map(str.encode), st.binary(max_size=200)))
@example(b'user_id,first_name\nu1,"cut\n')
@example(b"user_id\nu\x002\n")
@example(b"\xef\xbb\xbfuser_id\r\nu1\r\n")
def test_users_csvs_are_read_or_refused_cleanly(raw):
    targets.users_csv(raw)


@SLOW
@given(repository_edits())
def test_validate_accepts_means_plan_schedule_and_render_succeed(edited):
    targets.repository(edited)


def test_the_unchanged_example_is_accepted_and_passes_the_property():
    """The property is not vacuous: the unchanged example validates and goes through plan,
    schedule and render (``targets.accepted``)."""
    from engine.clock import Clock
    from engine.validation.pipeline import validate_repository

    root = targets._work_repository()
    for path in targets._REPOSITORY_FILES:
        (root / path).write_bytes((targets.PROJECT / path).read_bytes())
    result = validate_repository(root, use_cache=False, clock=Clock.fixed(targets.NOW))
    assert not result.has_errors and result.repository is not None
    targets.accepted(result.repository, root)


def test_a_creative_glued_to_its_host_breaks_the_property_unless_validate_refuses_it():
    """The fuzz finding this suite keeps fixed: the URL rendered with the examples goes to
    another host, so validate must refuse it (url-invalid) rather than accept an unsendable creative."""
    from engine.config import yamlload

    data = yamlload.load((targets.PROJECT / "creatives/flash-a.yaml").read_bytes())
    data["redirection"] = "https://shop.example.com{{ user.first_name }}"
    targets.repository(bytes([0]) + json.dumps(data).encode())  # raises PropertyFailed if accepted


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_every_target_takes_empty_and_binary_input(name):
    for raw in (b"", b"\x00", b"\xff" * 64, "é".encode()):
        targets.TARGETS[name](raw)
