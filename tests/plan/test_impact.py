"""What a change will do (issue 14, SPEC section 5): audience sizes before and after, the
warnings audience-empty / audience-shrinks / sms-segments / cap-forecast, SMS encoding and cost,
and the cap forecast, on SQLite and PostgreSQL, through the real ``campaigns plan``."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from repos import SmallRepo, apply_now, campaigns, record_pass

from engine.delivery.directory import import_users
from engine.state import StateStore

NOW = "2027-01-04T00:00:00Z"  # Monday; Asia/Manila is already 08:00 that day

PLATFORM = """\
main_branch: main
sites:
  ph:
    name: Philippines wallet
    timezone: Asia/Manila
    channels: [push, sms]
    mini_programs: [shop]
    testers: [u-tester-1]
    limits: {{max_per_user_per_day: {cap}}}
    sms: {{price_per_segment: 0.0123, currency: USD, max_segments: {segments}}}
providers:
  default: {{type: outbox, path: .campaigns/outbox}}
approval:
  forbid_self_merge: false
"""

SMS_TEMPLATE = """\
name: Promo SMS
channel: sms
status: approved
fields:
  content: {required: true}
variables:
  first_name: {example: Maria}
"""

SMS_TASK = """\
name: SMS {id}
site: ph
channel: sms
schedule:
  start_date: 2027-01-04
  finish_date: 2027-03-31
  windows:
    - {{start: "09:00", finish: "12:00"}}
  recurrence: {{type: daily, every: 1}}
