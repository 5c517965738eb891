"""The file tree is the repository (issue 10, item 6): nothing reached through a symbolic link that
leaves the repository is read -- a folder (``creatives/``, ``campaigns/``, a campaign folder,
``audiences/``), ``platform.yaml`` or a single file -- and a FIFO, socket, device, dangling link
or link loop is a one-line problem, never ``Internal error`` and never a hang.

Every check goes through the real command (validate, plan, schedule, test, apply all load the
repository the same way); the FIFO cases run as a process under a time limit.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from bounded_run import campaigns_bounded
from cli_runner import campaigns
from repos import EXAMPLE_LIVE_NOW, example_repo

SECRET = "outside-the-repository-secret"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def validate(repo: Path):
    return campaigns("validate", "--repo", str(repo), "--now", EXAMPLE_LIVE_NOW)


def move_out(repo: Path, relative: str, outside: Path, secret: bool = True) -> Path:
    """Move ``relative`` out of the repository and leave a link to it in its place."""
    target = outside / relative.replace("/", "-")
    shutil.move(str(repo / relative), target)
    if secret:
        for yaml_file in [target] if target.is_file() else target.rglob("*.yaml"):
            yaml_file.write_text(yaml_file.read_text() + f"# {SECRET}\n")
    (repo / relative).symlink_to(target, target_is_directory=target.is_dir())
    return target


def one_line_problem(run, where: str, code: str) -> None:
    """The run failed with ``where: code`` on one line, and never printed a traceback."""
    assert run.code == 1, run.out + run.err
    assert any(line.startswith(f"{where}:1:1: {code}:") for line in run.out.splitlines()), run.out
    assert "Traceback" not in run.err and "Internal error" not in run.err + run.out
    assert SECRET not in run.out + run.err


@pytest.mark.parametrize("folder", ["creatives", "audiences", "templates", "campaigns", "campaigns/rewards-2027"])
def test_a_folder_linked_outside_the_repository_is_path_outside_repo(repo, outside, folder):
    move_out(repo, folder, outside)
    one_line_problem(validate(repo), folder, "path-outside-repo")


def test_a_platform_yaml_linked_outside_the_repository_is_path_outside_repo(repo, outside):
    move_out(repo, "platform.yaml", outside)
    one_line_problem(validate(repo), "platform.yaml", "path-outside-repo")


def test_a_task_file_linked_outside_the_repository_is_path_outside_repo(repo, outside):
    move_out(repo, "campaigns/rewards-2027/weekly-points-inbox.yaml", outside)
    one_line_problem(validate(repo), "campaigns/rewards-2027/weekly-points-inbox.yaml", "path-outside-repo")


def test_links_that_stay_inside_the_repository_are_read(repo):
    shutil.move(str(repo / "creatives"), repo / "creatives-real")
    (repo / "creatives").symlink_to("creatives-real", target_is_directory=True)
    assert validate(repo).code == 0


@pytest.mark.parametrize(
    "command",
    [
        ("plan", "--state", "sqlite:///state.db"),
        ("schedule", "weekly-points-inbox"),
        ("test", "weekly-points-inbox", "--state", "sqlite:///state.db"),
        ("apply", "--approved-by", "reviewer", "--reason", "go", "--state", "sqlite:///state.db"),
    ],
    ids=lambda c: c[0],
)
def test_no_command_reads_a_creative_folder_linked_outside(repo, outside, command):
    move_out(repo, "creatives", outside)
    run = campaigns(*command, "--repo", str(repo))
    assert run.code not in (0, None)
    assert "creatives:1:1: path-outside-repo:" in run.out + run.err
    assert SECRET not in run.out + run.err and "Traceback" not in run.err


def test_plan_does_not_print_a_platform_yaml_linked_outside(repo, outside):
    move_out(repo, "platform.yaml", outside)
    run = campaigns("plan", "--repo", str(repo), "--state", "sqlite:///state.db")
    assert run.code == 1 and "platform.yaml:1:1: path-outside-repo:" in run.out + run.err
    assert SECRET not in run.out + run.err


def test_a_link_loop_is_a_one_line_problem(repo):
    (repo / "creatives/loop.yaml").symlink_to("loop.yaml")
    one_line_problem(validate(repo), "creatives/loop.yaml", "yaml-syntax")
    assert "loops" in validate(repo).out


def test_a_folder_link_loop_is_a_one_line_problem(repo):
    shutil.rmtree(repo / "templates")
    (repo / "templates").symlink_to("templates")
    one_line_problem(validate(repo), "templates", "yaml-syntax")


def test_a_platform_yaml_link_loop_is_a_one_line_problem(repo):
    (repo / "platform.yaml").unlink()
    (repo / "platform.yaml").symlink_to("platform.yaml")
    one_line_problem(validate(repo), "platform.yaml", "yaml-syntax")


def test_a_dangling_link_is_a_one_line_problem(repo, tmp_path):
    (repo / "creatives/gone.yaml").symlink_to(tmp_path / "nothing-here.yaml")
    run = validate(repo)
    one_line_problem(run, "creatives/gone.yaml", "yaml-syntax")
    assert "link to nothing" in run.out


def test_a_fifo_resource_file_never_blocks_validate_or_plan(repo):
    os.mkfifo(repo / "creatives/pipe.yaml")
    for command in (("validate",), ("plan", "--state", "sqlite:///state.db")):
        run = campaigns_bounded(*command, "--repo", str(repo), seconds=30)
        assert run.code == 1, run.err  # None would mean it hung until the time limit
        assert "creatives/pipe.yaml:1:1: yaml-syntax: this file is a FIFO (named pipe), not a regular file" in run.out + run.err
        assert not run.crashed


def test_a_fifo_platform_yaml_never_blocks(repo):
    (repo / "platform.yaml").unlink()
    os.mkfifo(repo / "platform.yaml")
    run = campaigns_bounded("validate", "--repo", str(repo), seconds=30)
    assert run.code == 1 and "platform.yaml:1:1: yaml-syntax: this file is a FIFO" in run.out
    assert not run.crashed


def test_a_fifo_audience_csv_never_blocks(repo):
    (repo / "audiences/vip-ph.csv").unlink()
    os.mkfifo(repo / "audiences/vip-ph.csv")
    run = campaigns_bounded("validate", "--repo", str(repo), seconds=30)
    assert run.code == 1 and "FIFO" in run.out and not run.crashed


def test_a_socket_is_a_one_line_problem(tmp_path):
    repo = example_repo(tmp_path / "r")  # a short path: AF_UNIX paths are limited to ~100 bytes
    listener = socket.socket(socket.AF_UNIX)
    try:
        os.chdir(repo / "creatives")
        listener.bind("sock.yaml")
    except OSError:
        pytest.skip("cannot bind a unix socket here")
    finally:
        os.chdir(Path(__file__).parent)
    try:
        run = validate(repo)
        one_line_problem(run, "creatives/sock.yaml", "yaml-syntax")
        assert "a socket" in run.out
    finally:
        listener.close()


def test_a_device_file_is_a_one_line_problem(repo):
    try:
        os.mknod(repo / "creatives/device.yaml", 0o600 | 0o020000, os.makedev(1, 3))  # like /dev/null
    except (PermissionError, OSError):
        pytest.skip("creating a device node needs privileges")
    run = validate(repo)
    one_line_problem(run, "creatives/device.yaml", "yaml-syntax")
    assert "a device" in run.out


@pytest.mark.parametrize("command", [("plan", "--no-color"), ("status",), ("state", "list")], ids=lambda c: c[0])
def test_commands_reading_platform_settings_never_block_on_a_fifo_platform_yaml(repo, command):
    """plan, status and state read platform.yaml's ``state`` setting before anything else."""
    (repo / "platform.yaml").unlink()
    os.mkfifo(repo / "platform.yaml")
    run = campaigns_bounded(*command, "--repo", str(repo), seconds=30)
    assert run.code not in (0, None), run.err  # None would mean it hung until the time limit
    assert "platform.yaml:1:1: yaml-syntax: this file is a FIFO (named pipe)" in run.out + run.err
    assert not run.crashed


def test_the_state_setting_is_never_read_from_a_platform_yaml_outside(repo, outside):
    target = move_out(repo, "platform.yaml", outside, secret=False)
    target.write_text(target.read_text() + "state: sqlite:///" + str(outside / "attacker.db") + "\n")
    run = campaigns("status", "--repo", str(repo))
    assert run.code != 0 and "platform.yaml:1:1: path-outside-repo:" in run.out + run.err
    assert not (outside / "attacker.db").exists()
