"""Repositories for the preview tests: the shipped example, with hostile text and failures."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from cli_runner import campaigns
from repos import edit, example_repo

NOW = "2026-11-20T00:00:00+08:00"
SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '"><img src=x onerror="window.__pwned = 2">'


def set_user(root: Path, user_id: str, **attributes: str) -> None:
    """Change attributes of one user of the example's users.csv."""
    path = root / "audiences" / "users.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    for row in rows:
        if row["user_id"] == user_id:
            row.update(attributes)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def hostile(root: Path) -> Path:
    """The example with markup in a creative and in a tester's name, a tester without a first
    name (missing variable) and one whose city makes a title longer than its template's 60
    characters (too long; the template's examples fit, so the repository validates)."""
    example_repo(root)
    set_user(root, "u-tester-1", first_name=SCRIPT + IMG, city="C" * 70)
    set_user(root, "u-tester-2", first_name="")

    def flash_b(data):
        data["content"] = f"{SCRIPT} {IMG} " + "{{ user.points | default(0) }} points"

    def weekly(data):
        data["title"] = "{{ user.city | default('here') }}: your points"

    edit(root, "creatives/flash-b.yaml", flash_b)
    edit(root, "creatives/weekly-points.yaml", weekly)
    imported = campaigns("users", "import", "audiences/users.csv", cwd=root)
    assert imported.code == 0, imported.err
    return root


CHANNEL_CREATIVES = {
    "push": "[flash-a, flash-b]",
    "sms": "[flash-sms]",
    "inbox-ewallet": "[weekly-points]",
    "inbox-miniprogram": "[monthly-rewards]",
}


def many_tasks(root: Path, total: int = 200) -> Path:
    """The example with tasks added (every channel, a month each) until it has ``total`` tasks."""
    from repos import task_yaml, write

    example_repo(root)
    write(root, "campaigns/bulk/campaign.yaml", "name: Bulk\ndescription: Many tasks for the preview's speed test.\n")
    channels = list(CHANNEL_CREATIVES)
    for index in range(total - 4):
        channel = channels[index % len(channels)]
        month = 1 + index % 12
        write(
            root,
            f"campaigns/bulk/bulk-{index:03d}.yaml",
            task_yaml(
                name=f"Bulk task {index}",
                channel=channel,
                creatives=CHANNEL_CREATIVES[channel],
                start=f"2027-{month:02d}-01",
                finish=f"2027-{month:02d}-28",
                recurrence="{type: weekly, days: [tuesday, friday]}",
                audiences="[rewards-members-ph]" if channel == "inbox-miniprogram" else "[new-users-ph]",
                extra="" if channel != "inbox-ewallet" else "",
            ).replace("mini_program: shop\n", "mini_program: rewards\n" if channel == "inbox-miniprogram" else "mini_program: shop\n"),
        )
    return root
