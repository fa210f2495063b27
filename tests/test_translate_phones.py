"""Phones: one E.164 to compare, one display format to write, every stored form to search."""

import pytest

from bridge.translate.phones import display, normalize, search_forms

# One Honolulu number as people and systems write it; LionDesk's docs alone use three of these.
SAME_NUMBER = [
    "808-817-2382", "(808) 817-2382", "808.817.2382", "8088172382", "+18088172382", "18088172382",
    "1 (808) 817-2382", "1(808)817-2382", "+1 808-817-2382", "+1 (808) 817-2382", " 808 817 2382 ",
    "1-808-817-2382", "+1.808.817.2382",
]


@pytest.mark.parametrize("phone", SAME_NUMBER)
def test_every_spelling_of_a_number_normalizes_to_one_e164(phone):
    assert normalize(phone, "US") == "+18088172382"


@pytest.mark.parametrize("phone", SAME_NUMBER)
def test_every_spelling_is_written_in_one_national_format(phone):
    assert display(phone, "US") == "(808) 817-2382"


@pytest.mark.parametrize("phone", SAME_NUMBER)
def test_search_forms_of_any_spelling_find_every_other_spelling(phone):
    forms = search_forms([phone], "US")
    missing = [other.strip() for other in SAME_NUMBER if other.strip() not in forms]
    assert missing == []
    assert phone in forms  # the raw input itself, spaces and all


@pytest.mark.parametrize("phone, region, e164", [
    ("+44 20 7946 0958", "US", "+442079460958"),
    ("+55 83 91234-1234", "US", "+5583912341234"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("(604) 555-4572", "US", "+16045554572"),            # Canada shares +1 with the US
    ("808-817-2382 ext 12", "US", "+18088172382;ext=12"),
    ("808-817-2382 x 13", "US", "+18088172382;ext=13"),
])
def test_normalize_handles_countries_regions_and_extensions(phone, region, e164):
    assert normalize(phone, region) == e164


@pytest.mark.parametrize("text", ["call me", "555-1234", "12", "", None, "   "])
def test_text_that_is_not_a_complete_number_normalizes_to_none(text):
    assert normalize(text, "US") is None


@pytest.mark.parametrize("phone, region, shown", [
    ("+44 20 7946 0958", "US", "+44 20 7946 0958"),       # foreign: international, country code kept
    ("+1 808 817 2382", "GB", "+1 808-817-2382"),
    ("020 7946 0958", "GB", "020 7946 0958"),             # home country of the region: national
    ("604.555.4572", "US", "(604) 555-4572"),
    ("808-817-2382 ext 12", "US", "(808) 817-2382 ext. 12"),
    ("  call me after 5 ", "US", "call me after 5"),       # not a number: kept as typed, stripped
    ("", "US", ""),
    (None, "US", None),
])
def test_display_writes_national_at_home_and_international_abroad(phone, region, shown):
    assert display(phone, region) == shown


@pytest.mark.parametrize("phone", ["808-817-2382", "+44 20 7946 0958", "+55 83 91234-1234", "(604) 555-4572 ext 3"])
def test_no_search_form_names_a_different_number(phone):
    number = normalize(phone, "US").split(";")[0]
    forms = search_forms([phone], "US")
    assert forms  # the loop below judges real forms, never none
    for form in forms:
        found = normalize(form, "US")  # None: a spelling only a human reads, like "44 20 7946 0958"
        assert found is None or found.split(";")[0] == number, form


def test_foreign_numbers_get_no_bare_national_form_that_would_match_a_local_number():
    forms = search_forms(["+55 83 91234-1234"], "US")
    assert "83912341234" not in forms and "(83) 91234-1234" not in forms
    assert "+5583912341234" in forms and "+55 83 91234-1234" in forms


def test_search_forms_cover_all_phones_at_once_without_repeats():
    forms = search_forms(["808-817-2382", "(808) 817-2382", None, "", "+44 20 7946 0958", "call me"], "US")
    assert len(forms) == len(set(forms))
    assert {"+18088172382", "(808) 817-2382", "+442079460958", "+44 20 7946 0958", "call me"} <= set(forms)
    assert "" not in forms


def test_search_forms_of_a_number_with_extension_include_the_bare_line():
    forms = search_forms(["808-817-2382 ext 12"], "US")
    assert "808-817-2382 ext 12" in forms and "(808) 817-2382" in forms and "+18088172382" in forms


def test_display_output_is_one_of_the_search_forms():
    for phone in ("808-817-2382", "+44 20 7946 0958"):
        assert display(phone, "US") in search_forms([phone], "US")


@pytest.mark.parametrize("phone", ["808-817-2382", "808-817-2382 ext 12", "+44 20 7946 0958", "(604) 555-4572"])
def test_the_written_form_of_a_normalized_number_normalizes_back_to_it(phone):
    e164 = normalize(phone, "US")
    assert normalize(display(e164, "US"), "US") == e164