audiences: [{audiences}]
creatives: [{creatives}]
status: active
"""


def where(attr: str, op: str, value) -> str:
    return f"name: By {attr}\nsite: ph\nsource:\n  where:\n    all: [{{attr: {attr}, {op}: {json.dumps(value)}}}]\n"


def make_repo(root: Path, *, cap: int = 3, segments: int = 3) -> SmallRepo:
    repo = SmallRepo(root)
    repo.write("platform.yaml", PLATFORM.format(cap=cap, segments=segments))
    repo.write("templates/sms-promo.yaml", SMS_TEMPLATE)
    return repo


def directory(tmp_path: Path, url: str, root: Path, rows: list[str]) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user_id,city,points\n" + "\n".join(rows) + "\n")
    with StateStore.open(url, root) as store:
        import_users(store, users)


def ten_users() -> list[str]:
    """u-0..u-9: eight in Manila, two in Cebu (u-8, u-9)."""
    return [f"u-{n},{'Cebu' if n >= 8 else 'Manila'},{n * 10}" for n in range(10)]


def plan_json(repo: SmallRepo, url: str, *extra: str) -> dict:
    result = campaigns("plan", "--format", "json", "--now", NOW, "--state", url, "--repo", str(repo.root), *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def plan_text(repo: SmallRepo, url: str, output_format: str, *extra: str) -> str:
    result = campaigns("plan", "--format", output_format, "--now", NOW, "--state", url, "--repo", str(repo.root), *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def change(plan: dict, address: str) -> dict:
    return next(c for c in plan["changes"] if c["address"] == address)


def codes(entry: dict) -> list[str]:
    return [w["code"] for w in entry["warnings"]]


# -- audience sizes ---------------------------------------------------------------------------


def test_sizes_before_and_after_and_audience_shrinks(tmp_path, state_url):
    repo = make_repo(tmp_path / "repo")
    repo.write("audiences/everyone.yaml", where("city", "eq", "Manila"))
    directory(tmp_path, state_url, repo.root, ten_users())
    first = plan_json(repo, state_url)
    assert change(first, "task.flash-push")["audience_size"] == {"before": None, "after": 8}
    assert change(first, "audience.everyone")["size"] == {"before": None, "after": 8}
    assert change(first, "audience.everyone")["tasks"] == ["flash-push"]
    record_pass(repo.root, state_url)
    apply_now(repo.root, state_url)

    # the audience alone changes: its size, and the running task it shrinks, on the audience change
    repo.write("audiences/everyone.yaml", where("city", "eq", "Cebu"))
    second = plan_json(repo, state_url)
    audience = change(second, "audience.everyone")
    assert audience["size"] == {"before": 8, "after": 2}
    assert audience["tasks"] == ["flash-push"]
    assert codes(audience) == ["audience-shrinks"]
    assert "shrinks from 8 to 2 members" in audience["warnings"][0]["message"]

    # the task moves to another audience: its own change carries before/after and the warning
    repo.write("audiences/everyone.yaml", where("city", "eq", "Manila"))
    repo.write("audiences/cebu.yaml", where("city", "eq", "Cebu"))
    repo.task("flash-push", audiences="cebu", name="Moved to Cebu")
    third = plan_json(repo, state_url)
    task = change(third, "task.flash-push")
    assert task["audience_size"] == {"before": 8, "after": 2}
    assert "audience-shrinks" in codes(task)
    for output_format in ("text", "markdown"):
        shown = plan_text(repo, state_url, output_format)
        assert "audience-shrinks: the running task's audience shrinks from 8 to 2 members" in shown
        assert "2 users (was 8; -6)" in shown


def test_audience_empty_for_a_rule_value_in_the_wrong_case(tmp_path, state_url):
    repo = make_repo(tmp_path / "repo")
    repo.write("audiences/everyone.yaml", where("city", "eq", "manila"))  # the directory says Manila
    directory(tmp_path, state_url, repo.root, ten_users())
    plan = plan_json(repo, state_url)
    task = change(plan, "task.flash-push")
    assert task["audience_size"] == {"before": None, "after": 0}
    [warning] = [w for w in task["warnings"] if w["code"] == "audience-empty"]
    assert "would reach no one" in warning["message"]
    for output_format in ("text", "markdown"):
        assert "warning: audience-empty: the task would reach no one" in plan_text(repo, state_url, output_format)


def test_without_a_directory_sizes_are_null_and_the_plan_says_why(tmp_path, state_url):
    repo = make_repo(tmp_path / "repo")
    repo.write("audiences/everyone.yaml", where("city", "eq", "Manila"))
    plan = plan_json(repo, state_url)
    sized = change(plan, "task.flash-push")["audience_size"]
    assert sized["before"] is None and sized["after"] is None
    assert "no user directory" in sized["reason"]
    assert change(plan, "audience.everyone")["size"]["after"] is None
    assert any("no user directory" in note for note in plan["impact_notes"])
    assert plan["forecast"] == []
    assert "no user directory" in plan_text(repo, state_url, "text")
    assert "no user directory" in plan_text(repo, state_url, "markdown")


# -- SMS --------------------------------------------------------------------------------------


def test_sms_encoding_segments_cost_and_the_sms_segments_warning(tmp_path, state_url):
    repo = make_repo(tmp_path / "repo", segments=1)
    repo.write("audiences/everyone.yaml", where("city", "eq", "Manila"))
    long_gsm = "Hi {{ user.first_name }}, " + "a" * 160  # 'Hi Maria, ' + 160: 170 septets, 2 segments
    repo.write("creatives/sms-long.yaml", f'name: Long\ntemplate: sms-promo\ncontent: "{long_gsm}"\n')
    repo.write("creatives/sms-emoji.yaml", 'name: Emoji\ntemplate: sms-promo\ncontent: "Sale \U0001F600 today, ça va"\n')
    repo.write("campaigns/xmas/promo-sms.yaml", SMS_TASK.format(id="promo", audiences="everyone", creatives="sms-long, sms-emoji"))
    directory(tmp_path, state_url, repo.root, ten_users())
    task = change(plan_json(repo, state_url), "task.promo-sms")
    assert task["audience_size"]["after"] == 8
    long, emoji = task["sms"]
    assert (long["creative"], long["encoding"], long["segments"]) == ("sms-long", "gsm-7", 2)
    assert Decimal(str(long["cost"]["per_message"])) == Decimal("0.0246")
    assert Decimal(str(long["cost"]["total"])) == Decimal("0.0246") * 8  # segments x audience x price
    assert long["cost"]["currency"] == "USD"
    assert (emoji["encoding"], emoji["segments"], emoji["forcing"]) == ("ucs-2", 1, ["\U0001F600", "ç"])
    assert Decimal(str(emoji["cost"]["total"])) == Decimal("0.0123") * 8
    [warning] = [w for w in task["warnings"] if w["code"] == "sms-segments"]
    assert "creative sms-long needs 2 segments" in warning["message"] and "sms.max_segments of 1" in warning["message"]
    text = plan_text(repo, state_url, "text")
    assert "sms sms-long: gsm-7, 2 segments; 0.0246 USD a message, 0.1968 USD in all" in text
    assert "sms sms-emoji: ucs-2, 1 segment (UCS-2 because of '😀', 'ç')" in text
    assert "warning: sms-segments: creative sms-long needs 2 segments" in text
    markdown = plan_text(repo, state_url, "markdown")
    # users are split over the two creatives: (2 + 1) / 2 segments x 0.0123 x 8 users
    assert task["sms_cost"] == {"before": None, "after": pytest.approx(0.1476), "currency": "USD"}
    assert "warning: sms-segments" in markdown and "**xmas**: 2 task changes" in markdown and "SMS cost +0.1476 USD" in markdown

    # applied, then the long creative is shortened to one segment: the cost before and after
    record_pass(repo.root, state_url)
    apply_now(repo.root, state_url)
    repo.write("creatives/sms-long.yaml", 'name: Long\ntemplate: sms-promo\ncontent: "Hi {{ user.first_name }}"\n')
    task = change(plan_json(repo, state_url), "task.promo-sms")
    assert task["audience_size"] == {"before": 8, "after": 8}
    assert task["sms_cost"] == {"before": pytest.approx(0.1476), "after": pytest.approx(0.0984), "currency": "USD"}
    assert "sms-segments" not in codes(task)
    assert "SMS cost -0.0492 USD" in plan_text(repo, state_url, "text")


# -- the cap forecast -------------------------------------------------------------------------


def test_cap_forecast_in_every_format(tmp_path, state_url):
    repo = make_repo(tmp_path / "repo", cap=1)
    repo.write("audiences/everyone.yaml", where("city", "eq", "Manila"))  # u-0..u-7
    repo.write("audiences/rich.yaml", where("points", "gte", 50))  # u-5..u-9
    repo.task("flash-push", start="2027-01-04", recurrence="{type: daily, every: 2}")  # Jan 4, 6, 8
    repo.task("rich-push", audiences="rich", start="2027-01-04", recurrence="{type: daily, every: 1}")
    directory(tmp_path, state_url, repo.root, ten_users())
    plan = plan_json(repo, state_url, "--forecast-days", "3")
    assert [(e["date"], e["messages"], e["users"], e["capped"]) for e in plan["forecast"]] == [
        ("2027-01-04", 13, 10, 3),  # u-5, u-6, u-7 are due two messages with a cap of one
        ("2027-01-05", 5, 5, 0),
        ("2027-01-06", 13, 10, 3),
    ]
    assert all(e["site"] == "ph" and e["cap"] == 1 for e in plan["forecast"])
    for task_id in ("flash-push", "rich-push"):
        [warning] = [w for w in change(plan, f"task.{task_id}")["warnings"] if w["code"] == "cap-forecast"]
        assert "3 on 2027-01-04, 3 on 2027-01-06" in warning["message"]
    text = plan_text(repo, state_url, "text", "--forecast-days", "3")
    assert "! ph 2027-01-04: 13 messages to 10 users, 3 capped (cap 1/day)" in text
    assert "  ph 2027-01-05: 5 messages to 5 users" in text
    assert "warning: cap-forecast" in text
    markdown = plan_text(repo, state_url, "markdown", "--forecast-days", "3")
    assert "| ph | 2027-01-04 | 13 | 10 | ⚠️ 3 |" in markdown and "| ph | 2027-01-05 | 5 | 5 | 0 |" in markdown
    assert "warning: cap-forecast" in markdown
    assert "capped on 2 days" in markdown
    assert plan_json(repo, state_url, "--forecast-days", "0")["forecast"] == []


def test_a_saved_plan_keeps_sizes_and_forecast(tmp_path, state_url):
    from engine.plan import planfile

    repo = make_repo(tmp_path / "repo")
    repo.write("audiences/everyone.yaml", where("city", "eq", "Manila"))
    directory(tmp_path, state_url, repo.root, ten_users())
    saved = tmp_path / "plan.json"
    result = campaigns("plan", "--now", NOW, "--out", str(saved), "--state", state_url, "--repo", str(repo.root))
    assert result.returncode == 0, result.stderr
    plan = planfile.load(saved)
    assert plan.change("task.flash-push").audience_size == {"before": None, "after": 8}
    assert plan.change("audience.everyone").size == {"before": None, "after": 8}
    assert len(plan.forecast) == 7 and plan.forecast[0]["date"] == "2027-01-04"


def test_a_bad_now_is_one_clear_line(tmp_path):
    repo = make_repo(tmp_path / "repo")
    result = campaigns("plan", "--now", "yesterday", "--repo", str(repo.root))
    assert result.returncode != 0 and "--now" in result.stderr and "Traceback" not in result.stderr


def test_a_long_forecast_keeps_the_comment_under_githubs_limit(tmp_path):
    from repos import plan_of

    from engine.plan.model import Plan
    from engine.plan.render import GITHUB_COMMENT_LIMIT, as_markdown

    repo = make_repo(tmp_path / "repo")
    plan = plan_of(repo.root, f"sqlite:///{tmp_path}/state.db")
    days = [
        {"site": f"s{n % 40}", "date": f"2027-01-{n % 28 + 1:02d}", "messages": 10, "users": 5,
         "capped": 1 if n == 5000 else 0, "capped_messages": 0, "cap": 3, "tasks": []}
        for n in range(40 * 366)
    ]
    big = Plan(plan.lineage, plan.serial, plan.repository_digest, plan.created_at, plan.state, plan.actionable, forecast=days)
    markdown = as_markdown(big)
    assert len(markdown) <= GITHUB_COMMENT_LIMIT
    assert "⚠️ 1" in markdown and f"{40 * 366 - 60:,} more days" in markdown


def test_a_task_paused_outside_git_is_left_out_of_the_forecast(tmp_path, state_url):
    repo = make_repo(tmp_path / "repo")
    repo.write("audiences/everyone.yaml", where("city", "eq", "Manila"))
    repo.task("flash-push", start="2027-01-04", recurrence="{type: daily, every: 1}")
    repo.task("other-push", start="2027-01-04", recurrence="{type: daily, every: 1}")
    directory(tmp_path, state_url, repo.root, ten_users())
    record_pass(repo.root, state_url)
    apply_now(repo.root, state_url)
    paused = campaigns("pause", "other-push", "--reason", "wrong price", "--state", state_url, "--repo", str(repo.root))
    assert paused.returncode == 0, paused.stderr
    repo.task("flash-push", start="2027-01-04", recurrence="{type: daily, every: 1}", name="Renamed")
    plan = plan_json(repo, state_url, "--forecast-days", "2")
    assert [(e["messages"], e["tasks"]) for e in plan["forecast"]] == [(8, ["flash-push"]), (8, ["flash-push"])]
