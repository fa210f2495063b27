"""marshmallow schemas for what the bridge SENDS to LionDesk: contact, address, lead, task, v1 calls.

Every outgoing body passes `checked` before it leaves the translation layer: an unknown
key (a typo like `spouce_email`) or a value over a documented limit is a bug in the
bridge, not in the lead, and stops here as a `TranslationError` instead of reaching
LionDesk. Absent keys stay absent through `dump`, so PATCH bodies keep their meaning.

Section numbers (§) refer to docs/vendors/liondesk-api.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

from marshmallow import Schema, fields, validate

from bridge import defaults
from bridge.exceptions import TranslationError
from bridge.translate import limits, phones
from bridge.translate.realgeeks import Instant
from bridge.translate.text import folded

ADDRESS_TYPES = ("Home", "Main Office", "Branch Office", "Second Home", "Investment", "Mailing")
"""Address `type` values LionDesk documents (docs/vendors/liondesk-api.md §4.2)."""

TASK_STATUSES = ("complete", "incomplete", "deleted")
"""Task `status` values LionDesk documents (§4.14)."""

TASK_ACTION_TYPES = (
    "None", "Email Contact", "Call Contact", "Text Contact",
    "Agent Task - Email Reminder", "Agent Task - Call Reminder", "Agent Task - Text Reminder",
    "Agent Task - No Reminder", "BombBomb Video Email",
)
"""Task `action_type` values LionDesk documents by name (§4.14; direct-mail variants are not spelled out there)."""

V1_ACTIVITY_TYPES = (
    "visit", "user_login", "search_performed", "saved_search_added", "saved_search_removed",
    "property_viewed", "favorite_property_added", "favorite_property_removed",
)
"""Activity `type` values v1 NewActivity accepts (§8.2)."""

V1_COMMENT_STANDARD = 1
"""v1 NewComment `type` of a standard comment (5 and 8 are texts sent and received, §8.2)."""


def _is_id(value) -> bool:
    """Whether `value` looks like a LionDesk id: ids come back as numbers or digit strings (§7.4)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.isdigit())


def _text(limit: int | None = None, **kwargs) -> fields.String:
    """A string field, limited to `limit` characters when LionDesk documents a limit."""
    return fields.String(validate=validate.Length(max=limit) if limit else None, **kwargs)


def _id(**kwargs) -> fields.Raw:
    """A LionDesk id; null is allowed where it detaches (`hotness_id`, `source_id`, `assigned_user_id`)."""
    return fields.Raw(validate=_is_id, **kwargs)


class ContactBodySchema(Schema):
    """A POST or PATCH body for /contacts (§4.1); `null` ids detach, `""` texts clear."""

    first_name = _text(limits.CONTACT["first_name"])
    last_name = _text(limits.CONTACT["last_name"])
    email = _text(limits.CONTACT["email"])
    mobile_phone = _text(limits.CONTACT["mobile_phone"])
    home_phone = _text(limits.CONTACT["home_phone"])
    office_phone = _text(limits.CONTACT["office_phone"])
    tags = _text(limits.CONTACT_TAGS)
    hotness_id = _id(allow_none=True)
    source_id = _id(allow_none=True)
    assigned_user_id = _id(allow_none=True)
    custom_fields = fields.List(fields.Dict(), validate=lambda values: all(
        set(v) == {"id", "value"} and isinstance(v["value"], str) for v in values))


class AddressSchema(Schema):
    """A POST or PATCH body for /contacts/{id}/addresses (§4.2); `state` spelled out."""

    type = fields.String(validate=validate.OneOf(ADDRESS_TYPES))
    street_address_1 = _text(limits.ADDRESS["street_address_1"])
    street_address_2 = _text(limits.ADDRESS["street_address_2"])
    zip = _text(limits.ADDRESS["zip"])
    city = _text(limits.ADDRESS["city"])
    state = _text(limits.ADDRESS["state"])


