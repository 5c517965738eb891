"""Schedules: when a task delivers, as pure functions of its schedule and the site's zone.

    from engine.schedule.occurrences import occurrences, has_occurrences

Modules: ``occurrences`` (occurrences and their delivery windows, SPEC section 4; no I/O, no
clock but the one passed in), ``render`` (JSON, iCalendar and the terminal table),
``vtimezone`` (VTIMEZONE components every calendar client reads alike).
"""
