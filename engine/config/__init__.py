"""Configuration: a repository's files, read safely, as typed resources.

    from engine.config.discovery import discover      # which files, of which kind
    from engine.config import yamlload                # YAML that means what a person means
    from engine.config.models import MODELS           # pydantic models, one per kind

Modules: ``discovery`` (walking the tree without following links out of it), ``safefile``
(opening a file without trusting what it is), ``yamlload`` (bounded, located YAML),
``names`` (patterns and limits, importable without pydantic), ``models`` (the single source of
truth of the format) and ``schemas`` (the JSON Schemas generated from them), ``repository``
(the loaded resources and their digests), ``settings`` (``platform.yaml`` and where the state
lives), ``usercsv`` (the one users-CSV row checker). Nothing here imports validation: the
located :class:`engine.problems.Problem` is shared below both.
"""
