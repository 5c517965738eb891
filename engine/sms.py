"""SMS length and cost: encoding, segments and price of one rendered SMS text.

Pure functions, no I/O, low in the layers: validation (``sms-too-long``), the plan (the ``sms``
field of a task change) and the preview (the SMS bubble) all count with this module, so they
always agree.

API
---
``count(text) -> SmsCount(encoding, segments, units, forcing)``
    ``encoding``: ``"gsm-7"`` when every character is in the GSM 03.38 alphabet or its extension
    table, else ``"ucs-2"``. ``units``: what the network counts: septets for GSM-7 (an extension
    character is two: the escape and the character), UTF-16 code units for UCS-2 (a character
    outside the BMP, such as most emoji, is two: a surrogate pair). ``segments``: how many SMS
    the text is sent as. ``forcing``: the characters that made it UCS-2, each once, in order of
    appearance (empty for GSM-7). ``SmsCount.as_json()`` gives the same as a dict.
``parts(text) -> tuple[str, ...]``
    The text of each segment, split where a sender splits it (for a preview); ``len(parts(t)) ==
    count(t).segments`` and ``"".join(parts(t)) == t``.
``cost(count, price_per_segment, currency, recipients=None) -> SmsCost(per_message, total, currency)``
    ``per_message`` = segments × price, ``total`` = per_message × recipients (``None`` when the
    number of recipients is unknown, e.g. without a user directory). Exact ``Decimal``
    arithmetic: a float price is read as the decimal it was written as (``0.0123``, never
    ``0.01229999...``). ``SmsCost.as_json()`` gives JSON numbers; ``format_money(amount,
    currency)`` a display string ("36,900.00 USD", "0.0369 USD": never fewer decimals than the
    currency has, and never rounding a sub-cent price away).
``example_text(creative, template) -> str | None``
    A creative's SMS body (its ``content``) rendered with its template's ``example`` values,
    through ``engine.templating`` (the sandbox every other check uses); ``None`` when there is
    no content or it cannot be rendered with the examples (other rules report why).
``describe(chars) -> str``
    The forcing characters for a message: ``'ç', '😀', U+0301 COMBINING ACUTE ACCENT``.

How the plan uses it (SPEC section 5): for each SMS creative of a task change,
``counted = count(example_text(creative, template))`` and, when the site has ``sms:
{price_per_segment, currency}``, ``priced = cost(counted, price, currency, audience_size)``; the
change carries ``plan_fields(counted, priced)`` =
``{"encoding", "segments", "cost": {"per_message", "total", "currency"}}`` (``cost`` null when
the site sets no price, ``total`` null when the audience size is unknown), and the warning
``sms-segments`` when ``counted.segments > site sms.max_segments``. Cost deltas: subtract the
``total`` Decimals of the two sides.

Splitting (what Twilio's segment calculator and Android's SMS code do): a text of at most 160
septets (GSM-7) or 70 code units (UCS-2) is one segment. A longer one is sent as concatenated
parts, each carrying a 6-octet user data header, which leaves 153 septets or 67 code units a
part. A part never ends between the escape and its extension character, nor between the two
halves of a surrogate pair: a two-unit character that does not fit in what is left of a part
starts the next one (so 152 septets plus ``€`` is two parts, of 152 and 2). The empty text is one
(empty) segment, as Twilio counts it.

Where this differs from Twilio's calculator (deliberately): Twilio keeps a whole grapheme cluster
(a ZWJ emoji sequence, a flag, a letter with combining accents) in one part; we keep only code
points whole, as the SPEC says, so a multi-part UCS-2 text with such a cluster across a part
boundary may be one part shorter here. We do not emulate Twilio's "smart encoding" (curly quotes
replaced by straight ones) nor per-country alphabets (the Spanish or Turkish national shift
tables, Malaysia's ASCII-only GSM): the text is sent as written, in the default alphabet.

The alphabet comes from the ``gsm0338`` codec (GSM 03.38 / 3GPP TS 23.038 default alphabet and
its extension table). We use its decoding tables, not ``str.encode("gsm03.38")`` per text:
the codec encodes U+001B (ESCAPE) as the single byte 0x1B, which in a message is the escape to
the extension table and would change the next character (``\\x1b`` + ``e`` arrives as ``€``), so
here ESCAPE is no GSM character and forces UCS-2 (as in Twilio's table). Apart from that,
``len(text.encode("gsm03.38"))`` is exactly the septet count of a GSM-7 text (the tests hold us to
it). Importing the codec costs under a millisecond (``python -X importtime``); the tables are
built on first use.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Literal

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

from engine.templating import render

Encoding = Literal["gsm-7", "ucs-2"]

GSM7_SINGLE = 160
"""Septets of a message sent as one segment."""
GSM7_PART = 153
"""Septets of each part of a concatenated message (160 less the 6-octet header)."""
UCS2_SINGLE = 70
"""UTF-16 code units of a UCS-2 message sent as one segment."""
UCS2_PART = 67
"""UTF-16 code units of each part of a concatenated UCS-2 message."""

EXAMPLE_USER_ID = "u-example"
"""``user.user_id`` in example renders (every user has an id; templates do not declare it)."""

_ESCAPE = 0x1B
_CODEC = "gsm03.38"


@cache
def gsm_septets() -> Mapping[str, int]:
    """Each character of the GSM 03.38 default alphabet -> 1, of its extension table -> 2.

    Read from the codec's own decoding: every single byte but the escape, and the escape
    followed by every byte (what does not decode is no extension character)."""
    table: dict[str, int] = {}
    basic = bytes(byte for byte in range(128) if byte != _ESCAPE).decode(_CODEC)
    table.update(dict.fromkeys(basic, 1))
    escaped = b"".join(bytes((_ESCAPE, byte)) for byte in range(128)).decode(_CODEC, "replace")
    for character in escaped:
        if character != "\ufffd" and character not in table:
            table[character] = 2
    return table


@dataclass(frozen=True, slots=True)
class SmsCount:
    """How the network carries one text. ``units``: septets (GSM-7) or UTF-16 code units (UCS-2)."""

    encoding: Encoding
    segments: int
    units: int
    forcing: tuple[str, ...] = ()

    @property
    def per_segment(self) -> int:
        """Units each segment carries at this length (160 or 153, 70 or 67)."""
        if self.encoding == "gsm-7":
            return GSM7_SINGLE if self.segments == 1 else GSM7_PART
        return UCS2_SINGLE if self.segments == 1 else UCS2_PART

    def as_json(self) -> dict[str, Any]:
        return {"encoding": self.encoding, "segments": self.segments, "units": self.units, "forcing": list(self.forcing)}


def _costs(text: str) -> tuple[Encoding, list[int], tuple[str, ...]]:
    """The encoding, each character's units in it, and the characters that forced UCS-2."""
    table = gsm_septets()
    forcing: dict[str, None] = {}
    for character in text:
        if character not in table:
            forcing[character] = None
    if not forcing:
        return "gsm-7", [table[character] for character in text], ()
    return "ucs-2", [2 if ord(character) > 0xFFFF else 1 for character in text], tuple(forcing)


