"""The README is the user's contract: it documents every rule code and the exact CI test command."""

from __future__ import annotations

from repos import PROJECT

from engine.problems import CODES

README = (PROJECT / "README.md").read_text(encoding="utf-8")


def test_readme_documents_every_rule_code():
    assert [code for code in CODES if f"| `{code}` |" not in README] == []


def test_ci_runs_the_readme_test_command():
    ci = (PROJECT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in ci if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))]
    assert commands and all(command.strip() in README for command in commands)
