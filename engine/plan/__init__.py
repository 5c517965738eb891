"""Plans: compare a repository with the state, decide every change, render and save the result.

    from engine.plan.run import plan_repository
    from engine.plan import planfile, render

    plan = plan_repository(Path("."), state_url)    # engine.plan.model.Plan (what `campaigns plan` does)
    print(render.as_text(plan))                     # or as_markdown / as_json
    planfile.save(plan, Path("plan.json")); planfile.load(Path("plan.json"))

Modules:

- ``run``: ``plan_repository``, the whole of ``campaigns plan`` below its options (state reader,
  no-op fast path, validation, planner);
- ``planner``: every change, task status and blocker (``compute_plan``, ``make_planner``);
- ``lifecycle``: the task lifecycle rules as pure functions (target status, when a pilot test is
  needed), used by the planner and the fast path;
- ``desired``: bodies and digests from a Repository; ``cache``: remembered digests per file;
- ``source``: what the planner asks of the state (``StateSource``), answered in this process or by
  a forked reader; ``diff``: field differences; ``drift``: what the state holds that git does not say;
- ``impact`` / ``impact_query``: audience sizes, SMS cost, warnings and the cap forecast (planned
  here, counted on the state side);
- ``fastpath``: "no changes" without loading the repository when no file changed;
- ``model``: the values (Plan, Change, StatusChange, ...) and their JSON shape;
- ``planfile``: the saved file (checksum, atomic save, bounded and distrustful load);
- ``render`` / ``render_impact``: text, Markdown and JSON.
"""