class LeadBodySchema(Schema):
    """A POST body for /leads (§4.7); `state` abbreviated, `zipcode` and `mls_id` as text or number.

    LionDesk's example sends `zipcode` and `mls_id` as numbers; `with_numbers` does so where
    that loses nothing, and text stays text (a zip's leading zero, MLS ids with letters).
    """

    contact_id = _id(required=True)
    source_id = _id()
    text_body = fields.String()
    html_body = fields.String()
    mls_id = fields.Raw(validate=lambda v: isinstance(v, (str, int)) and not isinstance(v, bool))
    listing_status = fields.String()
    listing_price = fields.String()
    street_address = fields.String()
    city = fields.String()
    state = fields.String()
    zipcode = fields.Raw(validate=lambda v: isinstance(v, (str, int)) and not isinstance(v, bool))
    type = fields.String()


CUSTOM_FIELD_SOURCES = ("timeframe", "region", "source_details", "estimated_value")
"""The Real Geeks fields the rules may map to LionDesk custom fields (`[custom_fields]`)."""


def custom_field_values(lead: dict, rules: dict, field_ids: dict) -> tuple[list[dict], list[str]]:
    """The `custom_fields` of a contact body for the lead's mapped fields, and notes for names LionDesk lacks.

    `field_ids` maps a custom field's name (casefolded) to its id (`GET /custom-fields`, §4.3).
    `estimated_value` comes from the latest activity naming a property with one.
    """
    values, notes = [], []
    for source, name in (rules.get("custom_fields") or {}).items():
        if not name:
            continue
        value = lead.get(source) if source != "estimated_value" else _estimated_value(lead)
        if value in (None, ""):
            continue
        field_id = field_ids.get(folded(name))
        if field_id is None:
            notes.append(f"LionDesk has no custom field named {name!r}; {source} not written there")
            continue
        values.append({"id": field_id, "value": str(value).strip()})
    return values, notes


def _estimated_value(lead: dict):
    """The estimated value of the property of the lead's latest activity that has one, or None."""
    priced = [act for act in lead.get("activities") or () if (act.get("property") or {}).get("estimated_value")]
    return priced[-1]["property"]["estimated_value"] if priced else None


NUMERIC_LEAD_FIELDS = ("mls_id", "zipcode")
"""Lead fields LionDesk's example sends as numbers (§4.7, §10); their column types are unknown."""

LEAD_REQUIRED_FIELDS = frozenset({"contact_id"})
"""The only lead field LionDesk requires: any other it refuses can be left out (§4.7)."""


def with_numbers(body: dict) -> dict:
    """The lead body with numeric-looking `mls_id` / `zipcode` as numbers, as LionDesk's example sends them.

    Numeric-looking means digits without a leading zero: "98112" → 98112, while "02134" (a zip
    whose zero a number would lose) and "A1234" (Real Geeks MLS numbers can hold letters) stay text.
    """
    numbered = dict(body)
    for name in NUMERIC_LEAD_FIELDS:
        value = numbered.get(name)
        if isinstance(value, str) and value.isdigit() and value.isascii() and not value.startswith("0"):
            numbered[name] = int(value)
    return numbered


class TaskBodySchema(Schema):
    """A POST body for v2 /tasks (§4.14)."""

    contact_id = _id(required=True)
    action_type = fields.String(required=True, validate=validate.OneOf(TASK_ACTION_TYPES))
    assigned_user_id = _id()
    due_at = fields.String()
    description = fields.String(required=True, validate=validate.Length(min=1, max=limits.TASK["description"]))
    status = fields.String(required=True, validate=validate.OneOf(TASK_STATUSES))
    notes = _text(limits.TASK["notes"])


TASK_V20_DEFAULT_ACTION_TYPE = "Agent Task - No Reminder"
"""The v2.0 `action_type` of a task that reminds nobody (the rules' default too)."""

TASK_V21_NO_REMINDER = 0
"""Tasks v2.1 `reminder_type` 0: "No reminder will be sent" (endpoints/tasks-v21)."""

TASK_V21_UPDATE_STATUS_ONLY = 3
"""Tasks v2.1 `update_type` 3: "Updates ONLY the status field" (endpoints/tasks-v21)."""


