"""Patterns and limits of the repository format, importable without pydantic (fast start-up)."""

# The patterns end with END_OF_TEXT, not a bare "$": in Python's re (jsonschema, pydantic) "$" also
# matches before a final newline, so "ph\n" would pass as an id. "\Z" is Python-only (in an editor's
# ECMA-262 regex it is a literal "Z"); "$(?!\n)" means end of text in both.
END_OF_TEXT = r"$(?!\n)"
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}" + END_OF_TEXT
# A user id (a tester, an audience's users, the directory's user_id): 1 to 32 characters, no
# whitespace and no control characters, as `users import` accepts them.
USER_ID_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f]{1,32}" + END_OF_TEXT
TIME_PATTERN = r"^([01]?[0-9]|2[0-3]):[0-5][0-9]" + END_OF_TEXT
VARIABLE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}" + END_OF_TEXT
SCHEME_PATTERN = r"^[a-z][a-z0-9+.-]*" + END_OF_TEXT
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*" + END_OF_TEXT

CHANNELS = ("push", "sms", "inbox-ewallet", "inbox-miniprogram")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

TASK_NAME_MAX = 64
NAME_MAX = 100
REDIRECTION_MAX = 2048
GATEWAY_REDIRECT_MAX = 1024
"""Characters of a redirection the wallet gateway takes (its ``redirectUrl``)."""
GATEWAY_CONTENT_MAX = 4096
"""Characters of the wallet gateway's ``messageContent`` JSON text."""
USER_ID_MAX = 32
NUMBER_MAX = 2**53
"""Largest integer any field takes (JSON's exact range); beyond it, or .inf/.nan, is a schema problem."""

FIRST_YEAR, LAST_YEAR = 2000, 2199
"""Task dates lie in these years (``date-range`` otherwise)."""
SPAN_MAX_YEARS = 10
"""A task's schedule spans at most this many years (``date-range`` otherwise)."""
