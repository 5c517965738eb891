"""Apply: approval evidence (``approval``) and the all-or-nothing write of a plan (``applier``).

    from engine.apply.approval import Evidence
    from engine.apply.applier import apply

    result = apply(repository, store, evidence=Evidence.from_options(event, approved_by, reason))
    print(result.message())
"""
