"""``sms-too-long`` (a warning): an SMS creative that needs more segments than a site allows.

Each creative that a task sends on the ``sms`` channel is rendered with its template's example
values (``engine.sms.example_text``, the sandbox every creative check uses) and counted as the
network counts it (``engine.sms.count``); it is compared with ``sms.max_segments`` of every site
whose SMS tasks use it. A site without ``max_segments`` sets no limit. A creative that cannot be
rendered with the examples is left to the rules that say why (template-syntax, variable-unknown).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from engine.problems import WARNING
from engine.validation.rules import Catalog, Finding

if TYPE_CHECKING:
    from engine import sms


def _limits(catalog: Catalog) -> dict[str, int]:
    """Site -> sms.max_segments, for the sites that set one."""
    platform = catalog.platform
    limits: dict[str, int] = {}
    for site_id, site in (platform["sites"] if platform else {}).items():
        maximum = (site.get("sms") or {}).get("max_segments")
        if maximum is not None:
            limits[site_id] = maximum
    return limits


def check_sms(catalog: Catalog) -> Iterator[Finding]:
    limits = _limits(catalog)
    if not limits:
        return
    sites_of: dict[str, set[str]] = {}  # creative -> sites whose SMS tasks send it
    for entry in catalog.valid("task"):
        task = entry.data
        if task["channel"] == "sms" and task["site"] in limits:
            for creative_id in task["creatives"]:
                sites_of.setdefault(creative_id, set()).add(task["site"])
    if not sites_of:
        return
    # Imported here: engine.sms (with decimal and the gsm0338 codec) is about 5% of validate's
    # start-up (python -X importtime: 13.6 ms of engine.validation.pipeline's 276 ms), which a
    # run answered from the result cache, or a repository without SMS limits, need not pay.
    from engine import sms

    for creative_id in sorted(sites_of):
        entry = catalog.by_kind.get("creative", {}).get(creative_id)
        creative = entry.data if entry else None
        template = catalog.data("template", creative["template"]) if creative else None
        if template is None or template["channel"] != "sms":
            continue  # unknown-reference or channel-mismatch says what is wrong
        text = sms.example_text(creative, template)
        if text is None:
            continue
        counted = sms.count(text)
        over = sorted((site, limits[site]) for site in sites_of[creative_id] if counted.segments > limits[site])
        if over:
            yield Finding(entry.source.path, ("content",), "sms-too-long", _message(counted, over), WARNING)


def _message(counted: sms.SmsCount, over: list[tuple[str, int]]) -> str:
    from engine import sms  # imported by check_sms already

    how = f"{counted.units} characters in {counted.encoding.upper()}, {counted.per_segment} a segment"
    if counted.forcing:
        how += f"; {sms.describe(counted.forcing)} need UCS-2, without them {sms.GSM7_SINGLE} fit one segment"
    if len(over) == 1:
        site, maximum = over[0]
        limit = f"site {site!r} allows at most {maximum} (sms.max_segments)"
    else:
        limit = "sites allow at most " + ", ".join(f"{maximum} ({site!r})" for site, maximum in over) + " (sms.max_segments)"
    return f"content needs {counted.segments} SMS segments with the template's example values ({how}); {limit}"
