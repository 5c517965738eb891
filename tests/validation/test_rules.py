"""Every rule code, on both sides of its boundary, located at the offending node."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from repos import edit, example_repo, task_yaml, write

from engine.clock import Clock
from engine.problems import CODES
from engine.validation.pipeline import validate_repository


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


MANILA = dt.timezone(dt.timedelta(hours=8))


def problems(root: Path, code: str | None = None) -> list:
    found = validate_repository(root, use_cache=False).problems
    return [p for p in found if code is None or p.code == code]


def errors(root: Path) -> list:
    return [p for p in problems(root) if p.is_error]


def test_the_shipped_example_validates_clean(repo):
    assert errors(repo) == []


# -- yaml-syntax, duplicate-key, schema ------------------------------------------------------


def test_yaml_syntax_is_located(repo):
    write(repo, "creatives/broken.yaml", "name: x\ntemplate: [push-promo\n")
    [found] = problems(repo, "yaml-syntax")
    assert found.file == "creatives/broken.yaml" and found.line >= 2


def test_duplicate_key_is_located(repo):
    write(repo, "campaigns/december-flash-sale/dup.yaml", task_yaml(extra="status: active\nstatus: paused\n"))
    [found] = problems(repo, "duplicate-key")
    assert (found.file, found.line, found.column) == ("campaigns/december-flash-sale/dup.yaml", 11, 1)


def test_schema_problems_point_at_the_field(repo):
    write(repo, "campaigns/december-flash-sale/bad.yaml", task_yaml(channel="pushh", extra="colour: red\n"))
    found = {(p.line, p.column, p.message.split(":")[0]) for p in problems(repo, "schema")}
    assert (4, 10, "channel") in found  # the value
    assert any(line == 10 and column == 1 and "colour" in message for line, column, message in found) or any(
        "colour" in p.message and p.line == 10 and p.column == 1 for p in problems(repo, "schema")
    )


def test_missing_required_field_and_enum(repo):
    edit(repo, "templates/push-promo.yaml", lambda d: d.pop("status"))
    [found] = problems(repo, "schema")
    assert found.file == "templates/push-promo.yaml" and "status" in found.message


# -- invalid-id ------------------------------------------------------------------------------


def test_invalid_file_name_and_duplicate_ids(repo):
    write(repo, "creatives/Flash_A.yaml", "name: x\ntemplate: push-promo\n")
    write(repo, "campaigns/rewards-2027/flash-sale-push.yaml", (repo / "campaigns/december-flash-sale/flash-sale-push.yaml").read_text())
    found = {(p.file, p.code) for p in problems(repo, "invalid-id")}
    assert ("creatives/Flash_A.yaml", "invalid-id") in found
    assert ("campaigns/rewards-2027/flash-sale-push.yaml", "invalid-id") in found or (
        "campaigns/december-flash-sale/flash-sale-push.yaml",
        "invalid-id",
    ) in found


def test_valid_ids_are_accepted(repo):
    write(repo, "creatives/a-1.yaml", (repo / "creatives/flash-a.yaml").read_text())
    assert problems(repo, "invalid-id") == []


# -- unknown-reference -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, path, message",
    [
        (lambda d: d.update(site="sg"), ("site",), "site 'sg'"),
        (lambda d: d.update(mini_program="games"), ("mini_program",), "mini program 'games'"),
        (lambda d: d["audiences"].append("nobody"), ("audiences", 2), "audience 'nobody'"),
        (lambda d: d["creatives"].append("flash-z"), ("creatives", 2), "creative 'flash-z'"),
    ],
)
def test_unknown_references_from_tasks(repo, change, path, message):
    edit(repo, "campaigns/december-flash-sale/flash-sale-push.yaml", change)
    found = problems(repo, "unknown-reference")
    assert {p.file for p in found} == {"campaigns/december-flash-sale/flash-sale-push.yaml"}
    [first] = [p for p in found if message in p.message]
    assert first.line > 1 and first.column > 1


def test_unknown_template_and_campaign(repo):
    edit(repo, "creatives/flash-a.yaml", lambda d: d.update(template="push-promo-v2"))
    (repo / "campaigns/rewards-2027/campaign.yaml").unlink()
    found = {(p.file, p.message.split(" ")[0]) for p in problems(repo, "unknown-reference")}
    assert ("creatives/flash-a.yaml", "template") in found
    assert ("campaigns/rewards-2027/weekly-points-inbox.yaml", "campaign") in found


def test_did_you_mean(repo):
    edit(repo, "campaigns/december-flash-sale/flash-sale-push.yaml", lambda d: d["audiences"].__setitem__(0, "new-user-ph"))
    [found] = problems(repo, "unknown-reference")
    assert "did you mean 'new-users-ph'" in found.message


# -- name-too-long: code points, not bytes ----------------------------------------------------


@pytest.mark.parametrize(
    "name, too_long",
    [
        ("x" * 64, False),
        ("x" * 65, True),
        ("闪" * 64, False),  # 64 CJK characters are 192 bytes: still fine
        ("闪" * 65, True),
        ("🎉" * 64, False),  # emoji outside the BMP count once each
        ("🎉" * 65, True),
    ],
)
def test_task_name_limit_counts_code_points(repo, name, too_long):
    edit(repo, "campaigns/december-flash-sale/flash-sale-push.yaml", lambda d: d.update(name=name))
    found = problems(repo, "name-too-long")
    assert bool(found) == too_long
    if too_long:
        lines = (repo / "campaigns/december-flash-sale/flash-sale-push.yaml").read_text().splitlines()
        assert found[0].line == next(i for i, line in enumerate(lines, 1) if line.startswith("name:"))
        assert "65" in found[0].message


@pytest.mark.parametrize("path", ["creatives/flash-a.yaml", "audiences/vip-ph.yaml", "templates/push-promo.yaml", "campaigns/rewards-2027/campaign.yaml"])
@pytest.mark.parametrize("length, too_long", [(100, False), (101, True)])
def test_other_names_allow_100(repo, path, length, too_long):
    edit(repo, path, lambda d: d.update(name="名" * length))
    assert bool(problems(repo, "name-too-long")) == too_long


# -- dates and windows ------------------------------------------------------------------------


@pytest.mark.parametrize("start, finish, bad", [("2026-12-31", "2026-12-30", True), ("2026-12-31", "2026-12-31", False)])
def test_date_range(repo, start, finish, bad):
    write(repo, "campaigns/december-flash-sale/t.yaml", task_yaml(start=start, finish=finish))
    found = problems(repo, "date-range")
    assert bool(found) == bad
    if bad:
        assert found[0].line == 7  # finish_date


@pytest.mark.parametrize(
    "window, code",
    [
        ('[{start: "09:00", finish: "11:00"}]', "window-too-short"),  # exactly 2 hours
        ('[{start: "09:00", finish: "11:01"}]', None),  # 2 hours 1 minute
        ('[{start: "11:00", finish: "09:00"}]', "window-order"),  # finish before start
        ('[{start: "09:00", finish: "09:00"}]', "window-order"),
    ],
)
def test_window_length(repo, window, code):
    write(repo, "campaigns/december-flash-sale/t.yaml", task_yaml(windows=window))
    codes = {p.code for p in errors(repo)}
    assert codes == ({code} if code else set())


@pytest.mark.parametrize(
    "windows, bad",
    [
        ('[{start: "09:00", finish: "11:30"}, {start: "11:30", finish: "14:00"}]', True),  # touching
        ('[{start: "09:00", finish: "11:30"}, {start: "11:00", finish: "14:00"}]', True),  # overlapping
        ('[{start: "09:00", finish: "11:30"}, {start: "11:31", finish: "14:00"}]', False),  # a gap
    ],
)
def test_window_order(repo, windows, bad):
    write(repo, "campaigns/december-flash-sale/t.yaml", task_yaml(windows=windows))
    found = problems(repo, "window-order")
    assert bool(found) == bad
    if bad:
        assert found[0].file == "campaigns/december-flash-sale/t.yaml" and found[0].line == 8


# -- no-occurrences ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recurrence, extra, bad",
    [
        ("{type: weekly, days: [monday]}", "  do_not_disturb: [monday]\n", True),
        ("{type: weekly, days: [monday, tuesday]}", "  do_not_disturb: [monday]\n", False),
        ("{type: one_time}", "  do_not_disturb: [monday, tuesday, wednesday, thursday, friday, saturday, sunday]\n", True),
    ],
)
def test_no_occurrences(repo, recurrence, extra, bad):
    text = task_yaml(recurrence=recurrence).replace("  recurrence:", extra + "  recurrence:")
    write(repo, "campaigns/december-flash-sale/t.yaml", text)
    assert bool(problems(repo, "no-occurrences")) == bad


# -- dates-past (the one rule that depends on the clock) -------------------------------------------


def dates_past(root: Path, now: dt.datetime) -> list:
    found = validate_repository(root, use_cache=False, clock=Clock.fixed(now)).problems
    return [p for p in found if p.code == "dates-past"]


@pytest.mark.parametrize(
    "now, past",
    [
        (dt.datetime(2026, 12, 31, 23, 59, tzinfo=MANILA), False),  # the last day, until its end in the site's zone
        (dt.datetime(2026, 12, 31, 16, 0, tzinfo=dt.timezone.utc), True),  # already 2027-01-01 in Manila
        (dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc), False),  # before the task starts
    ],
)
def test_dates_past_at_the_boundary(repo, now, past):
    write(repo, "campaigns/december-flash-sale/t.yaml", task_yaml(start="2026-12-01", finish="2026-12-31"))
    found = [p for p in dates_past(repo, now) if p.file == "campaigns/december-flash-sale/t.yaml"]
    assert bool(found) == past
    if past:
        [warning] = found
        assert (warning.line, warning.severity) == (7, "warning") and "finish_date 2026-12-31" in warning.message


def test_dates_past_is_per_site_time_zone(repo):
    edit(repo, "platform.yaml", lambda d: d["sites"].update(us={**d["sites"]["ph"], "timezone": "America/Los_Angeles"}))
    write(repo, "campaigns/december-flash-sale/t.yaml", task_yaml(finish="2026-12-31"))
    write(repo, "campaigns/december-flash-sale/u.yaml", task_yaml(finish="2026-12-31").replace("site: ph", "site: us"))
    moment = dt.datetime(2027, 1, 1, 5, 0, tzinfo=dt.timezone.utc)  # 13:00 in Manila, still Dec 31st in LA
    files = {p.file for p in dates_past(repo, moment)}
    assert "campaigns/december-flash-sale/t.yaml" in files and "campaigns/december-flash-sale/u.yaml" not in files


def test_a_schedule_that_never_delivers_is_no_occurrences_not_dates_past(repo):
    text = task_yaml(recurrence="{type: weekly, days: [monday]}").replace("  recurrence:", "  do_not_disturb: [monday]\n  recurrence:")
    write(repo, "campaigns/december-flash-sale/t.yaml", text)
    assert not [p for p in dates_past(repo, dt.datetime(2028, 1, 1, tzinfo=dt.timezone.utc)) if "t.yaml" in p.file]
    assert problems(repo, "no-occurrences")


# -- channels and templates -------------------------------------------------------------------


def test_channel_not_on_site(repo):
    edit(repo, "platform.yaml", lambda d: d["sites"]["ph"]["channels"].remove("sms"))
    found = problems(repo, "channel-mismatch")
    assert [p.file for p in found] == ["campaigns/december-flash-sale/flash-sale-sms.yaml"]


def test_creative_template_for_another_channel(repo):
    edit(repo, "campaigns/december-flash-sale/flash-sale-push.yaml", lambda d: d["creatives"].append("flash-sms"))
    [found] = problems(repo, "channel-mismatch")
    assert "flash-sms" in found.message and found.line > 1


@pytest.mark.parametrize("status, flagged", [("approved", False), ("under-review", True), ("rejected", True)])
def test_template_not_approved_is_a_warning(repo, status, flagged):
    edit(repo, "templates/push-promo.yaml", lambda d: d.update(status=status))
    result = validate_repository(repo, use_cache=False)
    found = [p for p in result.problems if p.code == "template-not-approved"]
    assert bool(found) == flagged
    assert not result.has_errors  # the plan blocks it; validation only warns
    if flagged:
        assert found[0].severity == "warning" and found[0].file.endswith("flash-sale-push.yaml")


# -- template fields --------------------------------------------------------------------------


def test_field_required(repo):
    edit(repo, "creatives/flash-a.yaml", lambda d: d.pop("title"))
    [found] = problems(repo, "field-required")
    assert found.file == "creatives/flash-a.yaml" and "title" in found.message


def test_push_needs_a_redirection_even_if_the_template_forgets_it(repo):
    edit(repo, "templates/push-promo.yaml", lambda d: d["fields"].pop("redirection"))
    edit(repo, "creatives/flash-a.yaml", lambda d: d.pop("redirection"))
    assert any(p.file == "creatives/flash-a.yaml" for p in problems(repo, "field-required"))


@pytest.mark.parametrize("length, bad", [(50, False), (51, True)])
def test_field_too_long(repo, length, bad):
    edit(repo, "creatives/flash-a.yaml", lambda d: d.update(title="t" * length))
    found = problems(repo, "field-too-long")
    assert bool(found) == bad
    if bad:
        assert found[0].line == found[0].line and "51" in found[0].message


def test_field_length_counts_example_values_not_placeholders(repo):
    # 44 characters of text + "Maria" (5) = 49 <= 50, although the source text is longer
    edit(repo, "creatives/flash-a.yaml", lambda d: d.update(title="{{ user.first_name }}" + "x" * 44))
    assert problems(repo, "field-too-long") == []
    edit(repo, "creatives/flash-a.yaml", lambda d: d.update(title="{{ user.first_name }}" + "x" * 46))
    assert problems(repo, "field-too-long")


def test_content_too_long_through_the_wallet_gateway(repo):
    """More cases in test_template_limits.py."""
    platform = (repo / "platform.yaml").read_text()
    gateway = "  push: {type: gateway, url: https://gw.example.com/send, token_env: GATEWAY_TOKEN}\n"
    write(repo, "platform.yaml", platform.replace("providers:\n", "providers:\n" + gateway))
    edit(repo, "templates/push-promo.yaml", lambda d: d["fields"]["content"].pop("max_length"))
    edit(repo, "creatives/flash-a.yaml", lambda d: d.update(content="x" * 3900))
    assert problems(repo, "content-too-long") == []
    edit(repo, "creatives/flash-a.yaml", lambda d: d.update(content="x" * 4100))
    [found] = problems(repo, "content-too-long")
    lines = (repo / "creatives/flash-a.yaml").read_text().splitlines()
    assert found.file == "creatives/flash-a.yaml" and lines[found.line - 1].startswith("content:")


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, bad",
    [
        ("https://shop.example.com/sale", False),
        ("gcash://shop/sale", False),  # a deep link the site allows
        ("http://shop.example.com/sale", True),
        ("javascript:alert(1)", True),
        ("data:text/html;base64,PHNjcmlwdD4=", True),
        ("https://", True),
        ("shop.example.com/sale", True),
        ("mystery://x", True),  # a scheme the site does not allow
        ("https://shop.example.com/" + "a" * 2030, True),  # over 2,048 characters
    ],
)
def test_redirection_urls(repo, url, bad):
    edit(repo, "creatives/flash-a.yaml", lambda d: d.update(redirection=url))
    found = problems(repo, "url-invalid")
    assert bool(found) == bad, found
    if bad:
        assert found[0].file == "creatives/flash-a.yaml" and found[0].line > 1


# -- Jinja ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, code",
    [
        ("Hi {{ user.first_name }}", None),
        ("Hi {{ user.first_name | default('there') | title }}", None),
        ("Hi {{ user.first_name ", "template-syntax"),
        ("{% for x in %}", "template-syntax"),
        ("{{ user.__class__.__mro__ }}", "template-syntax"),
        ("{{ user._secret }}", "template-syntax"),
        ("{{ user['__dict__'] }}", "template-syntax"),
        ("{{ user.first_name | shell }}", "template-syntax"),
        ("{% include 'other' %}", "template-syntax"),
        ("Hi {{ user.nickname }}", "variable-unknown"),
        ("Hi {{ customer.name }}", "variable-unknown"),
    ],
)
def test_jinja_in_creatives(repo, content, code):
    edit(repo, "creatives/flash-a.yaml", lambda d: d.update(content=content))
    found = {p.code for p in errors(repo)}
    assert found == ({code} if code else set())


# -- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "csv, code",
    [
        ("vip-ph.csv", None),
        ("../audiences/vip-ph.csv", None),  # leaves and re-enters: still inside
        ("../../etc/passwd", "path-outside-repo"),
        ("/etc/passwd", "path-outside-repo"),
        ("missing.csv", "unknown-reference"),
    ],
)
def test_csv_paths(repo, csv, code):
    edit(repo, "audiences/vip-ph.yaml", lambda d: d["source"].update(csv=csv))
    found = {p.code for p in errors(repo)}
    assert found == ({code} if code else set())


def test_symlinked_resource_leaving_the_repository(repo, tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("name: x\ndescription: y\n")
    (repo / "creatives" / "linked.yaml").symlink_to(outside)
    assert [p.file for p in problems(repo, "path-outside-repo")] == ["creatives/linked.yaml"]


# -- warnings ---------------------------------------------------------------------------------


def test_unused_template_is_a_warning_that_does_not_fail(repo):
    write(repo, "templates/spare.yaml", (repo / "templates/sms-promo.yaml").read_text())
    result = validate_repository(repo, use_cache=False)
    assert not result.has_errors
    assert [(p.file, p.severity) for p in result.problems if p.code == "unused"] == [("templates/spare.yaml", "warning")]


def test_an_sms_over_the_sites_max_segments_is_a_warning(repo):
    """More in tests/validation/test_sms_too_long.py."""
    write(repo, "templates/sms-promo.yaml", (repo / "templates/sms-promo.yaml").read_text().replace("160", "1000"))
    write(repo, "creatives/flash-sms.yaml", "name: Long\ntemplate: sms-promo\ncontent: " + "x" * 460 + "\n")
    found = [(p.file, p.line, p.severity) for p in problems(repo, "sms-too-long")]
    assert found == [("creatives/flash-sms.yaml", 3, "warning")]


def test_every_documented_code_has_a_test_here():
    source = Path(__file__).read_text()
    untested = [code for code in CODES if f'"{code}"' not in source and code not in ("unknown-attribute", "unused")]
    assert untested == []


def test_every_problem_in_one_run(repo):
    edit(repo, "creatives/flash-a.yaml", lambda d: d.update(redirection="http://x.com", content="{{ user.nope }}"))
    write(repo, "campaigns/december-flash-sale/t.yaml", task_yaml(windows='[{start: "09:00", finish: "10:00"}]'))
    write(repo, "templates/bad.yaml", "name: [\n")
    codes = {p.code for p in errors(repo)}
    assert {"url-invalid", "variable-unknown", "window-too-short", "yaml-syntax"} <= codes
