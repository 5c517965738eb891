"""Patterns and limits of the repository format, importable without pydantic (fast start-up)."""

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
USER_ID_PATTERN = r"^[^\s]{1,32}$"
TIME_PATTERN = r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$"
VARIABLE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
SCHEME_PATTERN = r"^[a-z][a-z0-9+.-]*$"

CHANNELS = ("push", "sms", "inbox-ewallet", "inbox-miniprogram")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

TASK_NAME_MAX = 64
NAME_MAX = 100
REDIRECTION_MAX = 2048
USER_ID_MAX = 32
