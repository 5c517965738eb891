"""Take docs/preview.png: the preview page of the shipped example, in Debian's headless Chromium.

    python scripts/preview-screenshot.py [--chromium /usr/bin/chromium]

The example is copied to a temporary folder, its users imported (so the testers' own attributes
and the audience sizes show), and ``campaigns preview`` run at a fixed instant; the top of the
page and the SMS task's calendar are captured.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from repos import example_repo  # noqa: E402

NOW = "2026-11-28T09:00:00+08:00"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "preview.png")
    options = parser.parse_args()
    campaigns = str(Path(sys.executable).with_name("campaigns"))
    with tempfile.TemporaryDirectory(prefix="preview-shot-") as work:
        root = example_repo(Path(work) / "example")
        subprocess.run([campaigns, "users", "import", "audiences/users.csv"], cwd=root, check=True, capture_output=True)
        subprocess.run([campaigns, "preview", "--now", NOW], cwd=root, check=True, capture_output=True)
        page_path = root / ".campaigns" / "preview" / "index.html"

        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=options.chromium)
            page = browser.new_page(viewport={"width": 1200, "height": 1500}, device_scale_factor=1)
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
            page.goto(page_path.as_uri(), wait_until="load")
            options.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(options.out), full_page=False)
            browser.close()
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