class TaskV21BodySchema(Schema):
    """A POST body for Tasks v2.1 (§4.14, endpoints/tasks-v21): `assigned_user_id` and `due_at` are required there.

    The page lists `contact_id`, `assigned_user_id`, `due_at`, `recurrence_rule`, `is_all_day`
    and numeric reminder codes; the text and status fields are taken to be named as in v2.0
    (inferred: the rest of the page's table is not in our copy).
    """

    contact_id = _id(required=True)
    assigned_user_id = _id(required=True)
    due_at = fields.String(required=True)
    is_all_day = fields.Boolean(required=True)
    reminder_type = fields.Integer(required=True, strict=True)
    description = fields.String(required=True, validate=validate.Length(min=1, max=limits.TASK["description"]))
    status = fields.String(required=True, validate=validate.OneOf(TASK_STATUSES))


def task_text(title: str, description: str | None) -> str:
    """The one text a LionDesk task carries: the title on the first line, the details below, at most 2000 characters.

    Neither task version has a title field, so the title leads the description (what
    agents see in their task list); a description that already starts with it is kept as is.
    """
    title = " ".join(str(title or "").split())[:defaults.LIONDESK_TASK_TITLE_CHARS]
    details = str(description or "").strip()
    text = details if details.startswith(title) else "\n".join(part for part in (title, details) if part)
    return (text or "Real Geeks")[:limits.TASK["description"]]


def task_v21_body(contact_id, *, text: str, due_at: str, assigned_user_id, completed: bool) -> dict:
    """A checked Tasks v2.1 body: a single (non-recurring) task without reminder."""
    body = {"contact_id": contact_id, "assigned_user_id": assigned_user_id, "due_at": due_at, "is_all_day": False,
            "reminder_type": TASK_V21_NO_REMINDER, "description": text,
            "status": "complete" if completed else "incomplete"}
    return checked(TASK_V21_BODY, body)


def task_v20_body(contact_id, *, text: str, due_at: str, assigned_user_id, completed: bool, action_type: str) -> dict:
    """A checked v2.0 /tasks body (the fallback channel); `assigned_user_id` is optional there."""
    body = {"contact_id": contact_id, "action_type": action_type, "due_at": due_at, "description": text,
            "status": "complete" if completed else "incomplete"}
    if assigned_user_id is not None:
        body["assigned_user_id"] = assigned_user_id
    return checked(TASK_BODY, body)


class V1PropertySchema(Schema):
    """The v1 PROPERTY object (§8.2), which is also Real Geeks' Property shape."""

    mls = fields.String()
    url = fields.String()
    street_address = fields.String()
    city = fields.String()
    state = fields.String()
    zip = fields.String()
    type = fields.String()
    sqft = fields.String()
    listing_status = fields.String()
    last_sold_date = fields.String()
    list_date = fields.String()
    beds = fields.Integer(strict=True)
    full_baths = fields.Integer(strict=True)
    half_baths = fields.Integer(strict=True)
    listing_days_on_market = fields.Integer(strict=True)
    year_built = fields.Integer(strict=True)
    listing_price = fields.String()
    estimated_value = fields.String()
    last_sold_price = fields.String()
    latitude = fields.Float()
    longitude = fields.Float()
    images = fields.List(fields.String())


V1_PROPERTY_FIELDS = tuple(V1PropertySchema().fields)
V1_INTEGER_FIELDS = frozenset(name for name, item in V1PropertySchema().fields.items() if isinstance(item, fields.Integer))
"""v1 PROPERTY fields that must be integers."""
"""Names of the fields the v1 PROPERTY object carries."""


class V1ActivitySchema(Schema):
    """A v1 NewActivity call (§8.2); `liondeskcontactid` or `contactid` names the contact."""

    action = fields.String(required=True, validate=validate.Equal("NewActivity"))
    contactid = _text(limits.V1_ACTIVITY["contactid"])
    liondeskcontactid = _id()
    siteid = _text(limits.V1_ACTIVITY["siteid"])
    sitedomain = _text(limits.V1_ACTIVITY["sitedomain"])
    description = _text(limits.V1_ACTIVITY["description"])
    type = fields.String(required=True, validate=validate.OneOf(V1_ACTIVITY_TYPES))
    created = fields.String()
    property = fields.Nested(V1PropertySchema)


