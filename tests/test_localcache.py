"""``engine.localcache``: where caches live, how they are authenticated, what is never read."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import example_repo

from engine import localcache


@pytest.fixture
def own_key(tmp_path, monkeypatch) -> Path:
    """A key file of this test's own (not created yet)."""
    path = tmp_path / "data" / "campaigns" / "cache.key"
    monkeypatch.setenv("CAMPAIGNS_CACHE_KEY", str(path))
    return path


def test_the_key_is_created_on_first_use_private_and_outside_the_cache_folder(tmp_path, own_key):
    assert not own_key.exists()
    assert localcache.dump(tmp_path, "x.marshal", "k", {"a": 1})
    mode = stat.S_IMODE(own_key.stat().st_mode)
    assert mode == 0o600 and own_key.stat().st_size == 32
    assert not own_key.resolve().is_relative_to(localcache.cache_home().resolve())
    assert localcache.load(tmp_path, "x.marshal", "k") == {"a": 1}


def test_the_default_places_are_the_users_cache_and_data_folders(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.delenv("CAMPAIGNS_CACHE_DIR")
    monkeypatch.delenv("CAMPAIGNS_CACHE_KEY")
    assert localcache.cache_home() == Path(platformdirs.user_cache_dir("campaigns"))
    assert localcache.key_file().parent == Path(platformdirs.user_data_dir("campaigns"))
    assert localcache.folder(tmp_path).parent.parent == localcache.cache_home()


def test_a_key_others_can_read_turns_caches_off_with_a_warning(tmp_path, own_key, capsys):
    own_key.parent.mkdir(parents=True)
    own_key.write_bytes(os.urandom(32))
    own_key.chmod(0o644)
    assert not localcache.dump(tmp_path, "x.marshal", "k", 1)
    assert localcache.load(tmp_path, "x.marshal", "k") is None
    assert "caches are off" in capsys.readouterr().err


def test_a_changed_byte_makes_the_file_a_miss(tmp_path):
    assert localcache.dump(tmp_path, "x.marshal", "k", ["value"] * 10)
    path = localcache.folder(tmp_path) / "x.marshal"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 1
    path.write_bytes(bytes(raw))
    assert localcache.load(tmp_path, "x.marshal", "k") is None


def test_a_file_moved_to_another_repository_or_name_is_a_miss(tmp_path):
    one, other = tmp_path / "one", tmp_path / "other"
    one.mkdir()
    other.mkdir()
    assert localcache.dump(one, "a.marshal", "k", "for one")
    localcache.folder(other).mkdir(parents=True)
    (localcache.folder(other) / "a.marshal").write_bytes((localcache.folder(one) / "a.marshal").read_bytes())
    (localcache.folder(one) / "b.marshal").write_bytes((localcache.folder(one) / "a.marshal").read_bytes())
    assert localcache.load(other, "a.marshal", "k") is None
    assert localcache.load(one, "b.marshal", "k") is None
    assert localcache.load(one, "a.marshal", "k") == "for one"


def test_a_value_stored_under_another_key_is_a_miss(tmp_path):
    assert localcache.dump(tmp_path, "x.marshal", "old engine", 1)
    assert localcache.load(tmp_path, "x.marshal", "new engine") is None


def test_each_repository_has_its_own_folder(tmp_path):
    assert localcache.folder(tmp_path / "a") != localcache.folder(tmp_path / "b")
    assert localcache.folder(tmp_path / "a") == localcache.folder(tmp_path / "x" / ".." / "a")


def test_the_tests_never_touch_the_real_user_cache():
    home = Path.home().resolve()
    for place in (localcache.cache_home(), localcache.key_file()):
        assert not place.resolve().is_relative_to(home / ".cache")
        assert not place.resolve().is_relative_to(home / ".local")


@pytest.fixture
def git_spy(tmp_path, monkeypatch) -> Path:
    """A ``git`` on PATH that records each call, then runs the real one."""
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True, check=True).stdout.strip()
    folder = tmp_path / "spy"
    folder.mkdir()
    calls = tmp_path / "git-calls"
    spy = folder / "git"
    spy.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {real} "$@"\n')
    spy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_git_is_asked_only_when_the_repository_holds_cache_files(tmp_path, git_spy):
    repo = example_repo(tmp_path / "repo")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    git_spy.unlink(missing_ok=True)
    assert campaigns("validate", "--repo", str(repo)).code == 0
    assert not git_spy.exists()
    (repo / ".campaigns" / "cache").mkdir(parents=True)
    (repo / ".campaigns" / "cache" / "leftover.marshal").write_bytes(b"old")
    run = campaigns("validate", "--repo", str(repo))
    assert run.code == 0 and "ls-files" in git_spy.read_text()
    assert "ignoring" not in run.err  # not committed: nothing to warn about, and never read anyway


def test_a_committed_cache_file_is_named_once_per_command(tmp_path):
    repo = example_repo(tmp_path / "repo")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".campaigns" / "cache").mkdir(parents=True)
    (repo / ".campaigns" / "cache" / "plan.marshal").write_bytes(b"forged")
    subprocess.run(["git", "add", "-f", ".campaigns/cache/plan.marshal"], cwd=repo, check=True)
    for command in ("validate", "plan"):
        run = campaigns(command, "--repo", str(repo), "--state", f"sqlite:///{tmp_path}/state.db")
        assert run.err.count("ignoring .campaigns/cache/plan.marshal: it is committed to git") == 1, run.err
