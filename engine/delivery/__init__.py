"""Delivery: who a running task reaches, and sending to each of them exactly once.

    from engine.delivery.service import run_service        # campaigns run (loop, signals, workers)
    from engine.delivery.executor import Executor          # one pass: claim, render, send, finish

    with StateStore.open(url, base_dir=repo) as store, Executor(store, repo) as executor:
        summary = executor.run_pass()

Modules, by what they know:

- who: ``directory`` (the user directory: import, read, ``locate`` where it lives),
  ``audience_rules`` (pure rules validation shares, no SQLAlchemy), ``audience_compiler``
  (audiences as SQL, one compiled form), ``audiences`` (cached lists, ``refresh: once``
  snapshots, members streamed in ``user_id`` order), ``stream``, ``attribute_gaps``, ``forecast``;
- exactly once: ``ledger`` (the claim protocol; its statements in ``ledger_sql``), ``ids``
  (deterministic message ids), ``pacing``, ``pause_watch``;
- sending: ``render`` (one render path for delivery and pilot tests), ``providers`` (the outbox
  and the wallet gateway behind ``providers.base``'s protocol), ``executor``;
- running and watching: ``service``, ``metrics`` / ``metrics_setup``, ``health``, ``report``.

SQL that differs between SQLite and PostgreSQL is ``engine.state.dialect``'s; the tables are
``engine.state.ledger_tables`` and ``engine.state.directory_tables``. Delivery imports state,
never the other way.
"""
