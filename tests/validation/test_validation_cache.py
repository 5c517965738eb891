"""The validation cache is never stale: a cached result is served only when every input it depended
on is unchanged -- the YAML files, every CSV they read, the user directory's attributes, the
engine's version and code -- and ``--no-cache`` refreshes what the next cached run serves.

Everything goes through the real ``campaigns validate`` command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import PROJECT, example_repo, write

from engine import localcache


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def validate(repo: Path, *options: str):
    return campaigns("validate", "--repo", str(repo), *options)


def break_header(repo: Path) -> str:
    """Rename the CSV's user_id column (the issue's reproduction); returns the original text."""
    csv = repo / "audiences/vip-ph.csv"
    original = csv.read_text()
    header, rest = original.split("\n", 1)
    assert "user_id" in header
    csv.write_text(header.replace("user_id", "id") + "\n" + rest)
    return original


# -- audience CSVs ---------------------------------------------------------------------------------


def test_a_broken_then_restored_csv_header_is_not_served_from_the_cache(repo):
    assert validate(repo).code == 0
    original = break_header(repo)
    broken = validate(repo)
    assert broken.code == 1 and "no user_id column" in broken.out
    (repo / "audiences/vip-ph.csv").write_text(original)
    restored = validate(repo)
    assert restored.code == 0, restored.out
    assert "user_id" not in restored.out


def test_a_csv_broken_while_the_result_was_cached_is_reported(repo):
    assert validate(repo).code == 0
    assert validate(repo).code == 0  # served from the cache
    break_header(repo)
    run = validate(repo)
    assert run.code == 1 and "no user_id column" in run.out


def test_a_missing_csv_that_reappears_is_checked_again(repo):
    csv = repo / "audiences/vip-ph.csv"
    content = csv.read_bytes()
    csv.unlink()
    missing = validate(repo)
    assert missing.code == 1 and "does not exist" in missing.out
    csv.write_bytes(content)
    assert validate(repo).code == 0


def test_a_csv_turned_into_a_link_outside_the_repository_is_noticed(repo, tmp_path):
    assert validate(repo).code == 0
    outside = tmp_path / "outside.csv"
    shutil.copy2(repo / "audiences/vip-ph.csv", outside)
    csv = repo / "audiences/vip-ph.csv"
    csv.unlink()
    csv.symlink_to(outside)  # the same bytes, but no longer in the repository
    run = validate(repo)
    assert run.code == 1 and "path-outside-repo" in run.out


# -- YAML files and where they are ---------------------------------------------------------------


def test_a_yaml_file_edited_and_restored_is_checked_each_time(repo):
    audience = repo / "audiences/vip-ph.yaml"
    original = audience.read_text()
    assert validate(repo).code == 0
    audience.write_text(original.replace("csv: vip-ph.csv", "csv: nobody.csv"))
    run = validate(repo)
    assert run.code == 1 and "nobody.csv" in run.out
    audience.write_text(original)
    assert validate(repo).code == 0


def test_a_new_link_outside_the_repository_is_not_hidden_by_the_cache(repo, tmp_path):
    assert validate(repo).code == 0
    outside = tmp_path / "elsewhere.yaml"
    shutil.copy2(repo / "creatives/flash-a.yaml", outside)
    link = repo / "creatives/sneaky.yaml"
    link.symlink_to(outside)
    run = validate(repo)
    assert run.code == 1 and "creatives/sneaky.yaml" in run.out and "path-outside-repo" in run.out
    link.unlink()
    assert validate(repo).code == 0


# -- the user directory --------------------------------------------------------------------------


def test_a_directory_imported_after_a_cached_run_checks_the_attributes(repo, state_url, tmp_path):
    """No directory, then one that has no attribute at all: every attribute rule is now unknown."""
    assert validate(repo, "--state", state_url).code == 0
    ids_only = tmp_path / "ids.csv"
    ids_only.write_text("user_id\nu1\nu2\n")
    imported = campaigns("users", "import", str(ids_only), "--repo", str(repo), "--state", state_url)
    assert imported.code == 0, imported.err
    run = validate(repo, "--state", state_url)
    assert run.code == 1 and "unknown-attribute" in run.out and "'segment'" in run.out


def test_an_attribute_dropped_from_the_directory_is_reported(repo, state_url, tmp_path):
    users = str(repo / "audiences/users.csv")
    assert campaigns("users", "import", users, "--repo", str(repo), "--state", state_url).code == 0
    assert validate(repo, "--state", state_url).code == 0
    without_city = tmp_path / "no-city.csv"
    without_city.write_text("user_id,segment,points\nu1,new,10\n")
    replaced = campaigns("users", "import", str(without_city), "--replace", "--allow-shrink", "--repo", str(repo), "--state", state_url)
    assert replaced.code == 0, replaced.err
    run = validate(repo, "--state", state_url)
    assert run.code == 1 and "no attribute 'city'" in run.out


# -- --no-cache ----------------------------------------------------------------------------------


def test_after_a_no_cache_run_the_cached_run_agrees_with_it(repo):
    """The issue's sequence: an error is cached, the file is fixed, --no-cache says it is fine,
    and the next cached run must not bring the old error back."""
    original = break_header(repo)
    assert validate(repo).code == 1
    (repo / "audiences/vip-ph.csv").write_text(original)
    assert validate(repo, "--no-cache").code == 0
    run = validate(repo)
    assert run.code == 0, run.out


def test_no_cache_refreshes_the_stored_result(repo):
    """A wrong result in the cache (as an older engine could leave) is replaced by a --no-cache
    run, so the next cached run is right."""
    from engine.validation import cache

    assert validate(repo).code == 0
    stored = localcache.load(repo, cache.RESULT_FILE, localcache.code_key())
    key, inputs, attachments, _ = stored
    wrong = [("creatives/flash-a.yaml", 1, 1, "schema", "a stale error", "error")]
    assert localcache.dump(repo, cache.RESULT_FILE, localcache.code_key(), (key, inputs, attachments, wrong))
    assert "a stale error" in validate(repo).out  # the cache is trusted when nothing changed ...
    assert validate(repo, "--no-cache").code == 0  # ... --no-cache reads none of it ...
    again = validate(repo)  # ... and what it stored is what the next run serves
    assert again.code == 0 and "a stale error" not in again.out


def test_no_cache_refreshes_the_per_file_results(repo):
    from engine.validation import cache

    assert validate(repo).code == 0
    entries = localcache.load(repo, cache.CACHE_FILE, localcache.code_key())
    kind, result, inputs = entries["creatives/flash-a.yaml"]
    digest, data, _, facts = result
    entries["creatives/flash-a.yaml"] = (kind, (digest, data, [(1, 1, "schema", "error", "a stale error")], facts), inputs)
    localcache.dump(repo, cache.CACHE_FILE, localcache.code_key(), entries)
    localcache.forget(repo, cache.RESULT_FILE)
    assert "a stale error" in validate(repo).out
    assert validate(repo, "--no-cache").code == 0
    localcache.forget(repo, cache.RESULT_FILE)  # make the next run use the per-file results
    assert validate(repo).code == 0


# -- the engine ----------------------------------------------------------------------------------

PATCHED_RUN = """\
import sys
import engine
engine.__version__ = sys.argv[1]
if sys.argv[2] == "patched":  # a rule whose answer changed without any file on disk changing
    import engine.validation.filecheck as filecheck
    filecheck.check_url = lambda url: "the patched engine refuses every URL"
