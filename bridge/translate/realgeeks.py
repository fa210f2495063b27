"""marshmallow schemas for what Real Geeks sends: leads, activities, users, properties.

Four rules run through every schema here:
- unknown fields are kept, not rejected: Real Geeks adds fields without notice;
- an absent key stays absent and `""` (or null) means "cleared": the difference is
  carried through to LionDesk PATCH bodies (absent is not empty: never overwrite with nothing);
- timestamps keep their nanoseconds (`Instant.ns`) so deliveries order correctly;
- one unreadable value never costs the lead: `load_event` drops it (an activity that lacks
  its type, a user without id: the whole item) and lists it under `DROPPED`, so the rest
  syncs and the story says what was left out. Only a delivery without a usable lead id
  is rejected. Numbers are never truncated (`full_baths: 2.5` stays 2.5).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

CLEARED = ""
"""The value a field takes when Real Geeks says it was unset."""

_TIMESTAMP = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?$"
)

LEAD_ACTIONS = frozenset({"created", "updated", "unknown", "activity_added"})
"""Actions whose payload is a lead (or a lead id with activities)."""

POTENTIAL_SELLER = "Potential Seller"
"""The role of a potential seller (someone who tried a valuation without signing up)."""

_POTENTIAL_SELLER_ACTION = re.compile(r"potential[\s_-]*seller", re.IGNORECASE)
"""Real Geeks' older docs list "New Potential Seller Lead" as its own request type; its action string is
unpublished (docs/vendors/realgeeks-api.md §1.4), so any action naming a potential seller is one."""


def is_potential_seller_action(action: str | None) -> bool:
    """Whether an action string names Real Geeks' potential-seller request type."""
    return bool(action) and bool(_POTENTIAL_SELLER_ACTION.search(action))


def is_lead_action(action: str | None) -> bool:
    """Whether a delivery of this action carries a lead (including the potential-seller request type)."""
    return action in LEAD_ACTIONS or is_potential_seller_action(action)

USER_ACTIONS = frozenset({"user_updated"})
"""Actions whose payload describes a Real Geeks user."""

ROLES = ("Buyer", "Seller", "Buyer and Seller", "Renter", "Potential Seller")
"""Lead roles Real Geeks documents; other values are kept and mapped by default rules."""


