"""Rendering validation problems: text for people, JSON for tools, annotations for GitHub."""

from __future__ import annotations

import json

import click

from engine.problems import Problem


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(problems: list[Problem], files: int) -> str:
    errors = sum(problem.is_error for problem in problems)
    warnings = len(problems) - errors
    if not problems:
        return f"{_plural(files, 'file')} valid."
    return f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')} in {_plural(files, 'file')}."


def as_text(problems: list[Problem], files: int, *, color: bool = False) -> str:
    """``file:line:col: code: message``, one per line, then a summary line."""
    lines = []
    for problem in problems:
        code = problem.code
        message = problem.message if problem.is_error else f"warning: {problem.message}"
        if color:
            code = click.style(code, fg="red" if problem.is_error else "yellow", bold=True)
        lines.append(f"{problem.file}:{problem.line}:{problem.column}: {code}: {message}")
    lines.append(summary(problems, files))
    return "\n".join(lines) + "\n"


def as_json(problems: list[Problem]) -> str:
    document = {"ok": not any(problem.is_error for problem in problems), "problems": [p.as_dict() for p in problems]}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def as_github(problems: list[Problem]) -> str:
    """GitHub Actions workflow commands: each problem becomes an annotation on the diff."""
    lines = []
    for problem in problems:
        level = "error" if problem.is_error else "warning"
        lines.append(
            f"::{level} file={_escape_property(problem.file)},line={problem.line},col={problem.column},"
            f"title={_escape_property(problem.code)}::{_escape_data(problem.message)}"
        )
    return "\n".join(lines) + ("\n" if lines else "")
