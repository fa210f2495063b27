"""Phone numbers: one canonical form to compare (E.164), one to write, every form to search.

LionDesk stores phones as free text and finds them by equality only (docs/vendors/liondesk-api.md
§7.2), so:
- we COMPARE numbers as E.164 (`normalize`);
- we WRITE one format (`display`): the national format "(808) 817-2382" for numbers of
  the configured region's country (what agents in that country read and type; for the
  default region "US" this covers every NANP number, Canada included), and the
  international format "+55 83 1234-1234" for every other number, so the country code
  is never lost;
- we SEARCH every textual form a number may already be stored under (`search_forms`).
Text that is not a phone number is kept as typed (stripped): a bad number is never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

_SEPARATORS = ("-", ".", " ", "")


def parse(phone: str, region: str) -> phonenumbers.PhoneNumber | None:
    """Parse `phone` (numbers without a country code belong to `region`); None unless it is a complete number."""
    try:
        number = phonenumbers.parse(phone, region)
    except NumberParseException:
        return None
    # IS_POSSIBLE_LOCAL_ONLY ("555-1234": no area code) is not a number we can dial or match.
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        return None
    return number


def normalize(phone: str | None, region: str) -> str | None:
    """Return the number in E.164 (";ext=N" appended when it has an extension), or None if it is not a phone number."""
    number = parse(phone, region) if phone else None
    if number is None:
        return None
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    # E.164 has no extension; keep it so two extensions of one office line stay different.
    return f"{e164};ext={number.extension}" if number.extension else e164


def display(phone: str | None, region: str) -> str | None:
    """Return the one format we write to LionDesk (see module docstring); other text comes back stripped."""
    if phone is None:
        return None
    number = parse(phone, region)
    if number is None:
        return phone.strip()
    home = number.country_code == phonenumbers.country_code_for_region(region)
    return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL if home else PhoneNumberFormat.INTERNATIONAL)


def _groups(number: phonenumbers.PhoneNumber) -> list[str]:
    """The digit groups of a number as its country writes them, without the country code."""
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    body = international.split(" ", 1)[1] if " " in international else phonenumbers.national_significant_number(number)
    groups = "".join(ch if ch.isdigit() else " " for ch in body).split()
    return groups or [phonenumbers.national_significant_number(number)]


def _bodies(groups: list[str]) -> list[tuple[str, str]]:
    """Spellings of a number without country code, each with the separator that joins it to a prefix."""
    bodies = [(sep.join(groups), sep) for sep in _SEPARATORS]
    if len(groups) > 1:
        rest = "-".join(groups[1:])
        # "(808) 817-2382" and "(808)817-2382": the parenthesised area code of the docs' examples.
        bodies += [(f"({groups[0]}) {rest}", ""), (f"({groups[0]}){rest}", "")]
    return bodies


def _forms_of(number: phonenumbers.PhoneNumber, region: str) -> list[str]:
    """Every spelling of one parsed number, with and without its country code."""
    code = str(number.country_code)
    home = number.country_code == phonenumbers.country_code_for_region(region)
    formats = [PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL]
    # Without its country code a number only means itself in its own country: a Brazilian
    # "8312341234" would otherwise find the American (831) 234-1234.
    formats += [PhoneNumberFormat.NATIONAL] if home else []
    forms = [phonenumbers.format_number(number, fmt) for fmt in formats]
    for body, sep in _bodies(_groups(number)):
        if home:
            forms.append(body)
        for prefix in (code, f"+{code}"):
            forms += [f"{prefix}{sep}{body}", f"{prefix} {body}"]
    return forms


def search_forms(phones: Iterable[str | None], region: str) -> list[str]:
    """Return every text under which any of `phones` may be stored in LionDesk, raw inputs included, no repeats."""
    forms: list[str] = []
    for phone in phones:
        if not phone or not phone.strip():
            continue
        forms += [phone, phone.strip()]
        number = parse(phone, region)
        if number is None:
            continue
        number.extension = None  # a stored "808-817-2382" is the same line as "808-817-2382 ext 12"
        forms += _forms_of(number, region)
    return list(dict.fromkeys(forms))
