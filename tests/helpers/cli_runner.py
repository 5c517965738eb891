"""Run the real ``campaigns`` entry point in-process (or as a process) and capture what it prints."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    code: int
    out: str
    err: str


def campaigns(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """``campaigns ARGS`` through ``engine.cli.main``: exit code, stdout and stderr."""
    from engine.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous_cwd = os.getcwd()
    previous_env = dict(os.environ)
    try:
        if cwd is not None:
            os.chdir(cwd)
        if env:
            os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        os.chdir(previous_cwd)
        os.environ.clear()
        os.environ.update(previous_env)
    return Run(code, out.getvalue(), err.getvalue())


def campaigns_process(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    """``campaigns ARGS`` as a separate process (``python -m engine``)."""
    result = subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(result.returncode, result.stdout, result.stderr)
