"""Contact search criteria, `$or` queries and matching (bridge/translate/liondesk.py): pure functions."""

from urllib.parse import parse_qs, urlencode

from bridge import defaults
from bridge.translate.contact import email_search_forms
from bridge.translate.liondesk import (OR_PADDING_ID, best_match, contact_criteria, or_search_params,
                                       query_chars, search_groups, search_params, unasked)
from bridge.translate.phones import search_forms

REGION = "US"


def criteria_for(emails=("Kai.Lee@Example.com",), numbers=("808-634-1968",)):
    return contact_criteria(email_search_forms(list(emails)), list(numbers), REGION)


def test_criteria_are_the_emails_then_each_phone_field_with_every_form():
    email, mobile, home, office = criteria_for()
    assert email.field == "email" and email.forms == ("Kai.Lee@Example.com", "kai.lee@example.com")
    assert email.wanted == {"kai.lee@example.com"}
    assert [c.field for c in (mobile, home, office)] == ["mobile_phone", "home_phone", "office_phone"]
    forms = tuple(search_forms(["808-634-1968"], REGION))
    assert all(c.forms == forms and c.wanted == {"+18086341968"} for c in (mobile, home, office))


def test_a_lead_without_email_or_phone_has_no_criteria_and_one_without_phone_only_the_email():
    assert criteria_for(emails=(), numbers=()) == ()
    assert criteria_for(emails=(" ",), numbers=("", None)) == ()
    (only,) = criteria_for(numbers=())
    assert only.field == "email"


def test_a_criterion_matches_the_same_email_in_any_case_and_the_same_number_in_any_format():
    email, mobile, _, office = criteria_for()
    assert email.matches({"email": " KAI.LEE@example.COM "})
    assert not email.matches({"email": "kai.lee@example.org"}) and not email.matches({})
    assert office.matches({"office_phone": "+1 (808) 634.1968"})
    assert not office.matches({"mobile_phone": "808-634-1968"})  # another field
    assert not mobile.matches({"mobile_phone": "808-634-1969"})


def test_answers_is_what_an_honest_server_may_return_matches_is_the_same_person():
    (mobile,) = [c for c in contact_criteria([], ["808-817-2382 ext 12"], REGION) if c.field == "mobile_phone"]
    stored = {"id": 5, "mobile_phone": "808-817-2382"}  # found by a form without the extension
    assert mobile.answers(stored) and not mobile.matches(stored)
    (raw,) = [c for c in contact_criteria([], ["call after 5"], REGION) if c.field == "mobile_phone"]
    assert raw.answers({"mobile_phone": "call after 5"}) and not raw.matches({"mobile_phone": "call after 5"})
    assert not raw.answers({"mobile_phone": "808-634-1968"})


def test_search_params_inside_an_or_clause():
    assert search_params("email", ["a@x.com"], clause=0) == [("$or[0][email]", "a@x.com")]
    assert search_params("home_phone", ["1", "2"], clause=3) == [("$or[3][home_phone][$in]", "1"),
                                                                ("$or[3][home_phone][$in]", "2")]


def test_or_search_has_one_clause_per_criterion_and_the_anchor_last_between_ids_no_record_has():
    criteria = criteria_for()
    query = parse_qs(urlencode(or_search_params(criteria, 77)))
    assert query["$or[0][email][$in]"] == ["Kai.Lee@Example.com", "kai.lee@example.com"]
    for index, name in enumerate(("mobile_phone", "home_phone", "office_phone"), start=1):
        assert query[f"$or[{index}][{name}][$in]"] == list(criteria[index].forms)
    assert query["$or[4][id][$in]"] == [OR_PADDING_ID, "77", OR_PADDING_ID]
    assert len(query) == 5


def test_best_match_keeps_the_precedence_of_one_search_per_field():
    email, mobile, home, office = criteria_for()
    by_email = {"id": 9, "email": "kai.lee@example.com", "created_at": "2026-01-01T00:00:00.000Z"}
    by_mobile = {"id": 3, "mobile_phone": "(808) 634-1968", "created_at": "2020-01-01T00:00:00.000Z"}
    by_office_old = {"id": 4, "office_phone": "8086341968", "created_at": "2019-01-01T00:00:00.000Z"}
    by_office_older = {"id": 6, "office_phone": "808.634.1968", "created_at": "2018-01-01T00:00:00.000Z"}
    other = {"id": 1, "email": "someone@example.com", "created_at": "2000-01-01T00:00:00.000Z"}
    criteria = (email, mobile, home, office)
    everyone = [other, by_mobile, by_office_old, by_email, by_office_older]
    assert best_match(criteria, everyone) == (by_email, "email")  # e-mail first, though the newest
    assert best_match(criteria, [other, by_office_old, by_mobile]) == (by_mobile, "mobile_phone")
    assert best_match(criteria, [by_office_old, by_office_older, other]) == (by_office_older, "office_phone")
    assert best_match(criteria, [other]) == (None, None)
    assert best_match(criteria, []) == (None, None)


def test_unasked_contacts_are_those_no_clause_and_not_the_anchor_asked_for():
    criteria = criteria_for()
    anchor = {"id": 12, "email": "anchor@example.com"}
    asked = {"id": 13, "home_phone": "808 634 1968"}
    stray = {"id": 14, "email": "zed@example.com", "mobile_phone": "808-000-0000"}
    assert unasked(criteria, [anchor, asked], "12") == []
    assert unasked(criteria, [anchor, asked, stray], 12) == [stray]


def test_search_groups_share_an_or_while_the_query_fits_and_keep_the_order():
    criteria = criteria_for()
    assert search_groups(criteria, None, 100_000) == [(c,) for c in criteria]  # no anchor: one search each
    assert search_groups(criteria, "7", 100_000) == [criteria]
    whole = query_chars(or_search_params(criteria, "7"))
    assert whole < 6000  # one e-mail and one phone fit in the default budget
    two = query_chars(or_search_params(criteria[:2], "7"))
    assert search_groups(criteria, "7", two) == [criteria[:2], (criteria[2],), (criteria[3],)]
    assert search_groups(criteria, "7", 10) == [(c,) for c in criteria]  # nothing fits: each alone
    assert [c for group in search_groups(criteria, "7", whole - 1) for c in group] == list(criteria)


def test_two_phones_and_two_emails_take_three_searches_in_the_default_budget():
    criteria = criteria_for(emails=("a@example.com", "b@example.com"), numbers=("808-634-1968", "(415) 555-0101"))
    groups = search_groups(criteria, "123456", defaults.LIONDESK_SEARCH_QUERY_MAX_CHARS)
    assert [[c.field for c in group] for group in groups] == [["email", "mobile_phone"], ["home_phone"],
                                                            ["office_phone"]]
    assert all(query_chars(or_search_params(group, "123456")) <= defaults.LIONDESK_SEARCH_QUERY_MAX_CHARS
               for group in groups if len(group) > 1)

