"""``campaigns preview`` through the real command: what the page says and that nothing escapes it.
(The page in a real browser: ``test_browser.py``.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from cli_runner import campaigns
from preview_repo import NOW
from repos import edit, record_pass

from engine.preview.render import to_html


class Tags(HTMLParser):
    """Every start tag with its attributes, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def section(html: str, task: str) -> str:
    start = html.index(f'<section class="task" id="task-{task}"')
    return html[start : html.index("</section>", start)]


def test_the_shipped_example_previews_out_of_the_box(example):
    result = campaigns("preview", "--now", NOW, cwd=example)
    assert result.code == 0, result.err
    page = (example / ".campaigns" / "preview" / "index.html").read_text(encoding="utf-8")
    assert result.out.splitlines()[0] == (
        "Preview of 4 tasks: flash-sale-push, flash-sale-sms, monthly-rewards-mp, weekly-points-inbox"
    )
    assert ".campaigns/preview/index.html" in result.err
    # one self-contained file: nothing to fetch, no script
    found = tags(page)
    assert not [t for t, a in found if t in ("script", "link", "img", "iframe", "object", "embed")]
    assert not [a for _, a in found if any(k in a for k in ("src", "srcset")) or str(a.get("href", "#")).startswith(("http", "//"))]
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # every channel, rendered with the template examples (no user directory yet)
    assert "Maria, 50% off ends tonight" in section(page, "flash-sale-push")
    assert "tap → https://shop.example.com/flash-sale?variant=a" in section(page, "flash-sale-push")
    sms = section(page, "flash-sale-sms")
    assert "Hi Maria! The December flash sale ends Sunday." in sms
    assert 'data-segments="1" data-encoding="gsm-7"' in sms
    assert "eWallet inbox" in section(page, "weekly-points-inbox")
    assert "rewards · inbox" in section(page, "monthly-rewards-mp")
    assert 'data-date="2026-12-07" data-state="skipped"' in section(page, "flash-sale-push")


def test_markup_in_creatives_and_user_attributes_is_text(hostile_repo):
    result = campaigns("preview", "flash-sale-push", "--now", NOW, cwd=hostile_repo)
    assert result.code == 0, result.err
    page = (hostile_repo / ".campaigns" / "preview" / "index.html").read_text(encoding="utf-8")
    found = tags(page)
    assert not [t for t, _ in found if t in ("script", "img")]
    assert not [a for _, a in found if any(k.startswith("on") for k in a)]
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page  # the creative's text, shown as text
    assert "&#34;&gt;&lt;img src=x onerror=&#34;window.__pwned = 2&#34;&gt;" in page
    push = section(page, "flash-sale-push")
    assert "directory attributes" in push  # u-tester-1's name came from the directory


def test_failures_are_shown_in_place(hostile_repo):
    result = campaigns("preview", "flash-sale-push", "weekly-points-inbox", "--now", NOW, cwd=hostile_repo)
    assert result.code == 0, result.err
    page = (hostile_repo / ".campaigns" / "preview" / "index.html").read_text(encoding="utf-8")
    push = section(page, "flash-sale-push")
    # u-tester-2 has no first name: flash-a's title cannot be rendered for them
    [missing] = re.findall(r'data-tester="u-tester-2" data-ok="no">.*?data-reason="([a-z-]+)"', push, re.S)
    assert missing == "missing-variable" and "the user has no &#39;first_name&#39; attribute" in push
    weekly = section(page, "weekly-points-inbox")
    assert weekly.count('data-reason="too-long"') == 1  # u-tester-1, whose city is 70 characters
    assert '<div class="limit over" data-field="title">' in weekly and "83 / 60" in weekly
    assert weekly.count('data-reason="missing-variable"') == 1  # u-tester-2 again: the content needs a first name
    assert "weekly-points for u-tester-1: too-long" in result.out  # the text version names them too