class V1CommentSchema(Schema):
    """A v1 NewComment call (§8.2)."""

    action = fields.String(required=True, validate=validate.Equal("NewComment"))
    contactid = _text(limits.V1_COMMENT["contactid"])
    liondeskcontactid = _id()
    description = _text(limits.V1_COMMENT["description"])
    type = fields.Integer(required=True, strict=True, validate=validate.OneOf((1, 5, 8)))


CONTACT_BODY = ContactBodySchema()
ADDRESS = AddressSchema()
LEAD_BODY = LeadBodySchema()
TASK_BODY = TaskBodySchema()
TASK_V21_BODY = TaskV21BodySchema()
V1_ACTIVITY = V1ActivitySchema()
V1_COMMENT = V1CommentSchema()


def checked(schema: Schema, body: dict) -> dict:
    """Validate an outgoing body against its schema and return it dumped; raise TranslationError if it is malformed."""
    errors = schema.validate(body)
    if errors:
        raise TranslationError(type(schema).__name__, errors)
    return schema.dump(body)


def liondesk_time(instant: Instant) -> str:
    """Format an instant the way LionDesk writes times ("2018-01-09T12:24:09.000Z")."""
    moment = instant.datetime
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def v1_time(instant: Instant) -> str:
    """Format an instant for v1 `created` (ISO 8601 with offset, whole seconds, as in §8.2's example)."""
    return instant.datetime.isoformat(timespec="seconds")


# -- contact search (GET /contacts) ------------------------------------------------------------

PHONE_SEARCH_FIELDS = ("mobile_phone", "home_phone", "office_phone")
"""The contact phone fields LionDesk names as dedupe keys (§4.1, §10): all searched and matched alike."""

OR_PADDING_ID = "0"
"""An id no LionDesk record has (MySQL ids start at 1): surrounds the anchor in an `$or` search's last clause."""


@dataclass(frozen=True)
class SearchCriterion:
    """One way a LionDesk contact can be the lead's: `field` holding one of `forms` (what is sent),
    compared as the bridge compares it (`wanted`: folded e-mails, or E.164 phones of `region`)."""

    field: str
    forms: tuple[str, ...]
    wanted: frozenset[str]
    region: str = ""

    def matches(self, contact: dict) -> bool:
        """Whether `contact` is the lead's by this criterion: the same e-mail (any case), or the same phone number."""
        stored = contact.get(self.field)
        if self.field == "email":
            return folded(stored) in self.wanted
        return phones.normalize(str(stored or ""), self.region) in self.wanted

    def answers(self, contact: dict) -> bool:
        """Whether a search honouring this criterion could return `contact`: it matches, or its field holds one
        of the forms as MySQL compares text (case and trailing spaces aside). A contact found by a raw
        form, or by a number whose extension differs, answers the search without being the lead's."""
        return self.matches(contact) or folded(contact.get(self.field)) in {folded(form) for form in self.forms}


def contact_criteria(email_forms: Iterable[str], numbers: Iterable[str | None], region: str) -> tuple[SearchCriterion, ...]:
    """What a lead's contact is searched by, in order of precedence: its e-mails (every form in
    `email_forms`), then every form of its phone numbers on `mobile_phone`, `home_phone`, `office_phone`."""
    criteria = []
    email_forms = tuple(email_forms)
    if email_forms:
        criteria.append(SearchCriterion("email", email_forms, frozenset(folded(form) for form in email_forms)))
    numbers = [number for number in numbers if number]
    phone_forms = tuple(phones.search_forms(numbers, region))
    if phone_forms:
        wanted = frozenset({phones.normalize(number, region) for number in numbers} - {None})
        criteria.extend(SearchCriterion(name, phone_forms, wanted, region) for name in PHONE_SEARCH_FIELDS)
    return tuple(criteria)


