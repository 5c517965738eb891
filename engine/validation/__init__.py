"""Validation: every problem of a repository at once, each located and with a stable code.

    from engine.validation.pipeline import validate_repository, load_repository

    result = validate_repository(Path("."))        # .problems, .repository (None on errors)
    repository = load_repository(Path("."))        # or raise InvalidRepository

Modules: ``pipeline`` (files through the per-file checks, cached and in parallel, then the rules
across files; ``load_repository``), ``filecheck`` (what needs only the file), ``schema_check``
(JSON Schema findings a marketer can act on), ``rules`` (references, channels, fields,
variables, links, paths), ``dates_rule`` (the clock-dependent ``dates-past``), ``sms_check``
(``sms-too-long``), ``directory_check`` (``unknown-attribute`` against the user directory),
``cache`` (results remembered between runs, keyed by every input), ``report`` (text, JSON,
GitHub annotations). The codes themselves are in :mod:`engine.problems`.
"""
