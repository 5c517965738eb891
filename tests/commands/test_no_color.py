"""NO_COLOR is respected everywhere (https://no-color.org): on a real terminal (a pty), ``plan``
and ``validate`` colour by default and print no escape at all with NO_COLOR=1; ``plan --color``
still wins; one module (engine/terminal.py) makes the decision for every command."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pty_run import ANSI, SGR, on_terminal
from repos import EXAMPLE_LIVE_NOW, example_repo, write

from engine import terminal


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example (its plan against an empty state creates everything) with one invalid file."""
    root = example_repo(tmp_path_factory.mktemp("nocolor") / "repo")
    return root


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = example_repo(tmp_path_factory.mktemp("nocolor-broken") / "repo")
    write(root, "campaigns/broken/campaign.yaml", "name: [unclosed\n")
    return root


def _state(root: Path) -> str:
    return f"sqlite:///{root.parent}/state.db"


def test_plan_colours_on_a_terminal_and_not_with_no_color(repo: Path) -> None:
    code, coloured = on_terminal("plan", "--repo", str(repo), "--state", _state(repo), env={"NO_COLOR": None})
    assert code == 0, coloured
    assert SGR.search(coloured), "the control: plan colours on a terminal"
    code, plain = on_terminal("plan", "--repo", str(repo), "--state", _state(repo), env={"NO_COLOR": "1"})
    assert code == 0, plain
    assert not ANSI.search(plain), repr(plain[:400])
    assert "to create" in plain


def test_an_explicit_color_flag_wins_over_no_color(repo: Path) -> None:
    code, output = on_terminal("plan", "--color", "--repo", str(repo), "--state", _state(repo), env={"NO_COLOR": "1"})
    assert code == 0 and SGR.search(output)


def test_validate_colours_on_a_terminal_and_not_with_no_color(broken: Path) -> None:
    args = ("validate", "--repo", str(broken), "--now", EXAMPLE_LIVE_NOW)
    code, coloured = on_terminal(*args, env={"NO_COLOR": None})
    assert code == 1 and SGR.search(coloured), coloured
    code, plain = on_terminal(*args, env={"NO_COLOR": "1"})
    assert code == 1 and not ANSI.search(plain), repr(plain[:400])
    assert "campaigns/broken/campaign.yaml" in plain


def test_a_refused_plan_prints_its_problems_without_colour(broken: Path) -> None:
    code, plain = on_terminal("plan", "--repo", str(broken), "--state", _state(broken), env={"NO_COLOR": "1"})
    assert code == 1 and "campaigns/broken/campaign.yaml" in plain
    assert not ANSI.search(plain), repr(plain[:400])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "env,tty,flag,expected",
    [
        ({}, True, None, True),
        ({}, False, None, False),
        ({"NO_COLOR": "1"}, True, None, False),
        ({"NO_COLOR": ""}, True, None, True),  # empty: not set, as no-color.org says
        ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, None, False),
        ({"FORCE_COLOR": "1"}, False, None, True),
        ({"FORCE_COLOR": "0"}, False, None, False),
        ({"TERM": "dumb"}, True, None, False),
        ({"NO_COLOR": "1"}, True, True, True),
        ({}, True, False, False),
    ],
)
def test_use_color(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], tty: bool, flag: bool | None, expected: bool) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stream = _Tty() if tty else io.StringIO()
    assert terminal.use_color(stream, flag=flag) is expected


def test_a_rich_console_without_colour_writes_no_style_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich's own NO_COLOR handling drops colours but keeps bold and reverse; ours drops both."""
    monkeypatch.setenv("NO_COLOR", "1")
    out = _Tty()
    terminal.console(out, force_terminal=True).print("[bold red]stop[/] [reverse]now[/]")
    assert out.getvalue() == "stop now\n"


def test_no_command_decides_colour_on_its_own() -> None:
    """Every colour decision goes through engine.terminal (no isatty() of its own in a command)."""
    commands = Path(terminal.__file__).parent / "commands"
    offenders = [path.name for path in commands.glob("*.py") if ".isatty()" in path.read_text()]
    assert offenders == []


def test_the_schedule_table_has_no_style_with_no_color(repo: Path) -> None:
    task = sorted(path.stem for path in (repo / "campaigns").glob("*/*.yaml") if path.name != "campaign.yaml")[0]
    args = ("schedule", task, "--repo", str(repo), "--from", "2026-12-01", "--to", "2026-12-31")
    code, styled = on_terminal(*args, env={"NO_COLOR": None})
    assert code == 0, styled
    assert SGR.search(styled), "the control: rich styles the table on a terminal"
    code, plain = on_terminal(*args, env={"NO_COLOR": "1"})
    assert code == 0 and not ANSI.search(plain), repr(plain[:400])