def test_tester_option_and_unknown_task(example):
    record = campaigns("users", "import", "audiences/users.csv", cwd=example)
    assert record.code == 0, record.err
    result = campaigns("preview", "flash-sale-sms", "--tester", "u0001", "--now", NOW, cwd=example)
    assert result.code == 0, result.err
    page = (example / ".campaigns" / "preview" / "index.html").read_text(encoding="utf-8")
    assert "Hi Juan!" in page and "u-tester-1" not in section(page, "flash-sale-sms")
    unknown = campaigns("preview", "flash-sale-pus", cwd=example)
    assert unknown.code != 0 and unknown.err.strip() == (
        "Error: no task 'flash-sale-pus' in the repository; did you mean 'flash-sale-push'?"
    )
    typo = campaigns("preview", "flash-sale-sms", "--tester", "u9999x", cwd=example)
    assert typo.code != 0 and "not found" in typo.err and "Traceback" not in typo.err


def test_a_changed_creative_is_shown_stored_and_new_side_by_side(example, tmp_path, state_url):
    state = state_url  # SQLite and PostgreSQL
    assert campaigns("users", "import", "audiences/users.csv", "--state", state, cwd=example).code == 0
    record_pass(example, state)
    applied = campaigns("apply", "--approved-by", "alice", "--reason", "go", "--state", state, cwd=example)
    assert applied.code == 0, applied.err

    def retitle(data):
        data["title"] = "{{ user.first_name }}, last hours of 50% off"

    edit(example, "creatives/flash-a.yaml", retitle)
    out = tmp_path / "out"
    result = campaigns("preview", "flash-sale-push", "--out", str(out), "--state", state, "--now", NOW, cwd=example)
    assert result.code == 0, result.err
    page = section((out / "index.html").read_text(encoding="utf-8"), "flash-sale-push")
    flash_a = page[page.index('data-creative="flash-a"') : page.index('data-creative="flash-b"')]
    stored, new = flash_a.split('data-version="new"')
    assert "Tess, 50% off ends tonight" in stored and "Tess, last hours of 50% off" in new
    assert "Tess, 50% off ends tonight" not in new
    assert "<td>title</td>" in flash_a  # the field difference, old and new
    assert "(new) →" not in page and "running" in page  # the task is applied; its change is an update
    assert re.search(r'audience size</small>\s*<b>[\d,]+', page)  # sizes from the user directory
    flash_b = page[page.index('data-creative="flash-b"') :]
    assert 'data-version="stored"' not in flash_b.split("<h3>Schedule")[0]  # unchanged creative: one version


def test_the_page_is_built_from_the_plan_value(example):
    """Plan fields the forecast work adds (sizes before/after, sms, forecast) are shown when present."""
    from engine.preview.model import build_page
    from engine.state import StateStore
    from engine.validation.pipeline import load_repository

    repository = load_repository(example)
    plan = {
        "created_at": "2026-11-20T00:00:00Z",
        "changes": [
            {
                "address": "task.flash-sale-sms", "action": "update", "status": {"from": "running", "to": "running"},
                "audience_size": {"before": 1200, "after": 420},
                "warnings": [{"code": "audience-shrinks", "message": "loses 780 of 1,200 members"}],
                "sms": [{"creative": "flash-sms", "encoding": "gsm-7", "segments": 1, "units": 82, "forcing": [],
                         "cost": {"per_message": 0.0123, "total": 5.166, "currency": "USD"}}],
                "sms_cost": {"before": 14.76, "after": 5.166, "currency": "USD"},
                "diffs": [{"path": "schedule.finish_date", "kind": "changed", "old": "2026-12-27", "new": "2026-12-28"}],
                "blockers": [],
            }
        ],
        "forecast": [
            {"site": "ph", "date": "2026-12-26", "messages": 900, "users": 420, "capped": 12},
            {"site": "ph", "date": "2026-12-27", "messages": 100, "users": 100, "capped": 0},
        ],
    }
    with StateStore.open(f"sqlite:///{example / 'missing.db'}", example, create=False, missing_ok=True) as store:
        page = build_page(repository, store, plan, ["flash-sale-sms"])
    html = to_html(page)
    sms = section(html, "flash-sale-sms")
    assert "1,200 → 420" in sms and "audience-shrinks" in sms
    assert "0.0123 USD a message, 5.166 USD in all" in sms
    assert "14.76 → 5.166 USD" in sms
    assert '<td class="old">&#34;2026-12-27&#34;</td><td class="new">&#34;2026-12-28&#34;</td>' in sms
    assert '<tr class="capped"><td>ph</td><td>2026-12-26</td><td>900</td><td>420</td><td>12</td>' in html
