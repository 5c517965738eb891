"""deploy/campaigns-executor.service passes ``systemd-analyze verify`` (in a temporary root tree
holding the unit, its ExecStart binary and the host's system units) and scores at most 4.0 ("OK")
with ``systemd-analyze security --offline=yes``; it starts on a fresh host because systemd
creates every directory it writes to. Under CI=true a missing systemd-analyze fails."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from repos import PROJECT

UNIT = PROJECT / "deploy" / "campaigns-executor.service"
SYSTEM_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)
MAX_EXPOSURE = 4.0


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        message = "systemd-analyze is not installed (apt-get install -y systemd)"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _directives() -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def _root(tmp_path: Path, unit_text: str) -> Path:
    """A root tree in which the unit verifies as if installed: the unit in /etc/systemd/system,
    an executable at its ExecStart path and the host's units (sysinit.target and friends)."""
    root = tmp_path / "root"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    (root / "etc" / "systemd" / "system" / UNIT.name).write_text(unit_text)
    binary = root / _directives()["ExecStart"][0].split()[0].lstrip("/")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    if SYSTEM_UNITS is not None:
        shutil.copytree(SYSTEM_UNITS, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    return root


def _verify(tmp_path: Path, unit_text: str) -> subprocess.CompletedProcess[str]:
    root = _root(tmp_path, unit_text)
    return subprocess.run(
        [_analyze(), "verify", f"--root={root}", "--man=no", f"/etc/systemd/system/{UNIT.name}"],
        capture_output=True, text=True, timeout=120,
    )


def test_the_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    result = _verify(tmp_path, UNIT.read_text())
    assert result.returncode == 0 and result.stderr.strip() == "" and result.stdout.strip() == "", result.stdout + result.stderr


def test_verify_catches_a_misspelt_directive(tmp_path: Path) -> None:
    """The check is not vacuous: systemd warns about a key it does not know (and exits 0 doing
    so, which is why the test above wants silence)."""
    result = _verify(tmp_path, UNIT.read_text().replace("ProtectHome=", "ProtectHomee=", 1))
    assert "Unknown key" in result.stderr and "ProtectHomee" in result.stderr


def test_the_unit_is_hardened_to_ok(tmp_path: Path) -> None:
    result = subprocess.run(
        [_analyze(), "security", "--offline=yes", "--no-pager", f"--threshold={int(MAX_EXPOSURE * 10)}", str(UNIT)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE and match.group(2) == "OK", match.group(0)


def test_it_writes_only_where_systemd_creates_the_directory() -> None:
    """ProtectSystem=strict makes the file system read-only; StateDirectory=/CacheDirectory= are
    created on start (so a fresh host needs nothing made by hand), the repository's .campaigns/
    is optional (``-``), and the caches point into them, not at a home ProtectHome= hides."""
    unit = _directives()
    assert unit["ProtectSystem"] == ["strict"] and unit["ProtectHome"] == ["yes"]
    assert unit["StateDirectory"] == ["campaigns"] and unit["CacheDirectory"] == ["campaigns"]
    assert all(path.startswith("-") for path in unit.get("ReadWritePaths", []))
    env = dict(item.split("=", 1) for item in unit["Environment"])
    assert env["CAMPAIGNS_CACHE_DIR"].startswith("/var/cache/campaigns")
    assert env["CAMPAIGNS_CACHE_KEY"].startswith("/var/lib/campaigns/")
    assert all(path.startswith("-") for path in unit.get("EnvironmentFile", []))


def test_the_unit_parses_as_ini() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    assert parser.get("Service", "ExecStart").split()[1:3] == ["run", "--repo"]
    assert parser.get("Service", "KillSignal") == "SIGTERM"