def _boundaries(costs: list[int], single: int, part: int) -> list[int]:
    """Indexes where each segment after the first starts; a character never straddles two."""
    if sum(costs) <= single:
        return []
    starts: list[int] = []
    used = 0
    for index, units in enumerate(costs):
        if used + units > part:
            starts.append(index)
            used = 0
        used += units
    return starts


def _limits(encoding: Encoding) -> tuple[int, int]:
    return (GSM7_SINGLE, GSM7_PART) if encoding == "gsm-7" else (UCS2_SINGLE, UCS2_PART)


def count(text: str) -> SmsCount:
    """Encoding, segments, units and the characters that forced UCS-2, for one rendered text."""
    encoding, costs, forcing = _costs(text)
    units = sum(costs)
    single, part = _limits(encoding)
    if units <= single:
        segments = 1
    elif units == len(costs):
        segments = math.ceil(units / part)  # every character one unit: nothing to keep whole
    else:
        segments = len(_boundaries(costs, single, part)) + 1
    return SmsCount(encoding, segments, units, forcing)


def parts(text: str) -> tuple[str, ...]:
    """The text of each segment, as a sender splits it (see the module docstring)."""
    encoding, costs, _ = _costs(text)
    starts = _boundaries(costs, *_limits(encoding))
    edges = [0, *starts, len(text)]
    return tuple(text[begin:end] for begin, end in zip(edges, edges[1:]))


