"""Reading a users CSV: the one row checker behind ``users import`` and audience CSVs (``csv-invalid``).

A users CSV's first row names the columns: ``user_id`` (required, 1 to 32 characters, no white
space, no control characters such as NUL, unique), optional ``opt_out`` (channels separated by
``|``) and any other columns, which are attributes. An empty cell is a missing attribute, not "".
A cell that is a canonical numeral (``1250``, ``-3``, ``2.5``; not ``007``, ``1.50``, ``1e3``, nor
more than 15 digits) is a number; every other cell is text.

The file is streamed, never read whole: ``UsersCsv.rows`` (the import, and the audience members)
keeps the set of ids seen, to refuse a duplicate before it reaches the database;
``UsersCsv.check`` (validation, which keeps no rows) keeps one 8-byte fingerprint per id and
confirms candidate duplicates by a second pass, so checking a 200 MB file takes tens of megabytes.

A file that ends inside a quoted cell (a truncated export) is refused, not read with the cell
silently cut: the reader is given a sentinel line after the file's last one, which a cut-short
quoted cell swallows.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import re
import stat
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from engine.config.names import CHANNELS, USER_ID_MAX
from engine.config.safefile import open_regular, special_kind
from engine.errors import CampaignsError

MAX_LISTED_PROBLEMS = 20
_PROGRESS_EVERY = 20_000  # rows between progress callbacks
_MEMO_LIMIT = 100_000  # distinct cell values whose JSON fragment is remembered
_FINGERPRINT_BUCKETS = 64  # check(): fingerprints are split so each set built at the end stays small
_END = "\x00\x00end-of-file\x00\x00"  # fed to the reader after the last line (see the module doc)
_ID = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]{1,%d}" % USER_ID_MAX)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A canonical numeral: no sign but "-", no leading zeros, no trailing fractional zeros, no exponent.
_NUMERAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")
_MAX_DIGITS = 15  # every such number is exact as a double, so both backends compare it the same


class CsvFileError(CampaignsError):
    """The file cannot be read as a users CSV at all (missing, not UTF-8, bad header, cut short)."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line  # where in the file (1 for the file as a whole)


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str


class CsvRowsError(CsvFileError):
    """A users CSV has bad rows; ``problems`` lists the first ones, ``count`` says how many."""

    def __init__(
        self, source: str, problems: list[RowProblem], count: int, consequence: str = "nothing was imported"
    ) -> None:
        self.source = source
        self.problems = problems
        self.count = count
        lines = [f"  line {problem.line}: {problem.message}" for problem in problems]
        if count > len(problems):
            lines.append(f"  ... and {count - len(problems):,} more")
        plural = "s" if count != 1 else ""
        super().__init__(f"{source} has {count:,} bad row{plural}; {consequence}:\n" + "\n".join(lines))


# -- values ------------------------------------------------------------------------------------


def parse_numeral(text: str) -> int | float | None:
    """The number a canonical numeral cell stands for, or None when the cell is text."""
    if not _NUMERAL.fullmatch(text):
        return None
    if "." in text:
        if len(text) - 1 - text.startswith("-") > _MAX_DIGITS:
            return None
        value = float(text)
        return value if repr(value) == text else None
    if len(text) - text.startswith("-") > _MAX_DIGITS or text == "-0":
        return None
    return int(text)


def _json_fragment(cell: str) -> str:
    """The JSON text of a cell's value: the numeral itself for a number, a JSON string otherwise."""
    if parse_numeral(cell) is not None:
        return cell
    return json.dumps(cell, ensure_ascii=False)


def parse_opt_out(cell: str) -> tuple[str | None, list[str]]:
    """``(canonical "a|b" or None, unknown channel names)`` of an opt_out cell."""
    names = {part.strip() for part in cell.split("|")} - {""}
    bad = sorted(names - set(CHANNELS))
    return ("|".join(sorted(names)) or None), bad


def id_problem(user_id: str) -> str | None:
    """Why ``user_id`` is not a valid user id (duplicates aside), or None."""
    if _ID.fullmatch(user_id):
        return None
    if not user_id:
        return "user_id is empty"
    if len(user_id) > USER_ID_MAX:
        shown = repr(user_id) if len(user_id) <= 40 else repr(user_id[:40]) + "..."
        return f"user_id {shown} is {len(user_id)} characters; at most {USER_ID_MAX}"
    if "\x00" in user_id:
        return f"user_id {user_id!r} holds a NUL character"
    if _CONTROL.search(user_id):
        return f"user_id {user_id!r} contains a control character"
    return f"user_id {user_id!r} contains white space"


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvFile:
    """A CSV on disk and the sha256 its content had when it was planned: read streamed (never
    whole), and refused when the bytes read no longer have that digest."""

    path: str
    sha256: str


