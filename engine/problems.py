"""A located problem with a stable code, and the list of every code a rule can give."""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"

# code -> what it means; the README's table of rules is checked against this
CODES: dict[str, str] = {
    "yaml-syntax": "not parseable YAML (also binary or non-UTF-8 files, FIFOs, sockets, devices, dangling links and link loops)",
    "duplicate-key": "a mapping repeats a key",
    "schema": "any other JSON Schema violation (type, missing field, unknown field, enum)",
    "invalid-id": "a file name, site key, mini program, reference or tester is not a valid id (testers: user ids), or an id is defined twice",
    "unknown-reference": "a referenced site, mini program, campaign, audience, creative, template or file does not exist",
    "name-too-long": "task name > 64 characters; creative, audience, template, campaign name > 100",
    "date-range": "finish_date before start_date, a date outside the years 2000-2199, or a schedule spanning more than 10 years",
    "window-too-short": "a window is not longer than 2 hours",
    "window-order": "a window does not start later than the previous window's finish, or finish <= start",
    "no-occurrences": "the schedule never delivers",
    "dates-past": "every date of a task's schedule is in the past: it will never deliver again (warning)",
    "channel-mismatch": "channel not enabled on the site, or a creative's template is for another channel",
    "template-not-approved": "a task uses a creative whose template is not approved",
    "field-required": "a creative misses a field its template requires",
    "field-too-long": "a creative's field exceeds its template's max_length",
    "url-invalid": "a redirection URL is malformed, too long (2,048; 1,024 through the wallet gateway), or of a scheme not allowed",
    "template-syntax": "a Jinja template does not parse, or reaches for anything the sandbox forbids",
    "variable-unknown": "a creative uses a variable its template does not declare",
    "path-outside-repo": "a file reference, a symlinked file or folder, or a symlinked platform.yaml leaves the repository",
    "content-too-long": "a creative rendered with the examples exceeds what its channel's provider accepts (gateway messageContent 4,096 characters)",
    "unknown-attribute": "an audience rule names an attribute the user directory does not have",
    "unused": "a template, creative or audience that nothing uses (warning)",
    "sms-too-long": "an SMS creative, rendered with the template's examples, needs more segments than the site's sms.max_segments (warning)",
}


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One finding. ``file`` is relative to the repository root, with ``/`` separators."""

    file: str
    line: int
    column: int
    code: str
    message: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
        }
