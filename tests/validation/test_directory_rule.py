"""``unknown-attribute``: audience rules are checked against the user directory when one exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import example_repo, write


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = example_repo(tmp_path / "repo")
    write(root, "audiences/typo-ph.yaml", "name: Typo\nsite: ph\nsource:\n  where:\n    all:\n      - {attr: segmnt, eq: new}\n")
    write(root, "campaigns/december-flash-sale/flash-sale-push.yaml",
          (root / "campaigns/december-flash-sale/flash-sale-push.yaml").read_text().replace("high-points-ph]", "high-points-ph, typo-ph]"))
    return root


def test_without_a_directory_attributes_are_not_checked(repo, state_url):
    assert campaigns("validate", "--repo", str(repo), "--state", state_url).code == 0


def test_an_attribute_the_directory_lacks_is_located(repo, state_url):
    imported = campaigns("users", "import", str(repo / "audiences/users.csv"), "--repo", str(repo), "--state", state_url)
    assert imported.code == 0, imported.err
    run = campaigns("validate", "--repo", str(repo), "--state", state_url)
    assert run.code == 1
    assert "audiences/typo-ph.yaml:6:16: unknown-attribute: the user directory has no attribute 'segmnt'" in run.out
    assert "did you mean 'segment'" in run.out


def test_a_new_directory_column_is_noticed_despite_the_cache(repo, state_url, tmp_path):
    campaigns("users", "import", str(repo / "audiences/users.csv"), "--repo", str(repo), "--state", state_url)
    assert campaigns("validate", "--repo", str(repo), "--state", state_url).code == 1
    extra = tmp_path / "more.csv"
    extra.write_text("user_id,segmnt\nu9999,new\n")
    campaigns("users", "import", str(extra), "--repo", str(repo), "--state", state_url)
    assert campaigns("validate", "--repo", str(repo), "--state", state_url).code == 0


def test_an_unreachable_directory_is_a_warning_not_a_failure(repo):
    run = campaigns("validate", "--repo", str(repo), "--state", "postgresql://nobody@127.0.0.1:1/nothing")
    assert run.code == 0
    assert "unknown-attribute: warning: audience attributes were not checked" in run.out