@dataclass(frozen=True, order=True)
class Instant:
    """A Real Geeks timestamp: integer nanoseconds since the epoch, plus the text received."""

    ns: int
    text: str

    @property
    def datetime(self) -> datetime:
        """The instant as an aware datetime (microsecond precision)."""
        return datetime.fromtimestamp(self.ns // 1000 / 1_000_000, tz=timezone.utc)

    def __str__(self) -> str:
        return self.text


def parse_instant(text: str) -> Instant:
    """Parse an ISO 8601 timestamp with up to nine fractional digits; naive means UTC."""
    match = _TIMESTAMP.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    zone = match["zone"] or "Z"
    base = datetime.fromisoformat(match["base"].replace(" ", "T") + ("+00:00" if zone == "Z" else zone))
    fraction = (match["fraction"] or "").ljust(9, "0")
    return Instant(ns=int(base.timestamp()) * 1_000_000_000 + int(fraction), text=text)


def normalize_id(value: str) -> str:
    """Lowercase an id and drop its dashes, so both published forms find the same records."""
    return value.strip().replace("-", "").lower()


class Clearable:
    """Mixin: null and "" load as CLEARED before any type check or validator runs."""

    def deserialize(self, value, attr=None, data=None, **kwargs):
        if value is None or value == CLEARED:
            return CLEARED
        return super().deserialize(value, attr, data, **kwargs)


class Timestamp(Clearable, fields.Field):
    """An ISO 8601 timestamp kept to the nanosecond as an `Instant`."""

    default_error_messages = {"invalid": "Not a valid ISO 8601 timestamp."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return parse_instant(value)
        except ValueError:
            raise self.make_error("invalid") from None

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)


class Text(Clearable, fields.String):
    """A string field; numbers are accepted as text (Real Geeks sends zips both ways)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class ClearableEmail(Text):
    """An e-mail address, surrounding spaces dropped; "" means cleared."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Email(), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


class Identifier(fields.String):
    """A UUID-like id in either published form; loads as lowercase hex without dashes."""

    default_error_messages = {"invalid": "Not a valid id: expected a non-empty UUID-like string."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        text = normalize_id(super()._deserialize(value, attr, data, **kwargs))
        if not text:
            raise self.make_error("invalid")
        return text


class NumericText(Clearable, fields.Field):
    """A number Real Geeks sends as a string ("100500.90") or a number; kept as a string."""

    default_error_messages = {"invalid": "Not a valid number."}

    def _deserialize(self, value, attr, data, **kwargs):
        text = str(value).strip().replace(",", "").lstrip("$")
        try:
            float(text)
        except ValueError:
            raise self.make_error("invalid") from None
        return text


class Count(fields.Field):
    """A count (beds, baths, days): integers as integers, other numbers kept whole (2.5 stays 2.5), never truncated.

    Numeric strings ("3", "2.5") load as numbers; null stays null; anything else is invalid.
    """

    default_error_messages = {"invalid": "Not a valid number."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, str):
            try:
                value = float(value.strip().replace(",", "")) if value.strip() else None
            except ValueError:
                value = None
            if value is None:
                raise self.make_error("invalid")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value == value and abs(value) != float("inf"):
            return int(value) if value.is_integer() else value
        raise self.make_error("invalid")


class TagList(Clearable, fields.List):
    """A list of tags; "" and null mean the tags were unset (Real Geeks' v2 unset), read as no tags.

    One string of tags ("Beach, Condo") is read as the tags it lists rather than lost.
    """

    def __init__(self, **kwargs):
        super().__init__(fields.String(), **kwargs)

    def deserialize(self, value, attr=None, data=None, **kwargs):
        if isinstance(value, str) and value.strip():
            value = [tag.strip() for tag in value.split(",") if tag.strip()]
        loaded = super().deserialize(value, attr, data, **kwargs)
        return [] if loaded == CLEARED else loaded


class _Open(Schema):
    """Base schema that keeps fields it does not know."""

    class Meta:
        unknown = INCLUDE


class PropertySchema(_Open):
    """A property an activity is about (Real Geeks' Property object, same as LionDesk v1's)."""

    mls = Text()
    url = Text()
    street_address = Text()
    city = Text()
    state = Text()
    zip = Text()
    type = Text()
    sqft = Text()
    listing_status = Text()
    last_sold_date = Text()
    list_date = Text()
    beds = Count(allow_none=True)
    full_baths = Count(allow_none=True)
    half_baths = Count(allow_none=True)
    listing_days_on_market = Count(allow_none=True)
    year_built = Count(allow_none=True)
    listing_price = NumericText()
    estimated_value = NumericText()
    last_sold_price = NumericText()
    rent_price = NumericText()
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    images = fields.List(fields.String(), allow_none=True)
    tags = TagList()


class UserSchema(_Open):
    """A Real Geeks user (agent or lender), inside an activity or from the Users API."""

    id = Text(required=True, validate=validate.Length(min=1))
    role = Text()
    admin = fields.Boolean(allow_none=True)
    name = Text()
    email = ClearableEmail()
    signature = Text()
    phone_company = Text()
    phone_office = Text()
    phone_cell = Text()
    phone_home = Text()


class ActivitySchema(_Open):
    """One thing that happened to a lead (a visit, a search, an assignment, a note...)."""

    type = Text(required=True, validate=validate.Length(min=1))
    source = Text()
    description = Text()
    created = Timestamp()
    property = fields.Nested(PropertySchema, allow_none=True)
    user = fields.Nested(UserSchema, allow_none=True)
    notify_users = fields.Boolean(allow_none=True)
    metadata = fields.Dict(allow_none=True)


class LeadSchema(_Open):
    """A Real Geeks lead as the Outgoing API delivers it (also the activity_added envelope)."""

    id = Identifier(required=True)
    action = Text()
    source = Text()
    source_details = Text()
    source_system = Text()
    email = ClearableEmail()
    second_email = ClearableEmail()
    first_name = Text()
    last_name = Text()
    phone = Text()
    phone2 = Text()
    address = Text()
    street_address = Text()
    city = Text()
    state = Text()
    zip = Text()
    role = Text()
    region = Text()
    created = Timestamp()
    timeframe = Text()
    urgency = Text()
    status = Text()
    notes = Text()
    tags = TagList()
    activities = fields.List(fields.Nested(ActivitySchema), allow_none=True)
    partner_id = Text()
    site_uuid = Text()
    site_domain = Text()
    site_login_url = Text()
    agent_name = Text()
    agent_email = ClearableEmail()


class UserEventSchema(UserSchema):
    """The `user_updated` payload: a user object plus the Outgoing envelope fields."""

    action = Text()
    partner_id = Text()
    site_uuid = Text()


def schema_for(action: str) -> Schema | None:
    """Return the schema that validates a payload of `action`, or None for actions we ignore."""
    if is_lead_action(action):
        return _LEAD
    if action in USER_ACTIONS:
        return _USER_EVENT
    return None


DROPPED = "_dropped"
"""Key of a loaded payload listing what `load_event` left out as unreadable: "path: problem (got value)"."""

_MAX_PASSES = 8
"""Rounds of drop-and-reload before giving up (each round drops every value marshmallow named)."""


def load_event(action: str, payload: dict) -> dict:
    """Validate and load a delivery's payload, dropping unreadable values (listed under DROPPED).

    Raises marshmallow's ValidationError only when the delivery has no usable id (or is
    not an object): without it there is no lead to apply anything to.
    """
    schema = schema_for(action)
    if schema is None:
        raise ValidationError({"action": [f"unsupported action {action!r}"]})
    data, dropped = payload, []
    for _ in range(_MAX_PASSES):
        try:
            loaded = schema.load(data)
            break
        except ValidationError as exc:
            errors = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
            if "id" in errors or "_schema" in errors or not isinstance(data, dict):
                raise
            data = copy.deepcopy(data) if data is payload else data
            dropped += _drop(data, errors)
    else:
        raise ValidationError({"_schema": ["too many unreadable values"], DROPPED: dropped})
    if "id" in payload and is_lead_action(action):
        loaded["received_id"] = str(payload["id"]).strip()
    if is_potential_seller_action(action) and not loaded.get("role"):
        loaded["role"] = POTENTIAL_SELLER
    if dropped:
        loaded[DROPPED] = dropped
    return loaded


def _error_paths(errors, path=()) -> list[tuple[tuple, str]]:
    """Flatten marshmallow's nested error messages into (path, first message) pairs."""
    if isinstance(errors, dict):
        return [found for key, value in errors.items() for found in _error_paths(value, (*path, key))]
    messages = errors if isinstance(errors, list) else [errors]
    return [(path, str(messages[0]) if messages else "invalid")]


def _drop(data: dict, errors: dict) -> list[str]:
    """Remove every value `errors` names from `data` (in place); return a note for each.

    A value that is missing (a required field) takes its container with it: an activity
    without its type, a user without its id. List items go from the last to the first, so
    indexes stay right.
    """
    notes, removals = [], []
    for path, message in _error_paths(errors):
        if path and path[-1] == "_schema":
            path = path[:-1]  # the item itself is not an object
        container, key = _walk(data, path)
        if container is None:
            continue
        if not _holds(container, key):  # missing required value: drop what should have held it
            parent, parent_key = _walk(data, path[:-1])
            if parent is None or not path[:-1]:
                continue
            notes.append(f"{_dotted(path[:-1])}: dropped, it has no {_dotted(path[-1:])} ({message.rstrip('.')})")
            removals.append((path[:-1], parent, parent_key))
            continue
        notes.append(f"{_dotted(path)}: {message.rstrip('.')} (got {container[key]!r}); dropped")
        removals.append((path, container, key))
    for _, container, key in sorted(removals, key=lambda item: [str(part).zfill(12) for part in item[0]],
                                    reverse=True):
        if _holds(container, key):
            del container[key]
    return notes


def _walk(data, path: tuple):
    """The container holding the value at `path` and the value's key, or (None, None) when the path is gone."""
    container = data
    for part in path[:-1]:
        if not _holds(container, part):
            return None, None
        container = container[part]
    if not path or not isinstance(container, (dict, list)):
        return None, None
    return container, path[-1]


def _holds(container, key) -> bool:
    """Whether a dict or list has `key`."""
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container)


def _dotted(path) -> str:
    """A path as `activities[0].property.beds`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_LEAD = LeadSchema()
_USER_EVENT = UserEventSchema()
