"""Apply: approval evidence (``approval``), the all-or-nothing write of a plan (``applier``) and
the emergency stop outside git (``emergency``).

    from engine.apply.approval import Evidence
    from engine.apply.applier import apply_repository

    result = apply_repository(Path("."), state_url, evidence=Evidence.from_options(event, approved_by, reason))
    print(result.message())

``apply_repository`` is the whole of ``campaigns apply`` below its options; ``apply(repository,
store, ...)`` is the same for a repository already loaded and a store already open.
"""
