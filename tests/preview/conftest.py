"""Fixtures of the preview tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from preview_repo import hostile
from repos import example_repo


@pytest.fixture
def hostile_repo(tmp_path) -> Path:
    return hostile(tmp_path / "repo")


@pytest.fixture
def example(tmp_path) -> Path:
    return example_repo(tmp_path / "example")
