"""Plans: compare a repository with the state, decide every change, render and save the result.

    from engine.plan.planner import compute_plan
    from engine.plan import model, render

    plan = compute_plan(repository, store)          # engine.plan.model.Plan
    print(render.as_text(plan))                     # or as_markdown / as_json
    model.save(plan, Path("plan.json")); model.load(Path("plan.json"))

Modules: ``desired`` (bodies and digests from a Repository), ``planner`` (the lifecycle and
blockers), ``model`` (Plan/Change values, JSON, saved files with a checksum), ``render``.
"""
