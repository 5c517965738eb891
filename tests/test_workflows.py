"""The GitHub workflows, CODEOWNERS and pre-commit hook that make "merge = approval" hold."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from repos import PROJECT

WORKFLOWS = PROJECT / ".github" / "workflows"


def _actionlint() -> str | None:
    return shutil.which("actionlint") or next(
        (str(p) for p in [Path(sys.executable).with_name("actionlint")] if p.exists()), None
    )


def test_workflows_pass_actionlint():
    executable = _actionlint()
    if executable is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("actionlint is not installed (pip install -e '.[test]')")
        pytest.skip("actionlint is not installed")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    result = subprocess.run([executable, "-no-color", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    executable = _actionlint()
    if executable is None:
        pytest.skip("actionlint is not installed")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.event.pull_request.title }}\n")
    assert subprocess.run([executable, "-no-color", str(bad)], capture_output=True).returncode != 0


def _load(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1)
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True, document.get("on"))
    return document


def test_plan_runs_on_pull_requests_and_updates_one_comment():
    plan = _load("plan.yml")
    assert "pull_request" in plan["on"]
    text = (WORKFLOWS / "plan.yml").read_text()
    assert "campaigns validate --format github" in text
    assert "campaigns plan --format markdown" in text
    assert "<!-- campaigns-plan -->" in text and "updateComment" in text
    assert "GITHUB_STEP_SUMMARY" in text
    assert "secrets.CAMPAIGNS_STATE_URL" in text
    assert plan["jobs"]["pilot-test"]["if"].startswith("vars.CAMPAIGNS_PILOT_TEST == 'true'")


def test_apply_runs_only_for_merges_into_main_one_at_a_time():
    apply = _load("apply.yml")
    assert apply["on"]["pull_request"]["types"] == ["closed"]
    assert apply["on"]["pull_request"]["branches"] == ["main"]
    assert apply["jobs"]["apply"]["if"] == "github.event.pull_request.merged == true"
    assert apply["concurrency"] == {"group": "campaigns-apply", "cancel-in-progress": False}
    text = (WORKFLOWS / "apply.yml").read_text()
    assert 'campaigns apply --event "$GITHUB_EVENT_PATH"' in text
    assert "if: failure()" in text and "createComment" in text


def test_codeowners_split_platform_and_marketing():
    owners = dict(
        line.split()[:2] for line in (PROJECT / ".github" / "CODEOWNERS").read_text().splitlines() if line.strip() and not line.startswith("#")
    )
    assert owners["/templates/"] == owners["/platform.yaml"] == "@your-org/platform-team"
    assert owners["/campaigns/"] == owners["/creatives/"] == owners["/audiences/"] == "@your-org/marketing-leads"


def test_pre_commit_hook_runs_validate():
    [hook] = yaml.safe_load((PROJECT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "campaigns-validate" and hook["entry"] == "campaigns validate"
    assert hook["pass_filenames"] is False


def test_the_required_check_runs_after_the_optional_pilot_test_and_fails_on_blockers():
    plan = _load("plan.yml")
    check = plan["jobs"]["apply-would-succeed"]
    assert check["needs"] == ["plan", "pilot-test"]
    assert "needs.pilot-test.result == 'skipped'" in check["if"] and check["if"].startswith("always()")
    script = "\n".join(step.get("run", "") for step in check["steps"])
    assert "campaigns plan --fail-on-blockers" in script and 'exit "$code"' in script
    readme = (PROJECT / "README.md").read_text()
    assert "`apply-would-succeed`" in readme and "--fail-on-blockers" in readme


def test_drift_plans_main_on_a_schedule_and_keeps_one_issue():
    drift = _load("drift.yml")
    assert drift["on"]["schedule"] and "workflow_dispatch" in drift["on"]
    assert drift["jobs"]["drift"]["permissions"] == {"contents": "read", "issues": "write"}
    [checkout] = [step for step in drift["jobs"]["drift"]["steps"] if step.get("uses", "").startswith("actions/checkout")]
    assert checkout["with"]["ref"] == "main"
    text = (WORKFLOWS / "drift.yml").read_text()
    assert "campaigns plan --format json" in text and "plan.drift" in text and "plan.summary.changes" in text
    assert "<!-- campaigns-drift -->" in text
    assert "issues.update" in text and "issues.create" in text and "state: 'closed'" in text


def test_a_re_run_of_the_apply_is_refused_once_main_moved_on():
    apply = _load("apply.yml")
    [guard] = [step for step in apply["jobs"]["apply"]["steps"] if step.get("if") == "github.run_attempt != '1'"]
    assert "git fetch" in guard["run"] and "MERGE_SHA" in guard["run"]
def _zizmor() -> str | None:
    return shutil.which("zizmor") or next(
        (str(p) for p in [Path(sys.executable).with_name("zizmor")] if p.exists()), None
    )


def _require(executable: str | None, name: str) -> str:
    if executable is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{name} is not installed (pip install -e '.[test]')")
        pytest.skip(f"{name} is not installed")
    return executable


def _zizmor_findings(executable: str, *paths: Path) -> list[dict]:
    # exit codes 10-14 mean "findings"; anything else non-zero is zizmor failing to run
    result = subprocess.run(
        [executable, "--offline", "--no-progress", "--persona=regular", "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 or 10 <= result.returncode <= 14, result.stderr
    return json.loads(result.stdout or "[]")


def test_workflows_pass_zizmor_with_no_medium_or_high_finding():
    executable = _require(_zizmor(), "zizmor")
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert files
    serious = [
        f"{f['locations'][0]['symbolic']['key']['Local']['verbatim_path']}: {f['ident']} ({f['determinations']['severity']}): {f['desc']}"
        for f in _zizmor_findings(executable, *files)
        if f["determinations"]["severity"] in ("Medium", "High") and not f.get("ignored")
    ]
    assert serious == []


def test_zizmor_catches_an_unpinned_action_with_a_write_token(tmp_path):
    executable = _require(_zizmor(), "zizmor")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\npermissions:\n  contents: write\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - uses: actions/checkout@v4\n"
    )
    idents = {f["ident"] for f in _zizmor_findings(executable, bad)}
    assert {"unpinned-uses", "artipacked"} <= idents


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_with_its_version_and_every_job_scopes_its_token(path):
    document = yaml.safe_load(path.read_text())
    assert document.get("permissions") in ({}, None, "read-all") or set(document["permissions"].values()) <= {"read", "none"}
    for name, job in document["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} has no permissions block"
    for line in path.read_text().splitlines():
        match = re.match(r"\s*(?:- )?uses:\s*([^\s#]+)\s*(#.*)?$", line)
        if match is None or match.group(1).startswith("./"):
            continue
        reference = match.group(1).rsplit("@", 1)[1]
        assert re.fullmatch(r"[0-9a-f]{40}", reference), f"{path.name}: {line.strip()} is not pinned to a commit"
        assert match.group(2) and re.search(r"v\d", match.group(2)), f"{path.name}: {line.strip()} has no version comment"
    for step in (s for job in document["jobs"].values() for s in job.get("steps", [])):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}: a checkout keeps its credentials"


def test_plan_builds_the_preview_uploads_it_and_links_it_from_the_comment():
    plan = _load("plan.yml")
    steps = plan["jobs"]["plan"]["steps"]
    [build] = [step for step in steps if "campaigns preview" in step.get("run", "")]
    assert "--out preview" in build["run"] and "GITHUB_STEP_SUMMARY" in build["run"]
    [upload] = [step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["uses"] == "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02"  # pinned by commit
    assert upload["with"]["path"] == "preview/index.html" and upload["with"]["if-no-files-found"] == "error"
    names = [step.get("name") for step in steps]
    [comment] = [step for step in steps if "updateComment" in step.get("with", {}).get("script", "")]
    assert names.index(upload["name"]) < names.index(comment["name"])
    assert comment["env"]["PREVIEW_URL"] == "${{ steps.%s.outputs.artifact-url }}" % upload["id"]
    script = comment["with"]["script"]
    assert "preview.md" in script and "#artifacts" in script  # which tasks it shows, and where
    text = (WORKFLOWS / "plan.yml").read_text()
    assert "upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02 # v4.6.2" in text
