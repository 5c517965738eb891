"""What ``--metrics-addr`` needs before prometheus_client is imported: the address, and the
multiprocess directory that prometheus_client reads from the environment at its first import
(so every worker's values land where the serving process adds them up)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess() -> Callable[[], None]:
    """Point prometheus_client at a fresh directory for multiprocess values (before it is
    imported, which is when it reads ``PROMETHEUS_MULTIPROC_DIR``); returns the clean-up."""
    folder = tempfile.mkdtemp(prefix="campaigns-metrics-")
    before = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = folder

    def clean_up() -> None:
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before

    return clean_up


def parse_addr(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:9464`` listens on every interface); ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
