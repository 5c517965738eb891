"""Benchmark: the preview page of 200 tasks, built and opened in headless Chromium.

Figures, each next to a floor measured in the same run:

* build    ``build_page`` + ``to_html`` in process (the plan against an empty state included,
           repository already loaded), against the floor: writing the same HTML from
           precomputed strings (``"".join`` of the page's lines and one ``write_text``);
* command  ``campaigns preview`` as a whole process (import, validation, plan, page);
* browser  Debian's Chromium through Playwright: from ``goto`` to the second animation frame
           after ``load`` (parsed, styled, laid out and painted), against the floor: the same
           navigation of an empty HTML document (what any page costs). Goal (issue 15): under 2 s.

    python bench/preview.py [--tasks 200] [--repeat 3] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from preview_repo import NOW, many_tasks  # noqa: E402

GOAL_SECONDS = 2.0


def best(samples: list[float]) -> float:
    return min(samples)


def open_seconds(browser, path: Path) -> float:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    started = time.perf_counter()
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    seconds = time.perf_counter() - started
    page.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    options = parser.parse_args()

    from engine.clock import parse_instant
    from engine.preview import preview
    from engine.preview.render import to_html
    from engine.state import StateStore
    from engine.validation.pipeline import load_repository

    with tempfile.TemporaryDirectory(prefix="bench-preview-") as work:
        root = many_tasks(Path(work) / "repo", options.tasks)
        (root / ".campaigns").mkdir()
        repository = load_repository(root)
        now = parse_instant(NOW)
        build, floor, html = [], [], ""
        out = Path(work) / "index.html"
        for _ in range(options.repeat):
            started = time.perf_counter()
            with StateStore.open(f"sqlite:///{root / '.campaigns' / 'state.db'}", root, create=False, missing_ok=True) as store:
                html = to_html(preview(repository, store, now=now))
            out.write_text(html, encoding="utf-8")
            build.append(time.perf_counter() - started)
            lines = html.splitlines(keepends=True)
            started = time.perf_counter()
            out.write_text("".join(lines), encoding="utf-8")
            floor.append(time.perf_counter() - started)
        command = []
        for _ in range(options.repeat):
            started = time.perf_counter()
            subprocess.run(
                [str(Path(sys.executable).with_name("campaigns")), "preview", "--now", NOW, "--out", str(Path(work) / "cli")],
                cwd=root, check=True, capture_output=True,
            )
            command.append(time.perf_counter() - started)

        from playwright.sync_api import sync_playwright

        plain = Path(work) / "empty.html"
        plain.write_text("<!DOCTYPE html><title>empty</title>", encoding="utf-8")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=options.chromium)
            open_seconds(browser, out)  # warm the browser's caches once
            shown = [open_seconds(browser, out) for _ in range(options.repeat)]
            bare = [open_seconds(browser, plain) for _ in range(options.repeat)]
            browser.close()

    size = len(html.encode("utf-8"))
    print(f"preview of {options.tasks} tasks: {size / 1e6:.2f} MB of HTML (best of {options.repeat})")
    print(f"build    {best(build):.3f} s   floor (write the same HTML from precomputed strings) {best(floor):.4f} s")
    print(f"command  {best(command):.3f} s   (campaigns preview, whole process)")
    print(
        f"browser  {best(shown):.3f} s   floor (an empty page) {best(bare):.3f} s   "
        f"ratio {best(shown) / best(bare):.1f}x   goal < {GOAL_SECONDS:.0f} s: {'met' if best(shown) < GOAL_SECONDS else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
