"""``campaigns validate``: output formats, exit codes, the cache, and no traceback for any input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from cli_runner import campaigns, campaigns_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repos import EXAMPLE_LIVE_NOW, example_repo, write

from engine import localcache


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def break_two_files(root: Path) -> None:
    write(root, "creatives/flash-a.yaml", "name: Flash\ntemplate: push-promo\ntitle: Hi\ncontent: x\nredirection: http://a.b\n")
    write(root, "templates/spare.yaml", (root / "templates/sms-promo.yaml").read_text())  # unused: a warning


BEFORE_THE_EXAMPLE_ENDS = EXAMPLE_LIVE_NOW


def test_clean_repository_exits_zero(repo):
    run = campaigns("validate", "--now", BEFORE_THE_EXAMPLE_ENDS, "--repo", str(repo))
    assert run.code == 0
    assert "20 files valid" in run.out


def test_text_format_is_file_line_col_code_message(repo):
    break_two_files(repo)
    run = campaigns("validate", "--now", BEFORE_THE_EXAMPLE_ENDS, "--repo", str(repo))
    assert run.code == 1
    lines = run.out.strip().splitlines()
    assert "creatives/flash-a.yaml:5:14: url-invalid: redirection: the http: scheme is not allowed" in run.out
    assert re.match(r"^templates/spare\.yaml:1:1: unused: warning: ", [l for l in lines if "spare" in l][0])
    assert lines[-1] == "1 error, 1 warning in 21 files."


def test_json_format(repo):
    break_two_files(repo)
    run = campaigns("validate", "--repo", str(repo), "--format", "json")
    assert run.code == 1
    document = json.loads(run.out)
    assert document["ok"] is False
    assert {tuple(sorted(p)) for p in document["problems"]} == {("code", "column", "file", "line", "message", "severity")}
    error = next(p for p in document["problems"] if p["severity"] == "error")
    assert (error["file"], error["line"], error["column"], error["code"]) == ("creatives/flash-a.yaml", 5, 14, "url-invalid")


def test_json_ok_with_only_warnings(repo):
    write(repo, "templates/spare.yaml", (repo / "templates/sms-promo.yaml").read_text())
    run = campaigns("validate", "--repo", str(repo), "--format", "json")
    assert run.code == 0 and json.loads(run.out)["ok"] is True


def test_github_format_is_workflow_annotations(repo):
    break_two_files(repo)
    run = campaigns("validate", "--repo", str(repo), "--format", "github")
    assert run.code == 1
    assert "::error file=creatives/flash-a.yaml,line=5,col=14,title=url-invalid::redirection%3A" not in run.out
    assert "::error file=creatives/flash-a.yaml,line=5,col=14,title=url-invalid::redirection: the http: scheme" in run.out
    assert "::warning file=templates/spare.yaml,line=1,col=1,title=unused::" in run.out


def test_github_annotation_escapes_newlines_percent_and_separators():
    from engine.problems import Problem
    from engine.validation.report import as_github

    text = as_github([Problem("creatives/a,b:c.yaml", 2, 3, "schema", "100% wrong\nsecond line")])
    assert text == "::error file=creatives/a%2Cb%3Ac.yaml,line=2,col=3,title=schema::100%25 wrong%0Asecond line\n"


def test_runs_in_the_current_directory_and_with_env_var(repo, tmp_path):
    assert campaigns("validate", cwd=repo).code == 0
    assert campaigns("validate", cwd=tmp_path, env={"CAMPAIGNS_REPO": str(repo)}).code == 0


def test_not_a_repository_is_one_clear_line(tmp_path):
    run = campaigns("validate", "--repo", str(tmp_path))
    assert run.code == 1
    assert run.err.startswith("Error: ") and "platform.yaml" in run.err and "Traceback" not in run.err


def test_second_run_uses_the_cache_and_gives_the_same_answer(repo):
    break_two_files(repo)
    first = campaigns("validate", "--repo", str(repo), "--format", "json")
    assert localcache.folder(repo).is_dir()
    second = campaigns("validate", "--repo", str(repo), "--format", "json")
    assert first.out == second.out and first.code == second.code == 1


def test_a_changed_file_is_never_served_from_the_cache(repo):
    assert campaigns("validate", "--repo", str(repo)).code == 0
    task = repo / "campaigns/december-flash-sale/flash-sale-push.yaml"
    task.write_text(task.read_text().replace('finish: "11:30"', 'finish: "10:30"'))
    run = campaigns("validate", "--repo", str(repo))
    assert run.code == 1 and "window-too-short" in run.out
    task.write_text(task.read_text().replace('finish: "10:30"', 'finish: "11:30"'))
    assert campaigns("validate", "--repo", str(repo)).code == 0


def test_a_changed_csv_is_noticed_by_the_cache(repo):
    assert campaigns("validate", "--repo", str(repo)).code == 0
    (repo / "audiences/vip-ph.csv").write_text("id,name\n1,x\n")
    run = campaigns("validate", "--repo", str(repo))
    assert run.code == 1 and "user_id" in run.out


def test_a_corrupted_cache_is_ignored(repo):
    campaigns("validate", "--repo", str(repo))
    for cached in localcache.folder(repo).iterdir():
        cached.write_bytes(b"\x00garbage")
    assert campaigns("validate", "--repo", str(repo)).code == 0


def test_no_cache_flag_writes_nothing_into_the_repository(repo):
    assert campaigns("validate", "--repo", str(repo), "--no-cache").code == 0
    assert campaigns("validate", "--repo", str(repo)).code == 0
    assert not (repo / ".campaigns").exists()


def test_process_exit_codes_and_help(repo):
    assert campaigns_process("validate", "--repo", str(repo)).code == 0
    run = campaigns_process("validate", "--help")
    assert run.code == 0 and "--format" in run.out and "--repo" in run.out


# -- nothing produces a traceback -------------------------------------------------------------

FOLDERS = ["templates", "audiences", "creatives", "campaigns/december-flash-sale", "campaigns/rewards-2027"]

yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | st.dates(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
known_keys = st.sampled_from(["name", "template", "site", "channel", "schedule", "source", "audiences", "creatives", "status", "fields", "title", "content", "redirection", "recurrence", "windows", "start_date", "description"])
yaml_documents = st.dictionaries(known_keys | st.text(max_size=8), yaml_values, max_size=8)


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory) -> Path:
    return example_repo(tmp_path_factory.mktemp("fuzz") / "base")


def _check_clean(root: Path) -> None:
    run = campaigns("validate", "--repo", str(root), "--format", "json", "--no-cache")
    assert run.code in (0, 1), run.err
    assert "Traceback" not in run.err and "Internal error" not in run.err
    document = json.loads(run.out)
    assert document["ok"] == (run.code == 0)
    for problem in document["problems"]:
        assert problem["line"] >= 1 and problem["column"] >= 1 and problem["code"] and problem["message"]
        assert (root / problem["file"]).exists() or problem["file"].startswith("campaigns")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(folder=st.sampled_from(FOLDERS), name=st.sampled_from(["x.yaml", "y.yml", "campaign.yaml", "Bad Name.yaml"]), raw=st.binary(max_size=300))
def test_random_bytes_in_any_folder_give_a_clean_report(fuzz_base, tmp_path, folder, name, raw):
    root = tmp_path / f"r{abs(hash((folder, name, raw)))}"
    shutil.copytree(fuzz_base, root)
    write(root, f"{folder}/{name}", "")
    (root / folder / name).write_bytes(raw)
    _check_clean(root)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(folder=st.sampled_from(FOLDERS + ["."]), document=yaml_documents)
def test_random_yaml_documents_in_any_folder_give_a_clean_report(fuzz_base, tmp_path, folder, document):
    root = tmp_path / f"r{abs(hash((folder, repr(document))))}"
    shutil.copytree(fuzz_base, root)
    target = "platform.yaml" if folder == "." else f"{folder}/fuzzed.yaml"
    write(root, target, yaml.safe_dump(document, allow_unicode=True))
    _check_clean(root)