def search_params(field_name: str, values: Iterable[str], *, clause: int | None = None) -> list[tuple[str, str]]:
    """Query pairs finding `field_name` equal to any of `values`: equality for one value, repeated `$in` keys for several.

    One value goes as plain equality: a Feathers parser may read a lone `field[$in]=x` as a
    string rather than a list (§10), and equality means the same thing. With `clause`, the
    pairs are that clause of an `$or` (`$or[2][home_phone][$in]=...`, the REST form of Feathers' querying).
    """
    values = list(values)
    key = field_name if clause is None else f"$or[{clause}][{field_name}]"
    if len(values) == 1:
        return [(key, values[0])]
    return [(f"{key}[$in]", value) for value in values]


def criterion_params(criterion: SearchCriterion) -> list[tuple[str, str]]:
    """The query pairs of a search by one criterion alone."""
    return search_params(criterion.field, criterion.forms)


def or_search_params(criteria: Iterable[SearchCriterion], anchor_id) -> list[tuple[str, str]]:
    """The query pairs of one search by every criterion at once (Feathers `$or`), with an anchor clause last.

    The last clause asks for the contact `anchor_id`, one LionDesk is known to hold: a server
    that honours `$or` must answer it, so its absence proves the answer cannot be trusted (an
    empty answer proves nothing by itself). It is an `$in` list like the phone clauses, with
    the anchor between two ids no record has, so a server that drops later clauses, reads
    operators inside `$or` as text, or keeps only the first or last value of a list loses the
    anchor too.
    """
    criteria = list(criteria)
    pairs = [pair for index, criterion in enumerate(criteria)
             for pair in search_params(criterion.field, criterion.forms, clause=index)]
    return pairs + search_params("id", [OR_PADDING_ID, str(anchor_id), OR_PADDING_ID], clause=len(criteria))


def query_chars(pairs: list[tuple[str, str]]) -> int:
    """The length of a query string as the HTTP client encodes it (`urlencode`, as requests does)."""
    return len(urlencode(pairs))


def search_groups(criteria: Iterable[SearchCriterion], anchor_id, max_chars: int) -> list[tuple[SearchCriterion, ...]]:
    """The criteria in the searches that find them, in precedence order: consecutive criteria share one
    `$or` search as long as its query string stays within `max_chars`; without an anchor (or when
    `$or` is not to be tried) each criterion is a search of its own. Searching the groups in order,
    stopping at the first that matches, gives the same contact as searching each criterion in turn."""
    groups: list[list[SearchCriterion]] = []
    for criterion in criteria:
        if groups and anchor_id is not None and \
                query_chars(or_search_params([*groups[-1], criterion], anchor_id)) <= max_chars:
            groups[-1].append(criterion)
        else:
            groups.append([criterion])
    return [tuple(group) for group in groups]


def oldest_contact(contacts: Iterable[dict]) -> dict:
    """The earliest-created of several matching contacts (the one agents have worked longest)."""
    return min(contacts, key=lambda c: (str(c.get("created_at") or ""), int(c.get("id") or 0)))


def best_match(criteria: Iterable[SearchCriterion], contacts: list[dict]) -> tuple[dict | None, str | None]:
    """The lead's contact among `contacts` and the field it matched by: the first criterion any contact
    matches wins (e-mail, then each phone field), and the oldest of the contacts it matches."""
    for criterion in criteria:
        found = [contact for contact in contacts if criterion.matches(contact)]
        if found:
            return oldest_contact(found), criterion.field
    return None, None


def unasked(criteria: Iterable[SearchCriterion], contacts: Iterable[dict], anchor_id) -> list[dict]:
    """The contacts of an `$or` answer that no clause asked for: neither the anchor nor an answer to any
    criterion. Any such contact means LionDesk did not apply the `$or` (it answered unfiltered)."""
    criteria = list(criteria)
    return [contact for contact in contacts if str(contact.get("id")) != str(anchor_id)
            and not any(criterion.answers(contact) for criterion in criteria)]