def describe(characters: Iterable[str], *, limit: int = 5) -> str:
    """Characters for a message: printable ones quoted, others (combining marks, controls,
    invisible ones) by code point and name; at most ``limit``, then how many more."""
    shown = []
    characters = list(characters)
    for character in characters[:limit]:
        category = unicodedata.category(character)
        if category[0] in "LNPS":
            shown.append(f"'{character}'")
        else:
            name = unicodedata.name(character, "")
            shown.append(f"U+{ord(character):04X}" + (f" {name}" if name else ""))
    more = len(characters) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


# --- cost -----------------------------------------------------------------------------------

# ISO 4217 currencies whose minor unit is not the hundredth (all others: 2 decimals).
_MINOR_UNITS = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
MAX_DISPLAY_PLACES = 6
"""Decimals ``format_money`` shows at most (a price per segment is rarely below 1e-4)."""


def money(value: Decimal | float | int | str) -> Decimal:
    """A finite, non-negative amount as a Decimal; a float is taken as the decimal it was
    written as (its shortest repr), so ``0.0123`` stays ``0.0123``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an amount")
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{value!r} is not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{value!r} is not a finite, non-negative amount")
    return amount


@dataclass(frozen=True, slots=True)
class SmsCost:
    """What sending costs: ``per_message`` (one recipient, all segments) and ``total``
    (``None`` when the number of recipients is unknown), exact, in ``currency``."""

    per_message: Decimal
    total: Decimal | None
    currency: str

    def as_json(self) -> dict[str, Any]:
        """JSON numbers (floats print their shortest round-tripping form: 0.0369, 36900.0)."""
        return {
            "per_message": float(self.per_message),
            "total": None if self.total is None else float(self.total),
            "currency": self.currency,
        }


def cost(
    counted: SmsCount | int,
    price_per_segment: Decimal | float | int | str,
    currency: str,
    recipients: int | None = None,
) -> SmsCost:
    """segments × price per message, and × recipients in total (exact decimal arithmetic)."""
    segments = counted.segments if isinstance(counted, SmsCount) else counted
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 0:
        raise ValueError(f"segments must be a non-negative integer, not {segments!r}")
    if recipients is not None and (isinstance(recipients, bool) or not isinstance(recipients, int) or recipients < 0):
        raise ValueError(f"recipients must be a non-negative integer or None, not {recipients!r}")
    per_message = money(price_per_segment) * segments
    total = None if recipients is None else per_message * recipients
    return SmsCost(per_message, total, currency)


def minor_units(currency: str) -> int:
    """Decimals of the currency's minor unit (ISO 4217): 2, or 0 (JPY), 3 (KWD), 4 (CLF)."""
    return _MINOR_UNITS.get(currency.upper(), 2)


def format_money(amount: Decimal, currency: str) -> str:
    """``36,900.00 USD``, ``0.0369 USD``, ``1,230 JPY``: at least the currency's decimals, more
    when the amount has them (up to MAX_DISPLAY_PLACES, rounded half-even beyond)."""
    places = minor_units(currency)
    rounded = amount.quantize(Decimal(1).scaleb(-MAX_DISPLAY_PLACES))
    exponent = -rounded.normalize().as_tuple().exponent if rounded else 0
    shown = max(places, min(MAX_DISPLAY_PLACES, exponent))
    return f"{rounded:,.{shown}f} {currency}"


def plan_fields(counted: SmsCount, priced: SmsCost | None) -> dict[str, Any]:
    """The plan's ``sms`` field of one creative (SPEC section 5)."""
    return {"encoding": counted.encoding, "segments": counted.segments, "cost": None if priced is None else priced.as_json()}


# --- the creative's text ----------------------------------------------------------------------


def example_values(template: Mapping[str, Any]) -> dict[str, Any]:
    """The template's ``example`` values by variable, and an example ``user_id``."""
    variables = template.get("variables") or {}
    return {"user_id": EXAMPLE_USER_ID, **{name: spec.get("example") for name, spec in variables.items()}}


def example_text(creative: Mapping[str, Any], template: Mapping[str, Any]) -> str | None:
    """The creative's SMS body (its ``content``) rendered with the template's examples, or None
    when it has none or it cannot be rendered so (a template-syntax, variable-unknown or
    length problem that other rules report)."""
    content = creative.get("content")
    if not isinstance(content, str):
        return None
    try:
        return render(content, example_values(template))
    except Exception:  # noqa: BLE001 - UndefinedError, TooLong, TemplateRefused, a filter's TypeError...
        return None
