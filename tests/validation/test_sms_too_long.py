"""``sms-too-long``: through the real ``campaigns validate``, in every output format.

The example's SMS task (campaigns/december-flash-sale/flash-sale-sms.yaml) sends creative
``flash-sms`` on site ``ph``, whose platform.yaml sets ``sms.max_segments: 3``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import EXAMPLE_LIVE_NOW, example_repo, write

NOW = EXAMPLE_LIVE_NOW
CREATIVE = "creatives/flash-sms.yaml"
LONG_TEMPLATE = (
    "name: Long SMS\nchannel: sms\nstatus: approved\n"
    "fields:\n  content: {required: true, max_length: 1600}\n"
    "variables:\n  first_name: {example: Maria}\n"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = example_repo(tmp_path / "repo")
    write(root, "templates/sms-promo.yaml", LONG_TEMPLATE)  # field-too-long stays out of the way
    return root


def set_content(root: Path, content: str) -> None:
    write(root, CREATIVE, f"name: Flash sale SMS reminder\ntemplate: sms-promo\ncontent: {json.dumps(content, ensure_ascii=False)}\n")


def set_site_sms(root: Path, sms: str | None) -> None:
    text = (root / "platform.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("sms:")]
    at = next(i for i, line in enumerate(lines) if "rate_per_second" in line) + 1
    if sms is not None:
        lines.insert(at, f"    sms: {sms}")
    write(root, "platform.yaml", "\n".join(lines) + "\n")


def validate(root: Path, output_format: str = "json", *extra: str):
    return campaigns("validate", "--now", NOW, "--repo", str(root), "--format", output_format, *extra)


def sms_problems(root: Path, *extra: str) -> list[dict]:
    run = validate(root, "json", *extra)
    assert run.code == 0, run.out + run.err
    return [problem for problem in json.loads(run.out)["problems"] if problem["code"] == "sms-too-long"]


def test_the_shipped_example_has_an_sms_limit_and_no_warning(tmp_path):
    root = example_repo(tmp_path / "repo")
    assert "max_segments: 3" in (root / "platform.yaml").read_text()
    assert sms_problems(root) == []


def test_four_gsm_segments_warn_in_json_located_at_the_content(repo):
    set_content(repo, "Hi {{ user.first_name }}! " + "x" * 455)  # "Hi Maria! " + 455 = 465 septets
    problems = sms_problems(repo)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem["file"], problem["line"], problem["severity"]) == (CREATIVE, 3, "warning")
    assert "needs 4 SMS segments" in problem["message"]
    assert "465 characters in GSM-7, 153 a segment" in problem["message"]
    assert "site 'ph' allows at most 3 (sms.max_segments)" in problem["message"]
    assert json.loads(validate(repo).out)["ok"] is True


def test_text_and_github_formats_show_the_warning_and_exit_zero(repo):
    set_content(repo, "y" * 470)
    text = validate(repo, "text")
    assert text.code == 0
    assert f"{CREATIVE}:3:10: sms-too-long: warning: content needs 4 SMS segments" in text.out
    github = validate(repo, "github")
    assert github.code == 0
    line = next(line for line in github.out.splitlines() if "sms-too-long" in line)
    assert line.startswith(f"::warning file={CREATIVE},line=3,col=10,title=sms-too-long::content needs 4 SMS segments")


def test_exactly_max_segments_is_fine_one_more_septet_is_not(repo):
    set_content(repo, "z" * 459)  # 3 x 153
    assert sms_problems(repo) == []
    set_content(repo, "z" * 458 + "€")  # the euro sign counts two septets: 460, a fourth part
    assert [p["message"].split(" (")[0] for p in sms_problems(repo)] == [
        "content needs 4 SMS segments with the template's example values"
    ]


def test_ucs2_names_the_characters_that_forced_it(repo):
    set_content(repo, "Ça, ça coûte 5€ 😀 " + "a" * 190)  # Ç and € are GSM-7; ç, û and 😀 are not: 210 units
    (problem,) = sms_problems(repo)
    assert "in UCS-2, 67 a segment" in problem["message"]
    assert "'ç', 'û', '😀' need UCS-2, without them 160 fit one segment" in problem["message"]


def test_a_combining_accent_forces_ucs2_where_the_precomposed_letter_does_not(repo):
    set_content(repo, "Caf\u00e9 " + "a" * 200)  # é is GSM-7: 205 septets, 2 segments
    assert sms_problems(repo) == []
    set_content(repo, "Cafe\u0301 " + "a" * 200)  # e + COMBINING ACUTE: UCS-2, 207 units, 4 segments
    (problem,) = sms_problems(repo)
    assert "U+0301 COMBINING ACUTE ACCENT need UCS-2" in problem["message"]


def test_the_templates_example_values_are_rendered(repo):
    set_content(repo, "Hi {{ user.first_name }}! {% if user.first_name %}" + "b" * 440 + "{% endif %}")
    assert sms_problems(repo) == []  # "Hi Maria! " + 440 = 450 septets: 3 segments
    write(repo, "templates/sms-promo.yaml", LONG_TEMPLATE.replace("Maria", "Maria Clara de los Santos y Reyes"))
    (problem,) = sms_problems(repo)
    assert "needs 4 SMS segments" in problem["message"]


def test_no_limit_no_warning(repo):
    set_content(repo, "w" * 1000)
    set_site_sms(repo, None)
    assert sms_problems(repo) == []
    set_site_sms(repo, "{price_per_segment: 0.0123, currency: USD}")
    assert sms_problems(repo) == []


def test_a_changed_limit_is_not_answered_from_the_cache(repo):
    set_content(repo, "v" * 470)
    assert len(sms_problems(repo)) == 1
    set_site_sms(repo, "{max_segments: 4}")
    assert sms_problems(repo) == []
    set_site_sms(repo, "{max_segments: 2}")
    assert "allows at most 2" in sms_problems(repo)[0]["message"]


def test_each_site_is_held_to_its_own_limit(repo):
    platform = (repo / "platform.yaml").read_text().replace(
        "providers:",
        "  sg:\n    name: Singapore wallet\n    timezone: Asia/Singapore\n    channels: [sms]\n"
        "    mini_programs: [shop]\n    sms: {max_segments: 2}\nproviders:",
    )
    write(repo, "platform.yaml", platform)
    write(repo, "audiences/sg-users.yaml", "name: SG users\nsite: sg\nsource: {users: [u-1]}\n")
    task = (repo / "campaigns/december-flash-sale/flash-sale-sms.yaml").read_text()
    write(repo, "campaigns/december-flash-sale/flash-sale-sms-sg.yaml",
          task.replace("site: ph", "site: sg").replace("[new-users-ph, vip-ph]", "[sg-users]"))
    set_content(repo, "u" * 400)  # 3 segments: over sg's 2, within ph's 3
    (problem,) = sms_problems(repo)
    assert "site 'sg' allows at most 2" in problem["message"] and "'ph'" not in problem["message"]
    set_content(repo, "u" * 500)  # 4 segments: over both
    (problem,) = sms_problems(repo)
    assert "sites allow at most 3 ('ph'), 2 ('sg') (sms.max_segments)" in problem["message"]


def test_a_creative_that_cannot_be_rendered_is_left_to_its_own_rule(repo):
    set_content(repo, "{{ user.undeclared }}" + "x" * 600)
    run = validate(repo)
    codes = {problem["code"] for problem in json.loads(run.out)["problems"]}
    assert "variable-unknown" in codes and "sms-too-long" not in codes


@pytest.mark.parametrize(
    ("sms", "fragment"),
    [
        ("{price_per_segment: 0.01}", "currency"),
        ("{currency: USD}", "price_per_segment"),
        ("{price_per_segment: 0.01, currency: usd}", "usd"),
        ("{price_per_segment: -0.01, currency: USD}", "-0.01"),
        ("{price_per_segment: .inf, currency: USD}", "inf"),
        ("{price_per_segment: .nan, currency: USD}", "nan"),
        ("{max_segments: 0}", "0"),
        ("{max_segments: 11}", "11"),
        ("{max_segments: 2.5}", "2.5"),
        ("{max_segment: 3}", "max_segment"),
    ],
)
def test_bad_sms_settings_are_schema_errors_at_their_line(repo, sms, fragment):
    set_site_sms(repo, sms)
    run = validate(repo)
    assert run.code == 1, run.out
    problems = [p for p in json.loads(run.out)["problems"] if p["file"] == "platform.yaml"]
    lines = (repo / "platform.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.lstrip().startswith("sms:"))
    assert any(p["code"] == "schema" and p["line"] == line and fragment in p["message"] for p in problems), problems


def test_a_run_answered_from_the_cache_does_not_load_the_sms_counter(repo):
    """engine.sms (decimal, the gsm0338 codec) is imported only when the rule has SMS to count."""
    code = (
        "import sys\nfrom engine.cli import main\n"
        f"try:\n    main(['validate', '--now', {NOW!r}, '--repo', {str(repo)!r}])\nexcept SystemExit:\n    pass\n"
        "print('gsm0338' in sys.modules, 'engine.sms' in sys.modules, file=sys.stderr)"
    )

    def loaded() -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr.strip()

    set_content(repo, "t" * 470)
    assert loaded().endswith("True True")  # checked: the counter ran
    assert loaded().endswith("False False")  # unchanged: answered from the result cache