from engine.cli import main
main(sys.argv[3:])
"""


def _engine(*args: str, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """A ``python`` process in ``cwd`` (not the project, whose engine ``-m`` would pick)."""
    env = {**os.environ}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_a_result_stored_by_another_engine_version_is_not_served(repo):
    def run(version: str, mode: str) -> str:
        return _engine("-c", PATCHED_RUN, version, mode, "validate", "--repo", str(repo), cwd=repo).stdout

    assert "patched engine refuses" in run("1.0.0", "patched")
    assert "patched engine refuses" in run("1.0.0", "plain")  # same version and code: served as stored
    assert "patched engine refuses" not in run("1.0.1", "plain")  # another version: checked again


def test_a_change_to_any_engine_code_is_not_served_an_old_result(repo, state_url, tmp_path):
    """The unknown-attribute message comes from the user-directory code (engine/delivery)."""
    copy = tmp_path / "engine-copy"
    shutil.copytree(PROJECT / "engine", copy / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    write(repo, "audiences/typo-ph.yaml", "name: Typo\nsite: ph\nsource:\n  where:\n    all:\n      - {attr: segmnt, eq: new}\n")
    assert campaigns("users", "import", str(repo / "audiences/users.csv"), "--repo", str(repo), "--state", state_url).code == 0

    def run() -> str:
        done = _engine("-m", "engine", "validate", "--repo", str(repo), "--state", state_url, cwd=tmp_path, pythonpath=copy)
        assert "Traceback" not in done.stderr, done.stderr
        assert str(copy) in _engine("-c", "import engine; print(engine.__file__)", cwd=tmp_path, pythonpath=copy).stdout
        return done.stdout

    assert "the user directory has no attribute 'segmnt'" in run()
    audiences = copy / "engine/delivery/audience_rules.py"
    text = audiences.read_text()
    assert "the user directory has no attribute" in text
    audiences.write_text(text.replace("the user directory has no attribute", "no such attribute in the directory:"))
    assert "no such attribute in the directory: 'segmnt'" in run()


def test_the_cache_lives_outside_the_repository(repo):
    assert validate(repo).code == 0
    assert not (repo / ".campaigns").exists()
    folder = localcache.folder(repo)
    assert folder.is_dir() and not folder.resolve().is_relative_to(repo.resolve())
    assert folder.resolve().is_relative_to(Path(os.environ["CAMPAIGNS_CACHE_DIR"]).resolve())


def test_a_per_file_check_that_reads_another_file_is_checked_again_when_it_changes(repo, monkeypatch):
    """The contract for per-file checks that read more than their own bytes: they name what they
    read in ``facts["reads"]`` (path -> fingerprint) and their cached result follows it."""
    from engine.validation import cache, filecheck

    notes = repo / "creatives/notes.txt"
    notes.write_text("first")
    plain = filecheck.check_file

    def reading(raw: bytes, kind: str):
        digest, data, problems, facts = plain(raw, kind)
        if kind == "creative" and b"Flash sale A" in raw:
            facts = {**facts, cache.READS: {"creatives/notes.txt": cache.fingerprint(str(repo), "creatives/notes.txt")}}
            problems = [*problems, (1, 1, "schema", "error", f"notes say {notes.read_text()}")]
        return digest, data, problems, facts

    monkeypatch.setattr(filecheck, "check_file", reading)
    assert "notes say first" in validate(repo).out
    notes.write_text("second")
    localcache.forget(repo, cache.RESULT_FILE)  # the per-file results alone must notice
    assert "notes say second" in validate(repo).out
