"""``validate``: every file through the per-file checks (cached, in parallel), then the rules across files.

The result carries every problem, located, and, when there is no error, the
:class:`~engine.config.repository.Repository` that plan and the other commands use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path

from engine import localcache
from engine.clock import Clock
from engine.config import yamlload
from engine.config.discovery import SourceFile, discover
from engine.config.repository import Repository, Resource
from engine.config.safefile import open_regular
from engine.errors import CampaignsError
from engine.problems import ERROR, Problem
from engine.validation import cache as cache_module
from engine.validation import dates_rule, filecheck, rules, sms_check
from engine.validation.cache import ValidationCache
from engine.validation.directory_check import attribute_findings, directory_attributes, unreadable_directory_finding

PARALLEL_THRESHOLD = 400  # files to check before worker processes pay for themselves
BATCH = 250

Progress = Callable[[int, int], None]


@dataclass
class ValidationResult:
    root: Path
    problems: list[Problem]
    repository: Repository | None
    files: int = 0
    checked: int = 0  # files checked this run (the rest came from the cache)
    extra: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [problem for problem in self.problems if not problem.is_error]

    @property
    def has_errors(self) -> bool:
        return any(problem.is_error for problem in self.problems)


def _workers() -> int:
    configured = os.environ.get("CAMPAIGNS_WORKERS")
    if configured and configured.isdigit():
        return max(1, int(configured))
    return os.cpu_count() or 1


def _check_all(pending: list[tuple[bytes, str]], progress: Progress | None) -> list[filecheck.FileResult]:
    """Run the per-file checks, in worker processes when there are many files."""
    workers = _workers()
    if workers == 1 or len(pending) < PARALLEL_THRESHOLD:
        results = []
        for start in range(0, len(pending), BATCH):
            results.extend(filecheck.check_batch(pending[start : start + BATCH]))
            if progress:
                progress(len(results), len(pending))
        return results
    # Only a cold check of a large repository forks workers (9 ms of imports the rest skip).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # warm the imports before forking so every worker starts with them loaded
    from engine.config.schemas import validator_for

    for kind in ("task", "creative", "audience", "template", "campaign", "platform"):
        validator_for(kind)
    filecheck.check_file(b"name: warm-up\n", "campaign")

    batches = [pending[start : start + BATCH] for start in range(0, len(pending), BATCH)]
    results: list[filecheck.FileResult] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for batch_results in pool.map(filecheck.check_batch, batches):
            results.extend(batch_results)
            if progress:
                progress(len(results), len(pending))
    return results


_FIRST_READ = 65536


def _read(root: str, source: SourceFile) -> bytes | Problem:
    """The file's bytes (at most one byte past the size limit, so the loader can refuse it).

    Plain ``os.read`` of a small first chunk: resource files are a few hundred bytes, and a
    buffered ``read(limit)`` would allocate a megabyte for each of twenty thousand files.
    """
    try:
        descriptor = open_regular(os.path.join(root, source.path))  # a FIFO put there meanwhile never blocks
    except OSError as bad:
        return Problem(source.path, 1, 1, "yaml-syntax", f"cannot read the file: {bad.strerror}")
    except ValueError as kind:
        return Problem(source.path, 1, 1, "yaml-syntax", f"this file is {kind}, not a regular file; it is not read")
    try:
        data = os.read(descriptor, _FIRST_READ)
        if len(data) == _FIRST_READ:
            chunks = [data]
            size = len(data)
            while size <= yamlload.MAX_FILE_BYTES:
                chunk = os.read(descriptor, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)[: yamlload.MAX_FILE_BYTES + 1]
        return data
    except OSError as bad:
        return Problem(source.path, 1, 1, "yaml-syntax", f"cannot read the file: {bad.strerror}")
    finally:
        os.close(descriptor)


@dataclass
class RepositoryFiles:
    """Every resource file of a repository as read once: bytes and content digests.

    Read before anything else, so other fast paths (the plan's "nothing changed") can decide
    from the digests, and validation then reuses the same bytes instead of reading again.
    """

    root: Path
    sources: list[SourceFile]
    problems: list[Problem]  # where files are and what they are called
    raws: dict[str, bytes]
    digests: dict[str, str]

    @property
    def key(self) -> str:
        """One digest of every (path, content digest)."""
        return cache_module.files_key(list(self.digests.items()))


def read_files(root: Path) -> RepositoryFiles:
    """Discover and read every resource file of the repository at ``root`` (and warn about any
    cache file committed to it: none is ever read)."""
    root = root.resolve()
    localcache.warn_committed(root)
    sources, problems = discover(root)
    raws: dict[str, bytes] = {}
    digests: dict[str, str] = {}
    root_text = str(root)
    for source in sources:
        raw = _read(root_text, source)
        if isinstance(raw, Problem):
            problems.append(raw)
            continue
        raws[source.path] = raw
        digests[source.path] = filecheck.digest_bytes(raw)
    return RepositoryFiles(root, sources, problems, raws, digests)


def validate_repository(
    root: Path,
    *,
    use_cache: bool = True,
    progress: Progress | None = None,
    need_repository: bool = True,
    state: str | None = None,
    files: RepositoryFiles | None = None,
    clock: Clock | None = None,
) -> ValidationResult:
    """Validate the repository at ``root``: every problem at once, and the Repository if it is sound.

    With ``need_repository=False`` (``campaigns validate``) an unchanged repository is answered
    from the result cache without loading any file's data. ``state`` (a URL) says where to find
    the user directory for the ``unknown-attribute`` rule, as ``--state`` does. ``files``: the
    repository's files when the caller has read them already (``read_files``). ``clock`` says
    which day it is for ``dates-past`` (default: the machine's clock).
    """
    with filecheck.gc_paused():
        return _validate(files or read_files(root), use_cache, progress, need_repository, state, clock)


def _platform_data(sources: list[SourceFile], raws: dict[str, bytes]) -> dict | None:
    platform = next((source for source in sources if source.kind == "platform"), None)
    try:
        data = yamlload.load(raws[platform.path]) if platform else None
    except (yamlload.YamlProblem, KeyError):
        return None
    return data if isinstance(data, dict) else None


def _directory_context(known_attributes: frozenset[str] | None, directory_warning: str | None) -> tuple:
    """What the ``unknown-attribute`` rule saw of the user directory (part of the result cache's key)."""
    if known_attributes is not None:
        return ("attributes", sorted(known_attributes))
    if directory_warning:
        return ("unreadable", directory_warning)
    return ("no directory",)


def _validate(
    files: RepositoryFiles,
    use_cache: bool,
    progress: Progress | None,
    need_repository: bool,
    state: str | None,
    clock: Clock | None = None,
) -> ValidationResult:
    """``use_cache=False`` reads no cache, and stores this run's results in place of the old ones."""
    root, sources, raws, digests = files.root, files.sources, files.raws, files.digests
    problems = list(files.problems)
    platform_data = _platform_data(sources, raws)
    known_attributes, directory_warning = directory_attributes(root, platform_data, state)
    today = dates_rule.site_dates(platform_data, clock)
    # everything a complete result depends on besides the files and the inputs they name
    result_key = cache_module.context_key(
        files.key,
        [astuple(problem) for problem in files.problems],
        _directory_context(known_attributes, directory_warning),
        dates_rule.context(today),
    )
    fingerprints = cache_module.Fingerprints(root)
    result_cache = cache_module.ResultCache(root)
    remembered = result_cache.lookup(result_key, fingerprints) if use_cache else None
    if remembered is not None and not need_repository:
        stored, _ = remembered
        return ValidationResult(root, [Problem(*fields) for fields in stored], None, files=len(sources))

    cache = ValidationCache.load(root) if use_cache else ValidationCache.empty(root)
    results: dict[str, filecheck.FileResult] = {}
    pending: list[tuple[bytes, str]] = []
    pending_sources: list[SourceFile] = []
    for source in sources:
        if source.path not in raws:
            continue
        hit = cache.get(source.path, source.kind, digests[source.path], fingerprints) if use_cache else None
        if hit is not None:
            results[source.path] = hit
        else:
            pending.append((raws[source.path], source.kind))
            pending_sources.append(source)
    checked = _check_all(pending, progress) if pending else []
    for source, result in zip(pending_sources, checked):
        results[source.path] = result
        cache.put(source.path, source.kind, result, _inputs(source, result, fingerprints))
    cache.retain({source.path for source in sources})
    cache.save()

    entries = [rules.Entry(source, results[source.path][1], results[source.path][3]) for source in sources if source.path in results]
    catalog = rules.Catalog(entries)
    if remembered is not None:
        stored, attachments = remembered
        problems = [Problem(*fields) for fields in stored]
    else:
        # fingerprinted before the rules read them: a file edited meanwhile is a miss next time
        inputs: dict[str, str] = {}
        for source in sources:
            if source.path in results:
                inputs.update(_inputs(source, results[source.path], fingerprints))
        for source in sources:
            if source.path in results:
                problems.extend(
                    Problem(source.path, line, column, code, message, severity)
                    for line, column, code, severity, message in results[source.path][2]
                )
        attachments = _cross_file(root, catalog, problems, known_attributes, directory_warning, today)
        problems.sort(key=lambda p: (p.file, p.line, p.column, p.code, p.message))
        result_cache.store(result_key, inputs, attachments, [astuple(problem) for problem in problems])

    repository = None
    if not any(problem.severity == ERROR for problem in problems):
        repository = _repository(root, catalog, results, attachments)
    return ValidationResult(root, problems, repository, files=len(sources), checked=len(pending))


def _inputs(source: SourceFile, result: filecheck.FileResult, fingerprints: cache_module.Fingerprints) -> dict[str, str]:
    """The other files results about ``source`` depend on, each with its fingerprint."""
    _, data, _, facts = result
    found = fingerprints.of(cache_module.inputs_of(source.path, source.kind, data))
    reads = facts.get(cache_module.READS) if isinstance(facts, dict) else None
    if isinstance(reads, dict):
        found.update(reads)
    return found


def _cross_file(
    root: Path,
    catalog: rules.Catalog,
    problems: list[Problem],
    known_attributes: frozenset[str] | None,
    directory_warning: str | None,
    today: dict | None = None,
) -> dict:
    """Run the rules across files; returns each audience's attachments (CSV path -> digest)."""
    findings: list[rules.Finding] = []
    if known_attributes is not None:
        findings.extend(attribute_findings(catalog, known_attributes))
    elif directory_warning:
        platform = catalog.by_kind.get("platform", {}).get("platform")
        findings.append(unreadable_directory_finding(platform.source.path if platform else "platform.yaml", directory_warning))
    attachments: dict = {}
    if catalog.platform is not None:
        findings.extend(rules.check_tasks(catalog))
        audience_findings, attachments = rules.check_audiences(catalog, str(root))
        findings.extend(audience_findings)
        findings.extend(sms_check.check_sms(catalog))
    findings.extend(rules.check_creatives(catalog))
    findings.extend(rules.check_unused(catalog))
    findings.extend(dates_rule.findings(catalog, today or {}))
    problems.extend(_locate(root, findings))
    return attachments


def _locate(root: Path, findings: list[rules.Finding]) -> list[Problem]:
    """Turn JSON paths into lines and columns, parsing again only the files that have findings."""
    trees: dict[str, object] = {}
    located = []
    for finding in findings:
        if finding.line:
            line, column = finding.line, 1
        elif finding.path:
            if finding.file not in trees:
                try:
                    trees[finding.file] = yamlload.parse(yamlload.decode((root / finding.file).read_bytes())).root
                except (OSError, yamlload.YamlProblem):
                    trees[finding.file] = None
            line, column = yamlload.locate(trees[finding.file], finding.path, key=finding.at_key)
        else:
            line, column = 1, 1
        located.append(Problem(finding.file, line, column, finding.code, finding.message, finding.severity))
    return located


def _repository(root: Path, catalog: rules.Catalog, results: dict, attachments: dict) -> Repository:
    def resources(kind: str) -> dict[str, Resource]:
        built = {}
        for rid, entry in catalog.by_kind.get(kind, {}).items():
            source = entry.source
            built[rid] = Resource(
                kind,
                rid,
                source.path,
                entry.data,
                results[source.path][0],
                source.campaign if kind == "task" else None,
                attachments.get(rid, {}) if kind == "audience" else {},
            )
        return built

    return Repository(
        root=root,
        platform=resources("platform")["platform"],
        templates=resources("template"),
        audiences=resources("audience"),
        creatives=resources("creative"),
        campaigns=resources("campaign"),
        tasks=resources("task"),
    )


class InvalidRepository(CampaignsError):
    """The repository does not validate; ``problems`` says why."""

    def __init__(self, problems: list) -> None:
        errors = [problem for problem in problems if problem.is_error]
        super().__init__(f"the repository does not validate ({len(errors)} error{'s' if len(errors) != 1 else ''})")
        self.problems = problems


def load_repository(root: Path | str, *, use_cache: bool = True, state: str | None = None, files=None) -> Repository:
    """Load and validate the repository at ``root``; raise InvalidRepository if it has errors.

    ``state`` is the ``--state`` URL, if given: it locates the user directory whose attributes
    audience rules are checked against. ``files``: the repository's files already read with
    :func:`read_files`.
    """
    result = validate_repository(Path(root), use_cache=use_cache, state=state, files=files)
    if result.has_errors or result.repository is None:
        raise InvalidRepository(result.problems)
    return result.repository
