"""A synthetic, valid campaigns repository of any size (shared by the benchmarks).

Default: 10,000 tasks, 10,000 creatives, 1,000 audiences and 100 templates, spread
over 100 campaigns, with every recurrence type, several windows, Jinja variables and
deep links, so validation does its real work on every file.
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

CHANNELS = ["push", "sms", "inbox-ewallet", "inbox-miniprogram"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

PLATFORM = """\
# yaml-language-server: $schema=schemas/platform.schema.json
state: sqlite:///.campaigns/state.db
main_branch: main
sites:
  ph:
    name: Philippines wallet
    timezone: Asia/Manila
    channels: [push, sms, inbox-ewallet, inbox-miniprogram]
    mini_programs: [shop, rewards]
    testers: [u-tester-1]
    deep_link_schemes: [gcash]
    limits:
      max_per_user_per_day: 3
      rate_per_second: {push: 500, sms: 20}
providers:
  default: {type: outbox, path: .campaigns/outbox}
approval:
  forbid_self_merge: false
"""


def template_yaml(index: int, channel: str) -> str:
    redirection = "" if channel == "sms" else "  redirection: {required: true, max_length: 2048}\n"
    return f"""\
name: Template {index} ({channel})
channel: {channel}
status: approved
fields:
  title: {{required: {str(channel != 'sms').lower()}, max_length: 60}}
  content: {{required: true, max_length: 500}}
{redirection}variables:
  first_name: {{example: Maria}}
  points: {{example: 120}}
  city: {{example: Manila}}
"""


def creative_yaml(index: int, template: int, channel: str, rng: random.Random) -> str:
    redirection = "" if channel == "sms" else (
        f"redirection: https://shop.example.com/deals/{index}?utm_source=push\n"
        if rng.random() < 0.7
        else f"redirection:\n  - gcash://rewards/{index}\n  - https://shop.example.com/r/{index}\n"
    )
    return f"""\
name: Creative {index}
template: tpl-{template:03d}
title: "Hi {{{{ user.first_name }}}}, deal #{index}"
content: >-
  {{{{ user.first_name }}}}, you have {{{{ user.points | default(0) }}}} points.
  Spend them in {{{{ user.city | default('your city') }}}} before Sunday; offer {index}.
{redirection}"""


def audience_yaml(index: int, rng: random.Random) -> str:
    kind = index % 3
    if kind == 0:
        source = "source:\n  users: [" + ", ".join(f"u{rng.randrange(100000)}" for _ in range(5)) + "]\n"
    elif kind == 1:
        source = (
            "source:\n  where:\n    any:\n      - all:\n"
            f"          - {{attr: city, eq: Manila}}\n          - {{attr: points, gte: {rng.randrange(1000)}}}\n"
            "      - all:\n          - {attr: segment, in: [new, returning]}\n"
        )
    else:
        source = f"source:\n  include: [aud-{index - 1:04d}, aud-{index - 2:04d}]\n"
    return f"name: Audience {index}\nsite: ph\nrefresh: {rng.choice(['once', 'auto'])}\n{source}"


def recurrence(index: int) -> str:
    kind = index % 4
    if kind == 0:
        return "{type: one_time}"
    if kind == 1:
        return f"{{type: daily, every: {1 + index % 3}}}"
    if kind == 2:
        return "{type: weekly, days: [tuesday, friday], every: 1}"
    return f"{{type: monthly, day: {'last' if index % 8 == 3 else 1 + index % 31}}}"


def task_yaml(index: int, channel: str, creatives: list[int], audiences: list[int], rng: random.Random) -> str:
    month = 1 + index % 11
    dnd = "  do_not_disturb: [monday]\n" if index % 5 == 0 and index % 4 in (0, 1) else ""
    return f"""\
name: Task {index} {channel}
site: ph
mini_program: shop
channel: {channel}
schedule:
  start_date: 2027-{month:02d}-01
  finish_date: 2027-{month + 1:02d}-28
  windows:
    - {{start: "09:00", finish: "11:30"}}
    - {{start: 18:00, finish: 21:00}}
{dnd}  recurrence: {recurrence(index)}
audiences: [{', '.join(f'aud-{a:04d}' for a in audiences)}]
creatives: [{', '.join(f'cr-{c:05d}' for c in creatives)}]
status: {'active' if index % 10 else 'paused'}
"""


def generate(root: Path, tasks: int = 10_000, creatives: int = 10_000, audiences: int = 1_000, templates: int = 100, campaigns: int = 100, seed: int = 7) -> Path:
    """Write the repository at ``root`` (replacing it)."""
    rng = random.Random(seed)
    if root.exists():
        shutil.rmtree(root)
    for folder in ("templates", "audiences", "creatives", "campaigns"):
        (root / folder).mkdir(parents=True)
    (root / "platform.yaml").write_text(PLATFORM)
    template_channel = {index: CHANNELS[index % 4] for index in range(templates)}
    for index, channel in template_channel.items():
        (root / "templates" / f"tpl-{index:03d}.yaml").write_text(template_yaml(index, channel))
    creative_channel = {}
    for index in range(creatives):
        template = index % templates
        creative_channel[index] = template_channel[template]
        (root / "creatives" / f"cr-{index:05d}.yaml").write_text(creative_yaml(index, template, template_channel[template], rng))
    for index in range(audiences):
        (root / "audiences" / f"aud-{index:04d}.yaml").write_text(audience_yaml(index, rng))
    for index in range(campaigns):
        folder = root / "campaigns" / f"camp-{index:03d}"
        folder.mkdir()
        (folder / "campaign.yaml").write_text(f"name: Campaign {index}\ndescription: Synthetic campaign {index}\nowner: marketing\n")
    by_channel: dict[str, list[int]] = {}
    for index, channel in creative_channel.items():
        by_channel.setdefault(channel, []).append(index)
    for index in range(tasks):
        channel = CHANNELS[index % 4]
        pool = by_channel[channel]
        chosen = sorted({pool[(index // 4) % len(pool)], pool[(index // 4 + 1) % len(pool)]})
        audience_ids = sorted(rng.sample(range(audiences), 2))
        folder = root / "campaigns" / f"camp-{index % campaigns:03d}"
        (folder / f"task-{index:05d}.yaml").write_text(task_yaml(index, channel, chosen, audience_ids, rng))
    return root


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--creatives", type=int, default=10_000)
    parser.add_argument("--audiences", type=int, default=1_000)
    parser.add_argument("--templates", type=int, default=100)
    arguments = parser.parse_args()
    generate(arguments.root, arguments.tasks, arguments.creatives, arguments.audiences, arguments.templates)
    print(f"wrote {arguments.root}")
