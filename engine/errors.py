"""Errors a user can act on. The CLI prints their message (never a traceback) and exits 1."""


class CampaignsError(Exception):
    """A failure with a message meant for the person running the command."""

    exit_code = 1


class UsageError(CampaignsError):
    """Bad arguments or a bad reference on the command line (unknown task, reversed range, ...)."""


class DirectoryError(CampaignsError):
    """The user directory cannot be read or changed as asked (or platform.yaml names it wrongly)."""