class _Digesting(io.FileIO):
    """A regular file (never a FIFO: see ``open_regular``) that hashes every byte read from it."""

    def __init__(self, path: str) -> None:
        super().__init__(open_regular(path), "rb", closefd=True)
        self.hasher = hashlib.sha256()

    def readinto(self, buffer: Any) -> int | None:
        count = super().readinto(buffer)
        if count:
            self.hasher.update(memoryview(buffer)[:count])
        return count

    def read(self, size: int = -1) -> bytes | None:
        data = super().read(size)
        if data:
            self.hasher.update(data)
        return data

    def readall(self) -> bytes:
        data = super().readall()
        self.hasher.update(data)
        return data


def file_sha256(path: str | Path, name: str | None = None) -> str:
    """The sha256 of a regular file, read in chunks (raises CsvFileError naming ``name``)."""
    shown = name or str(path)
    try:
        with _Digesting(str(path)) as handle:
            while handle.read(1 << 20):
                pass
            return handle.hasher.hexdigest()
    except ValueError as kind:
        raise CsvFileError(f"{shown} is {kind}, not a regular file; it is not read") from None
    except OSError as problem:
        raise CsvFileError(f"cannot read {shown}: {problem.strerror}") from None



@dataclass
class UsersCsv:
    """A users CSV being read: header checked on open, rows streamed by ``rows()`` or ``check()``.

    Both collect problems (``problems``, ``problem_count``) instead of raising, so one pass
    reports all of them; a file that cannot be read as CSV at all raises CsvFileError.
    """

    name: str
    _open: Callable[[], BinaryIO]
    size: int
    columns: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    problem_count: int = 0
    rows_read: int = 0
    _duplicates: dict[int, str] = field(default_factory=dict)  # index in problems -> duplicated id

    @classmethod
    def from_path(cls, path: Path | str, name: str | None = None) -> UsersCsv:
        """Open the file at ``path`` (named ``name`` in messages); only a regular file is opened,
        so a FIFO or a device never blocks or streams forever."""
        path = Path(path)
        shown = name or str(path)
        try:
            status = path.stat()
        except FileNotFoundError:
            raise CsvFileError(f"no such file: {shown}") from None
        except OSError as problem:
            raise CsvFileError(f"cannot read {shown}: {problem.strerror}") from None
        if stat.S_ISDIR(status.st_mode):
            raise CsvFileError(f"{shown} is a folder, not a CSV file")
        if not stat.S_ISREG(status.st_mode):
            raise CsvFileError(f"{shown} is {special_kind(status.st_mode)}, not a regular file; it is not read")
        reader = cls(shown, lambda: reader._open_digesting(str(path)), status.st_size)
        reader._read_header()
        return reader

    @classmethod
    def from_file(cls, source: CsvFile, name: str) -> UsersCsv:
        """Stream ``source``; ``verify()`` after a pass says whether it still had its digest."""
        reader = cls.from_path(source.path, name)
        reader._expected = source.sha256
        return reader

    def _open_digesting(self, path: str) -> BinaryIO:
        try:
            raw = _Digesting(path)
        except ValueError as kind:
            raise CsvFileError(f"{self.name} is {kind}, not a regular file; it is not read") from None
        self._last = raw
        return io.BufferedReader(raw)

    def verify(self) -> None:
        """After a whole pass (``rows()``): raise CsvFileError when the bytes read are not the
        ones planned (the file changed since its digest was taken)."""
        expected = getattr(self, "_expected", None)
        last = getattr(self, "_last", None)
        if expected is not None and (last is None or last.hasher.hexdigest() != expected):
            raise CsvFileError(f"{self.name} changed since it was planned; make a new plan")

    @classmethod
    def from_bytes(cls, content: bytes, name: str) -> UsersCsv:
        reader = cls(name, lambda: io.BytesIO(content), len(content))
        reader._read_header()
        return reader

    @contextmanager
    def _text(self) -> Iterator[tuple[Any, BinaryIO]]:
        try:
            raw = self._open()
        except OSError as problem:
            raise CsvFileError(f"cannot read {self.name}: {problem.strerror}") from None
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            yield csv.reader(itertools.chain(text, (_END,))), raw
        finally:
            text.close()

    def _fail(self, reader: Any, problem: Exception, row_start: int) -> CsvFileError:
        line = getattr(reader, "line_num", 0) + 1
        if isinstance(problem, UnicodeDecodeError):
            line, byte = self._first_bad_utf8()
            return CsvFileError(
                f"{self.name} is not UTF-8 text (line {line}: byte 0x{byte:02x}); save it as UTF-8 CSV", line
            )
        text = str(problem)
        if "unexpected end of data" in text:
            return CsvFileError(
                f"{self.name} line {row_start}: the file ends inside a quoted cell that starts on this line; "
                "the file is cut short or a quote is not closed",
                row_start,
            )
        return CsvFileError(f"{self.name} line {line}: not a readable CSV row ({text})", line)

    def _first_bad_utf8(self) -> tuple[int, int]:
        """(line, byte) of the first byte that is not UTF-8: the text layer decodes in chunks,
        so its error does not say where in the file the byte is."""
        decoder = codecs.getincrementaldecoder("utf-8")()
        lines = 1
        with self._open() as raw:
            while chunk := raw.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as bad:
                    start = max(bad.start - len(bad.object) + len(chunk), 0)
                    return lines + chunk.count(b"\n", 0, start), chunk[start] if start < len(chunk) else 0
                lines += chunk.count(b"\n")
        return lines, 0

    def _read_header(self) -> None:
        with self._text() as (reader, _raw):
            try:
                header = next(_records(reader), None)
            except (UnicodeDecodeError, csv.Error) as problem:
                raise self._fail(reader, problem, 1) from None
        if not header or header == [""]:
            raise CsvFileError(f"{self.name} is empty; its first row must name the columns (user_id, ...)")
        columns = [name.strip() for name in header]
        if "user_id" not in columns:
            hint = ""
            if len(columns) == 1 and any(sep in columns[0] for sep in ";\t"):
                hint = "; columns must be separated by commas"
            shown = ", ".join(repr(name) for name in columns[:8]) + (", ..." if len(columns) > 8 else "")
            raise CsvFileError(f"{self.name} has no user_id column (its first row names: {shown}){hint}")
        for number, name in enumerate(columns, 1):
            if not name:
                raise CsvFileError(f"{self.name}: column {number} of the first row has no name")
            if "\x00" in name:
                raise CsvFileError(f"{self.name}: column {number} of the first row holds a NUL character")
        seen: set[str] = set()
        twice = [name for name in columns if name in seen or seen.add(name)]
        if twice:
            raise CsvFileError(f"{self.name}: the first row names column {twice[0]!r} twice")
        self.columns = columns
        self.attributes = [name for name in columns if name not in ("user_id", "opt_out")]

    def _problem(self, line: int, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(RowProblem(line, message))

    def _duplicate(self, line: int, user_id: str, first: int | None = None) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            message = f"duplicate user_id {user_id!r}"
            if first is not None:
                message += f" (first on line {first})"
            else:
                self._duplicates[len(self.problems)] = user_id
            self.problems.append(RowProblem(line, message))

    def rows(self, progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[str, str, str | None]]:
        """Stream ``(user_id, attributes JSON text, opt_out or None)`` of the data rows; after the
        first problem, rows are only checked, not yielded. Keeps the set of ids seen."""
        seen: set[str] = set()
        yield from self._stream(progress, seen, None)

    def check(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Check every row without keeping any (validation): duplicates are found from 8-byte
        fingerprints and confirmed by a second pass, so memory does not grow with the file."""
        buckets = [array("q") for _ in range(_FINGERPRINT_BUCKETS)]
        for _ in self._stream(progress, None, buckets):
            pass
        candidates: set[int] = set()
        for bucket in buckets:
            if len(set(bucket)) != len(bucket):
                counted: set[int] = set()
                for value in bucket:
                    if value in counted:
                        candidates.add(value)
                    counted.add(value)
        buckets.clear()
        if candidates:
            self._confirm_duplicates(candidates)

    def _confirm_duplicates(self, candidates: set[int]) -> None:
        """Second pass: which ids with a repeated fingerprint really repeat, and where."""
        at = self.columns.index("user_id")
        width = len(self.columns)
        first: dict[str, int] = {}
        with self._text() as (reader, _raw):
            records = _records(reader)
            next(records)
            for row in records:
                if len(row) != width:
                    continue
                user_id = row[at]
                if hash(user_id) not in candidates or not _ID.fullmatch(user_id):
                    continue
                line = reader.line_num
                if user_id in first:
                    self._duplicate(line, user_id, first[user_id])
                else:
                    first[user_id] = line

    def _stream(
        self,
        progress: Callable[[int, int], None] | None,
        seen: set[str] | None,
        buckets: list[array] | None,
    ) -> Iterator[tuple[str, str, str | None]]:
        columns = self.columns
        width = len(columns)
        id_at = columns.index("user_id")
        opt_at = columns.index("opt_out") if "opt_out" in columns else None
        prefixes = [(columns.index(name), json.dumps(name, ensure_ascii=False) + ":") for name in self.attributes]
        build = seen is not None  # check() builds no JSON
        memo: dict[str, str] = {}
        recall = memo.get
        opt_memo: dict[str, tuple[str | None, list[str]]] = {}
        id_ok = _ID.fullmatch
        fragment = _json_fragment
        count = 0
        row_start = 2
        with self._text() as (reader, raw):
            try:
                records = _records(reader)
                next(records)  # the header
                row_start = reader.line_num + 1
                for row in records:
                    line = reader.line_num
                    started, row_start = row_start, line + 1
                    if len(row) != width:
                        if not row or row == [""]:
                            continue  # a blank line
                        self._problem(started, f"has {len(row)} cells; the first row names {width} columns")
                        continue
                    user_id = row[id_at]
                    if not id_ok(user_id):
                        self._problem(started, id_problem(user_id) or "user_id is not valid")
                        continue
                    if seen is not None:
                        if user_id in seen:
                            self._duplicate(started, user_id)
                            continue
                        seen.add(user_id)
                    else:
                        fingerprint = hash(user_id)
                        buckets[fingerprint % _FINGERPRINT_BUCKETS].append(fingerprint)
                    parts = []
                    for index, prefix in prefixes:
                        cell = row[index]
                        if cell:
                            text = recall(cell)
                            if text is None:
                                if "\x00" in cell:
                                    self._problem(started, f"column {columns[index]!r} holds a NUL character")
                                    continue
                                if not build:
                                    continue
                                text = fragment(cell)
                                if len(memo) < _MEMO_LIMIT:
                                    memo[cell] = text
                            parts.append(prefix + text)
                    opt_out = None
                    if opt_at is not None and row[opt_at]:
                        cell = row[opt_at]
                        parsed = opt_memo.get(cell)
                        if parsed is None:
                            parsed = parse_opt_out(cell)
                            if len(opt_memo) < _MEMO_LIMIT:
                                opt_memo[cell] = parsed
                        opt_out, bad = parsed
                        if bad:
                            self._problem(
                                started,
                                f"opt_out names unknown channel{'s' if len(bad) > 1 else ''} "
                                f"{', '.join(repr(name) for name in bad)} (channels: {', '.join(CHANNELS)})",
                            )
                            continue
                    count += 1
                    if progress is not None and count % _PROGRESS_EVERY == 0:
                        progress(raw.tell(), self.size)
                    if build and not self.problem_count:
                        yield user_id, "{" + ",".join(parts) + "}", opt_out
            except (UnicodeDecodeError, csv.Error) as problem:
                raise self._fail(reader, problem, row_start) from None
            if progress is not None:
                progress(self.size, self.size)
        self.rows_read = count

    def explain_duplicates(self) -> None:
        """Add to each listed duplicate the line where the id first appears (a second pass,
        only when there are duplicates: the first pass keeps ids, not their lines)."""
        if not self._duplicates:
            return
        wanted = set(self._duplicates.values())
        at = self.columns.index("user_id")
        first: dict[str, int] = {}
        with self._text() as (reader, _raw):
            records = _records(reader)
            next(records)
            start = reader.line_num + 1
            for row in records:
                line, start = start, reader.line_num + 1
                if len(row) == len(self.columns) and row[at] in wanted and row[at] not in first:
                    first[row[at]] = line
                    if len(first) == len(wanted):
                        break
        for index, user_id in self._duplicates.items():
            problem = self.problems[index]
            if first.get(user_id, problem.line) != problem.line:
                self.problems[index] = RowProblem(problem.line, f"{problem.message} (first on line {first[user_id]})")
        self._duplicates = {}

    def sorted_problems(self) -> list[RowProblem]:
        """The listed problems in line order, duplicates explained (call after a pass found some)."""
        self.explain_duplicates()
        return sorted(self.problems, key=lambda p: p.line)

    def rejection(self, consequence: str = "nothing was imported") -> CsvRowsError:
        """The error for the problems found (call after ``rows()`` or ``check()`` found some)."""
        return CsvRowsError(self.name, self.sorted_problems(), self.problem_count, consequence)


def _records(reader: Any) -> Iterator[list[str]]:
    """The rows of a reader fed the file and then ``_END``: stops at the sentinel's own row, and
    raises csv.Error when a quoted cell swallowed it (the file ends inside that cell)."""
    for row in reader:
        if row and row[-1].endswith(_END):
            if len(row) == 1 and row[0] == _END:
                return
            raise csv.Error("unexpected end of data")
        yield row
