"""Checking a rendered redirection against its written-out part (issue 10 item 5).

A redirection may complete its path or query from a user's attributes, never its scheme, host or
port: ``https://shop.example.com{{ user.first_name }}`` with ``@evil.example/login`` would send
the user to evil.example. Delivery checks every rendered URL with :func:`rendered_url_problem`
(``url-invalid``), and validation checks the one the template's examples render, so a creative
that validate accepts renders for a user like the examples.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\s\\]")


def url_origin(prefix: str) -> tuple[str, str | None, int | None] | None:
    """(scheme, host, port) of a URL's static part, or None when it cannot be parsed."""
    try:
        parts = urlsplit(prefix)
        return parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        return None


def rendered_url_problem(url: str, origin: tuple[str, str | None, int | None] | None) -> str | None:
    """Why a rendered redirection may not be sent (it must keep its static part's scheme, host and
    port, and carry no userinfo, whitespace or control characters), or None."""
    bad = _URL_FORBIDDEN.search(url)
    if bad:
        return f"the rendered URL contains {bad.group()!r} (whitespace, a backslash or a control character)"
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError as problem:
        return f"the rendered URL cannot be parsed ({problem})"
    if "@" in parts.netloc:
        return f"the rendered URL carries userinfo ({parts.netloc!r})"
    if origin is None:
        return "the redirection has no static scheme and host to check against"
    if scheme != origin[0]:
        return f"the rendered URL has scheme {scheme or '(none)'!r}, not {origin[0]!r}"
    if host != origin[1]:
        return f"the rendered URL goes to host {host or '(none)'!r}, not {origin[1] or '(none)'!r}"
    if port != origin[2]:
        return f"the rendered URL uses port {port}, not {origin[2]}"
    return None
