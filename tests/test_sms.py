"""The SMS counter (engine/sms.py) against published cases, and its properties.

Sources of the table:
- [twilio] TwilioDevEd/message-segment-calculator, tests/index.test.js (the cases behind Twilio's
  segment calculator page): 160/161 and 307 GSM-7 characters, an emoji with 68/69/133 digits,
  a flag and a rainbow-flag ZWJ sequence at the 70-unit boundary, each escape character at the
  160/161 boundary, UCS-2-only accented letters (Á Ú ú ç í Í ó Ó) 70/71 times, ']' after an
  emoji counting one unit in UCS-2, CR/LF line breaks, a letter with three combining accents.
- [23.038] 3GPP TS 23.038 section 6.2.1: the default alphabet (its Greek capitals, é/É but not
  ç, only Ç) and the extension table (^ { } \\ [ ~ ] | € and form feed, two septets each).
- [android] AOSP GsmAlphabet.findGsmSeptetLimitIndex / Twilio's Segment.freeSizeInBits: a
  character that does not fit whole in what is left of a part starts the next part.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import sms
from engine.sms import count, parts

DIGITS = "1234567890" * 40  # the digit runs Twilio's cases use
EMOJI = "\U0001F61C"  # 😜, outside the BMP: a surrogate pair
FLAG_IT = "\U0001F1EE\U0001F1F9"  # 🇮🇹: two regional indicators, four units
RAINBOW_FLAG = "\U0001F3F3\uFE0F\u200D\U0001F308"  # 🏳️‍🌈: six units
GREEK_CAPITALS = "ΔΦΓΛΩΠΨΣΘΞ"
EXTENSION = ["^", "{", "}", "\\", "[", "~", "]", "|", "€", "\f"]

# (case, text, encoding, segments, units)
TABLE = [
    ("empty text: one empty segment [twilio]", "", "gsm-7", 1, 0),
    ("GSM-7 in one segment: 160 [twilio]", DIGITS[:160], "gsm-7", 1, 160),
    ("GSM-7 in two segments: 161 [twilio]", DIGITS[:161], "gsm-7", 2, 161),
    ("GSM-7 two full parts: 153x2 = 306", DIGITS[:306], "gsm-7", 2, 306),
    ("GSM-7 in three segments: 307 [twilio]", DIGITS[:307], "gsm-7", 3, 307),
    ("escape character, one segment: 2 + 158 [twilio]", "{" + DIGITS[:158], "gsm-7", 1, 160),
    ("escape character, two segments: 2 + 159 [twilio]", "{" + DIGITS[:159], "gsm-7", 2, 161),
    ("extension character at septet 153/154 moves to part two [android]", "a" * 152 + "€" + "a" * 152, "gsm-7", 3, 306),
    ("extension character at septets 154/155 stays whole in part two", "a" * 153 + "€" + "a" * 151, "gsm-7", 2, 306),
    ("extension character still fits one segment at 159/160", "a" * 158 + "€", "gsm-7", 1, 160),
    ("extension character past 160 makes two", "a" * 159 + "€", "gsm-7", 2, 161),
    ("Greek capitals are in the default alphabet [23.038]", GREEK_CAPITALS * 16, "gsm-7", 1, 160),
    ("Greek capitals: 161 of them are two segments [23.038]", GREEK_CAPITALS * 16 + "Δ", "gsm-7", 2, 161),
    ("precomposed é is GSM-7 [23.038]", "Café é", "gsm-7", 1, 6),
    ("É, Ç, ß, Ñ, ¿, ¡, £, ¥, § are GSM-7 [23.038]", "ÉÇßÑ¿¡£¥§", "gsm-7", 1, 9),
    ("CR LF line breaks count one each [twilio]", "\rabcde\r\n123", "gsm-7", 1, 11),
    ("LF line breaks count one each [twilio]", "\nabcde\n\n123\n", "gsm-7", 1, 12),
    ("form feed is an extension character [23.038]", "a\fb", "gsm-7", 1, 4),
    ("UCS-2 in one segment: emoji + 68 [twilio]", EMOJI + DIGITS[:68], "ucs-2", 1, 70),
    ("UCS-2 in two segments: emoji + 69 [twilio]", EMOJI + DIGITS[:69], "ucs-2", 2, 71),
    ("UCS-2 two full parts: 67x2 = 134", "ç" + DIGITS[:133], "ucs-2", 2, 134),
    ("UCS-2 in three segments: emoji + 133 [twilio]", EMOJI + DIGITS[:133], "ucs-2", 3, 135),
    ("emoji at units 67/68 moves to part two", "ç" * 66 + EMOJI + "ç" * 66, "ucs-2", 3, 134),
    ("emoji at units 68/69 stays whole in part two", "ç" * 67 + EMOJI + "ç" * 65, "ucs-2", 2, 134),
    ("flag at the 70 boundary: one segment [twilio]", FLAG_IT + DIGITS[:66], "ucs-2", 1, 70),
    ("flag at the 70 boundary: two segments [twilio]", FLAG_IT + DIGITS[:67], "ucs-2", 2, 71),
    ("ZWJ sequence at the 70 boundary: one segment [twilio]", RAINBOW_FLAG + DIGITS[:64], "ucs-2", 1, 70),
    ("ZWJ sequence at the 70 boundary: two segments [twilio]", RAINBOW_FLAG + DIGITS[:65], "ucs-2", 2, 71),
    ("']' is one unit in UCS-2: emoji + 68 [twilio]", "\U0001F600" + "]" * 68, "ucs-2", 1, 70),
    ("']' is one unit in UCS-2: emoji + 69 [twilio]", "\U0001F600" + "]" * 69, "ucs-2", 2, 71),
    ("combining accent forces UCS-2", "e\u0301", "ucs-2", 1, 2),
    ("three combining accents, one segment [twilio]", "e\u0301\u0301\u0301" + "a" * 66, "ucs-2", 1, 70),
    ("three combining accents, two segments [twilio]", "e\u0301\u0301\u0301" + "a" * 67, "ucs-2", 2, 71),
    ("Greek small letters are not GSM-7", "Καλημέρα", "ucs-2", 1, 8),
    ("Greek capital Alpha is not the Latin A", "\u0391\u0392", "ucs-2", 1, 2),
    ("ESC itself is no GSM character (it would escape the next one)", "a\x1bb", "ucs-2", 1, 3),
    ("a no-break space forces UCS-2", "50\u00a0%", "ucs-2", 1, 4),
]


@pytest.mark.parametrize(("text", "encoding", "segments", "units"), [case[1:] for case in TABLE], ids=[case[0] for case in TABLE])
def test_published_cases(text, encoding, segments, units):
    counted = count(text)
    assert (counted.encoding, counted.segments, counted.units) == (encoding, segments, units)
    assert len(parts(text)) == segments
    assert "".join(parts(text)) == text


@pytest.mark.parametrize("character", EXTENSION)
def test_each_extension_character_counts_two_septets_at_the_boundary(character):
    """[twilio] each escape character with 158 more digits fits one segment, with 159 it does not."""
    assert (count(character + DIGITS[:158]).encoding, count(character + DIGITS[:158]).segments) == ("gsm-7", 1)
    assert count(character + DIGITS[:159]).segments == 2
    assert count(character).units == 2


@pytest.mark.parametrize("character", list("ÁÚúçíÍóÓ"))
def test_accented_letters_outside_the_alphabet_are_ucs2(character):
    """[twilio] 70 of them are one UCS-2 segment, 71 are two."""
    assert count(character * 70) == sms.SmsCount("ucs-2", 1, 70, (character,))
    assert count(character * 71).segments == 2


@pytest.mark.parametrize("character", list(GREEK_CAPITALS))
def test_each_greek_capital_of_the_alphabet_is_one_septet(character):
    assert count(character) == sms.SmsCount("gsm-7", 1, 1, ())


def test_the_characters_that_forced_ucs2_each_once_in_order():
    counted = count("Olá! 😀 Ça coûte 5€ 😀, ça")
    assert counted.encoding == "ucs-2"
    assert counted.forcing == ("á", "😀", "û", "ç")
    assert count("plain [text] {ok} €5").forcing == ()


def test_a_part_never_splits_an_escape_or_a_surrogate_pair():
    split = parts("a" * 152 + "€" + "a" * 152)
    assert [len(part) for part in split] == [152, 152, 1]  # characters: € + 151 is 153 septets
    assert split[1].startswith("€")
    emoji = parts("ç" * 66 + EMOJI + "ç" * 66)
    assert emoji[0] == "ç" * 66 and emoji[1].startswith(EMOJI)


def test_per_segment_capacity_follows_the_length():
    assert count("a" * 160).per_segment == 160
    assert count("a" * 161).per_segment == 153
    assert count("ç" * 70).per_segment == 70
    assert count("ç" * 71).per_segment == 67


def test_describe_names_invisible_characters():
    assert sms.describe(("ç", "😀")) == "'ç', '😀'"
    assert sms.describe(("\u0301", "\u00a0")) == "U+0301 COMBINING ACUTE ACCENT, U+00A0 NO-BREAK SPACE"
    assert sms.describe("abcdefg", limit=3) == "'a', 'b', 'c' and 4 more"


def test_the_alphabet_is_the_codecs_less_the_escape():
    table = sms.gsm_septets()
    assert len([c for c, n in table.items() if n == 1]) == 127  # 128 code points less ESC
    assert sorted(c for c, n in table.items() if n == 2) == sorted(EXTENSION)
    assert "\x1b" not in table


# --- cost ------------------------------------------------------------------------------------


def test_cost_is_segments_times_price_exactly():
    priced = sms.cost(count(DIGITS[:307]), 0.0123, "USD", 1_000_000)
    assert priced.per_message == Decimal("0.0369")
    assert priced.total == Decimal("36900")
    assert priced.currency == "USD"
    assert json.loads(json.dumps(priced.as_json())) == {"per_message": 0.0369, "total": 36900.0, "currency": "USD"}


def test_cost_without_an_audience_size_has_no_total():
    priced = sms.cost(2, Decimal("0.05"), "EUR")
    assert priced.per_message == Decimal("0.10") and priced.total is None
    assert priced.as_json()["total"] is None


def test_a_float_price_is_the_decimal_it_was_written_as():
    # 0.1 * 3 is 0.30000000000000004 in floats; money is not
    assert sms.cost(3, 0.1, "USD", 7).total == Decimal("2.1")


@pytest.mark.parametrize("price", [-0.01, float("inf"), float("nan"), "abc", True])
def test_an_impossible_price_is_refused(price):
    with pytest.raises(ValueError):
        sms.cost(1, price, "USD", 1)


def test_plan_fields_have_the_contract_shape():
    counted = count("ç" * 71)
    assert sms.plan_fields(counted, sms.cost(counted, 0.02, "PHP", 10)) == {
        "encoding": "ucs-2",
        "segments": 2,
        "cost": {"per_message": 0.04, "total": 0.4, "currency": "PHP"},
    }
    assert sms.plan_fields(counted, None) == {"encoding": "ucs-2", "segments": 2, "cost": None}


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("36900.0000", "USD", "36,900.00 USD"),
        ("0.0369", "USD", "0.0369 USD"),
        ("1230", "JPY", "1,230 JPY"),
        ("0.5", "JPY", "0.5 JPY"),
        ("1.5", "KWD", "1.500 KWD"),
        ("0", "USD", "0.00 USD"),
        ("0.00000049", "USD", "0.00 USD"),
        ("0.1234567", "USD", "0.123457 USD"),
    ],
)
def test_format_money(amount, currency, shown):
    assert sms.format_money(Decimal(amount), currency) == shown


# --- the creative's text ----------------------------------------------------------------------


def test_example_text_renders_content_with_the_templates_examples():
    template = {"variables": {"first_name": {"example": "Maria"}, "points": {"example": 1200}}}
    creative = {"content": "Hi {{ user.first_name }}, {{ user.points }} pts{% if user.points > 1000 %} (gold){% endif %}"}
    assert sms.example_text(creative, template) == "Hi Maria, 1200 pts (gold)"
    assert sms.example_text({"content": "id {{ user.user_id }}"}, {}) == "id " + sms.EXAMPLE_USER_ID


@pytest.mark.parametrize(
    "creative",
    [{}, {"content": "{{ user.undeclared }}"}, {"content": "{% for x in y %}{% endfor %}"}, {"content": "{{ user.a | int }}"}],
    ids=["no content", "undeclared variable", "outside the language", "example over the value limit"],
)
def test_example_text_is_none_when_it_cannot_be_rendered(creative):
    assert sms.example_text(creative, {"variables": {"a": {"example": "x" * 5000}}}) is None


# --- properties --------------------------------------------------------------------------------

GSM_TEXT = st.text(alphabet=st.sampled_from(sorted(sms.gsm_septets())), max_size=700)
ANY_TEXT = st.text(max_size=400)  # hypothesis draws no lone surrogates


@given(GSM_TEXT)
def test_gsm_septets_are_the_codecs_bytes(text):
    counted = count(text)
    assert counted.encoding == "gsm-7" and counted.forcing == ()
    assert counted.units == len(text.encode("gsm03.38"))


@given(ANY_TEXT)
def test_ucs2_units_are_utf16_code_units(text):
    counted = count(text)
    if counted.encoding == "ucs-2":
        assert counted.units == len(text.encode("utf-16-le")) // 2
        assert counted.forcing and all(character in text for character in counted.forcing)
        assert len(set(counted.forcing)) == len(counted.forcing)


@given(ANY_TEXT)
def test_parts_rebuild_the_text_and_each_fits(text):
    counted = count(text)
    split = parts(text)
    assert "".join(split) == text and len(split) == counted.segments
    for part in split:
        # a part counted alone keeps the message's encoding when the message is UCS-2 ...
        units = len(part.encode("utf-16-le")) // 2 if counted.encoding == "ucs-2" else count(part).units
        assert units <= counted.per_segment


@given(st.sampled_from(["a", "€", "ç", EMOJI]), st.integers(0, 400), st.integers(0, 400))
def test_segments_are_monotone_in_length_for_one_encoding(character, shorter, extra):
    assert count(character * shorter).segments <= count(character * (shorter + extra)).segments


@given(ANY_TEXT, ANY_TEXT)
def test_appending_never_takes_segments_away(text, more):
    assert count(text).segments <= count(text + more).segments


@given(GSM_TEXT)
def test_gsm_segments_are_the_fewest_parts_that_hold_it(text):
    counted = count(text)
    if counted.units <= 160:
        assert counted.segments == 1
    else:
        assert counted.segments >= -(-counted.units // 153)  # never fewer than the septets allow
        assert counted.segments <= -(-counted.units // 152)  # at most one septet lost per part
