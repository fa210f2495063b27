"""LionDesk v2 records: field validation (limits as documented), read shapes, and the
rules that tie records together (routes, offers, enrolments). No HTTP here.

Unknown body keys are ignored, as LionDesk appears to do (docs/vendors/liondesk-api.md §3.3, inferred).
Validation failures raise ApiError(400) whose `errors` name each offending field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from bridge.sandbox.errors import ApiError, bad_request
from bridge.sandbox.query import Collation, QueryError, parse_timestamp
from bridge.sandbox.state import SandboxState, liondesk_time

PHONE_FIELDS = frozenset({"mobile_phone", "home_phone", "office_phone", "fax", "spouse_phone"})
CONTACT_COLLATION = Collation(exact_fields=PHONE_FIELDS)
"""Phones compare as exact strings; other text case-insensitively (see bridge.sandbox.query)."""

ADDRESS_TYPES = ("Home", "Main Office", "Branch Office", "Second Home", "Investment", "Mailing")
CLAIMED_VIA = ("None", "Email", "Text", "Phone", "Assigned", "Auto")
DISTRIBUTION_TARGETS = ("Myself", "Team Rollout")
TEAM_SELECTION_METHODS = ("None", "Specific Team", "Zipcode")
TASK_STATUSES = ("complete", "incomplete", "deleted")


class Reference(fields.Integer):
    """A record id, sent as a number or a digit string; 0 means "none" (as LionDesk documents)."""

    def __init__(self, **kwargs):
        super().__init__(allow_none=not kwargs.get("required", False), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        number = super()._deserialize(value, attr, data, **kwargs)
        return number or None


class Timestamp(fields.Field):
    """An ISO 8601 date or date-time, stored the way a MySQL DATETIME returns it."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value is None:
            return None
        try:
            return liondesk_time(parse_timestamp(str(value)).timestamp())
        except QueryError:
            raise ValidationError("Not a valid ISO 8601 date-time.") from None


def text(limit: int | None = None, *, required: bool = False, choices=None) -> fields.String:
    """A text column: optional and nullable unless required, with a length limit or a value list."""
    validators = []
    if limit:
        validators.append(validate.Length(max=limit, error=f"must be at most {limit} characters"))
    if choices:
        validators.append(validate.OneOf(choices))
    return fields.String(required=required, allow_none=not required, validate=validators)


class _Body(Schema):
    class Meta:
        unknown = EXCLUDE


class ContactSchema(_Body):
    """Contact fields and limits (docs/vendors/liondesk-api.md §4.1, docs/vendors/seeds/003); no field is required."""

    first_name, last_name, email, mobile_phone = text(255), text(255), text(255), text(255)
    home_phone, office_phone, fax, company = text(45), text(45), text(45), text(45)
    birthday, anniversary, spouse_name, spouse_email = text(45), text(45), text(45), text(45)
    spouse_phone, spouse_birthday = text(), text()
    tags = text(508)
    created_at, modified_at = Timestamp(), Timestamp()
    assigned_user_id, hotness_id, source_id = Reference(), Reference(), Reference()
    custom_fields = fields.List(fields.Dict(), allow_none=True)


class CustomFieldSchema(_Body):
    """A custom field definition (endpoints/contacts/custom-fields): a name of at most 255, a data type, a rank."""

    name = text(255, required=True)
    data_type = text(choices=("Text", "Number", "Date", "Dollar Amt"))
    rank = fields.Integer(allow_none=True)


class AddressSchema(_Body):
    """Address fields and limits (docs/vendors/liondesk-api.md §4.2)."""

    type = text(choices=ADDRESS_TYPES)
    street_address_1, street_address_2, zip = text(45), text(45), text(45)
    city, state = text(200), text(200)


class ContactSourceSchema(_Body):
    """A contact source: a name of at most 200 characters."""

    name = text(200, required=True)


class LeadSchema(_Body):
    """Lead fields (docs/vendors/liondesk-api.md §4.7); only contact_id is required."""

    contact_id = Reference(required=True)
    source_id = Reference()
    claimed_via = text(choices=CLAIMED_VIA)
    text_body, html_body = text(), text()
    mls_id, listing_price, zipcode = fields.Raw(allow_none=True), fields.Raw(allow_none=True), fields.Raw(allow_none=True)
    listing_status, street_address, city, state, type = text(), text(), text(), text(), text()


class LeadRouteSchema(_Body):
    """Lead route fields (docs/vendors/liondesk-api.md §4.9, docs/vendors/seeds/001)."""

    team_id = Reference()
    # The route page marks all three required, but offers need "a lead route created for a
    # specific lead source and/or contact source" (endpoints/lead-offers): one of the two suffices.
    campaign_id, lead_source_id, contact_source_id = Reference(required=True), Reference(), Reference()
    distribution_target = text(required=True, choices=DISTRIBUTION_TARGETS)
    team_selection_method = text(choices=TEAM_SELECTION_METHODS)
    filter = text(255)


class CampaignSchema(_Body):
    """A campaign: a required, unique name."""

    name = text(255, required=True)
    is_broker_sharing_on = fields.Boolean(allow_none=True)


class CampaignContactSchema(_Body):
    """Enrolling a contact in a campaign."""

    contact_id = Reference(required=True)


class TaskV21Schema(_Body):
    """Tasks v2.1 fields (endpoints/tasks-v21): `assigned_user_id` and `due_at` are required there."""

    contact_id = Reference()
    assigned_user_id = Reference(required=True)
    due_at = Timestamp(required=True)
    recurrence_rule = text()
    is_all_day = fields.Boolean(allow_none=True)
    reminder_type = fields.Integer(allow_none=True, validate=validate.OneOf((0, 1, 2, 3, 4)))
    description = text(2000, required=True)
    status = text(required=True, choices=TASK_STATUSES)
    notes = text(2000)
    update_type = fields.Integer(allow_none=True, validate=validate.OneOf((1, 2, 3)))


class TaskSchema(_Body):
    """Task fields (docs/vendors/liondesk-api.md §4.14); action_type (alias reminder_type) is checked after loading."""

    contact_id, assigned_user_id = Reference(), Reference()
    action_type, reminder_type = text(), text()
    due_at, created_at, modified_at = Timestamp(), Timestamp(), Timestamp()
    description = text(2000, required=True)
    status = text(required=True, choices=TASK_STATUSES)
    notes = text(2000)


CONTACT_FIELDS = tuple(name for name in ContactSchema().fields if name != "custom_fields")
ADDRESS_FIELDS = tuple(AddressSchema().fields)
LEAD_FIELDS = tuple(LeadSchema().fields)
TASK_FIELDS = tuple(TaskSchema().fields)

COLUMNS = {
    "contacts": ("id", "owner_user_id", *CONTACT_FIELDS),
    "addresses": ("id", *ADDRESS_FIELDS, "created_at", "modified_at"),
    "contact_sources": ("id", "name", "user_id", "created_at"),
    "lead_sources": ("id", "name"),
    "hotnesses": ("id", "name", "rank", "color", "user_id"),
    "leads": ("id", *LEAD_FIELDS, "claimed_by_user_id", "claimed_at", "time_to_claim",
              "created_at", "modified_at"),
    "lead_routes": ("id", "user_id", *LeadRouteSchema().fields),
    "campaigns": ("id", "name", "user_id", "created_at", "modified_at", "is_broker_sharing_on", "is_default",
                  "is_shared_by_broker"),
    "campaign_contacts": ("id", "campaign_id", "contact_id", "created_at"),
    "users": ("id", "first_name", "last_name", "email", "username", "phone", "system_phone", "timezone_offset",
              "timezone", "profile_picture", "is_active", "created_at", "modified_at"),
    "teams": ("id", "name", "user_id", "is_contact_resource_sharing_enabled", "order_method",
              "mins_until_next_alert", "distribution_zipcodes"),
    "distribution_options": ("id", "team_id", "user_id", "assign_automatically", "rank", "mins_until_lead_offer",
                             "has_call_alert", "has_text_alert", "has_email_alert"),
    "tasks": ("id", "owner_user_id", "campaign_contact_id", "completed_at", "is_all_day", "is_important",
              "is_public", "category", "folder", "channel", *TASK_FIELDS),
    "team_members": ("id", "request_status", "team_id", "user_id"),
    "custom_fields": ("id", "user_id", "name", "rank", "data_type"),
    "sub_accounts": ("id", "user_id"),
    "campaign_communications": ("id", "campaign_id", "campaign_name", "campaign_contact_id", "contact_id",
                                "type", "status", "scheduled_at"),
    "offers": ("id", "lead_id", "team_id", "user_id", "status"),
    "offers_view": ("id", "rank", "status", "notify_at"),
}
"""The columns each resource can be filtered and sorted on."""


def load(schema: Schema, body: dict, *, partial: bool = False) -> dict:
    """Validate a request body; a failure becomes a 400 naming every offending field."""
    try:
        return schema.load(body, partial=partial)
    except ValidationError as exc:
        errors = {field: "; ".join(m if isinstance(m, str) else str(m) for m in messages)
                  if isinstance(messages, list) else str(messages)
                  for field, messages in exc.messages.items()}
        details = ", ".join(f"{field} {message}" for field, message in errors.items())
        raise ApiError(400, f"Validation failed: {details}", errors) from None


def check_references(values: dict, tables: dict) -> None:
    """Refuse ids that name no record: `tables` maps a field to the Table it points into."""
    for field, table in tables.items():
        if values.get(field) is not None and table.get(values[field]) is None:
            raise bad_request(f"{field} {values[field]} does not exist", **{field: "does not exist"})


def require_existing(table, key, what: str) -> dict:
    """The record `key` of `table`, or a 404."""
    record = table.get(key)
    if record is None:
        raise ApiError(404, f"No record found for id '{key}'", {"id": f"no {what} {key}"})
    return record


# ---- contacts and addresses -------------------------------------------------------------

def contact_references(state: SandboxState) -> dict:
    """The tables a contact's ids point into."""
    return {"assigned_user_id": state.users, "hotness_id": state.hotnesses, "source_id": state.contact_sources}


def check_assignable(state: SandboxState, values: dict, owner_user_id: int = 1) -> None:
    """Refuse an `assigned_user_id` who is neither the submitter nor an accepted member of one of
    the submitter's teams ("Assigned user must belong to one of your teams/groups", endpoints/contacts)."""
    user_id = values.get("assigned_user_id")
    if user_id is None or user_id == owner_user_id or state.users.get(user_id) is None:
        return
    own_teams = {t["id"] for t in state.teams if t["user_id"] == owner_user_id} | {
        m["team_id"] for m in state.team_members if m["user_id"] == owner_user_id and m["request_status"] == "Accepted"}
    if not any(m["user_id"] == user_id and m["team_id"] in own_teams and m["request_status"] == "Accepted"
               for m in state.team_members):
        raise bad_request(f"assigned_user_id {user_id} does not belong to one of your teams",
                          assigned_user_id="must belong to one of your teams/groups")


def team_member_view(state: SandboxState, member: dict) -> dict:
    """A team membership as /team-members returns it: nested team and user (endpoints/team-members)."""
    team, user = state.teams.get(member["team_id"]), state.users.get(member["user_id"])
    return {"id": member["id"], "request_status": member["request_status"],
            "team": {"id": team["id"], "name": team["name"]} if team else None,
            "user": {k: user.get(k) for k in ("id", "first_name", "last_name", "email", "username", "phone")}
            if user else None}


def sub_account_view(user: dict) -> dict:
    """A broker's sub-account as /sub-accounts returns it: the agent's `user` and sharing flags."""
    return {"id": user["id"], "user_id": user["id"], "is_contact_sharing_enabled": True,
            "user": {k: user.get(k) for k in ("id", "first_name", "last_name", "email", "username", "phone")}}


def create_custom_field(state: SandboxState, values: dict, user_id: int = 1) -> dict:
    """Store a custom field definition (rank 99999 and Text unless given)."""
    return state.custom_fields.insert({"rank": 99999, "data_type": "Text",
                                       **{k: v for k, v in values.items() if v is not None}, "user_id": user_id})


def check_custom_fields(state: SandboxState, values: list[dict] | None) -> None:
    """Refuse `custom_fields` naming a field that is not defined: a value needs its field first (§4.3)."""
    for item in values or ():
        if state.custom_fields.get(item.get("id")) is None:
            raise bad_request(f"custom field {item.get('id')!r} does not exist", custom_fields="unknown field id")


def store_custom_field_values(state: SandboxState, contact_id: int, values: list[dict] | None) -> None:
    """Keep the checked `custom_fields: [{id, value}]` of a contact body (endpoints/contacts/custom-field-values)."""
    check_custom_fields(state, values)
    for item in values or ():
        state.custom_field_values[f"{contact_id}:{item['id']}"] = None if item.get("value") is None else str(item["value"])


def create_contact(state: SandboxState, values: dict, owner_user_id: int = 1) -> dict:
    """Store a new contact from validated `values`; timestamps default to now."""
    values = dict(values)
    custom = values.pop("custom_fields", None)
    check_custom_fields(state, custom)
    check_references(values, contact_references(state))
    check_assignable(state, values, owner_user_id)
    now = state.now()
    record = {"owner_user_id": owner_user_id, **dict.fromkeys(CONTACT_FIELDS)}
    record.update(values)
    record["created_at"] = values.get("created_at") or now
    record["modified_at"] = values.get("modified_at") or now
    contact = state.contacts.insert(record)
    store_custom_field_values(state, contact["id"], custom)
    return contact


def update_contact(state: SandboxState, contact: dict, values: dict) -> bool:
    """Apply validated `values`; bump modified_at when a value really changed (MySQL's ON
    UPDATE CURRENT_TIMESTAMP does the same) unless the caller set it. Return whether it changed."""
    values = dict(values)
    store_custom_field_values(state, contact["id"], values.pop("custom_fields", None))
    check_references(values, contact_references(state))
    check_assignable(state, values, contact.get("owner_user_id") or 1)
    changed = any(contact.get(field) != value for field, value in values.items())
    contact.update(values)
    if changed and "modified_at" not in values:
        contact["modified_at"] = state.now()
    return changed


def patch_contact(state: SandboxState, contact_id: int, body: dict) -> dict:
    """Change only the fields of `body` on one contact (API call or agent edit alike); return its view."""
    values = load(ContactSchema(), body, partial=True)
    contact = CONTACTS.stored(state, contact_id)
    update_contact(state, contact, values)
    return contact_view(state, contact)


def contact_view(state: SandboxState, contact: dict) -> dict:
    """A contact as LionDesk returns it: with addresses, hotness, custom fields and source."""
    hotness = state.hotnesses.get(contact.get("hotness_id"))
    source = state.contact_sources.get(contact.get("source_id"))
    return {
        **contact,
        "addresses": [address_view(a) for a in state.addresses_of(contact["id"])],
        "hotness": {k: hotness[k] for k in ("name", "rank", "color")} if hotness else None,
        "custom_fields": [{**{k: field[k] for k in ("id", "user_id", "name", "rank", "data_type")},
                           "value": state.custom_field_values[f"{contact['id']}:{field['id']}"]}
                          for field in state.custom_fields
                          if f"{contact['id']}:{field['id']}" in state.custom_field_values],
        "source": {k: source[k] for k in ("id", "name", "user_id", "created_at")} if source else None,
    }


def address_view(address: dict) -> dict:
    """An address as LionDesk returns it (string id, no contact id)."""
    return {k: v for k, v in address.items() if k != "contact_id"}


def touch_for_address(state: SandboxState, contact: dict) -> None:
    """Bump the contact's modified_at after an address edit, if this sandbox is set to."""
    if state.address_edits_bump_contact:
        contact["modified_at"] = state.now()


# ---- leads, routes, offers ----------------------------------------------------------------

def check_lead_values(state: SandboxState, values: dict) -> None:
    """With `mls_id_values: numeric`, refuse an mls_id that is not a number (LionDesk's example sends
    2000; whether the column takes text is unknown, so this is the pessimistic reading)."""
    mls = values.get("mls_id")
    if state.mls_id_values == "numeric" and mls is not None and not (
            isinstance(mls, int) and not isinstance(mls, bool) or isinstance(mls, str) and mls.isdigit()):
        raise bad_request(f"mls_id must be a number, got {mls!r}", mls_id="must be a number")


def create_lead(state: SandboxState, values: dict) -> dict:
    """Store a new, unclaimed lead for an existing contact."""
    check_lead_values(state, values)
    if state.contacts.get(values.get("contact_id")) is None:
        raise bad_request(f"contact_id {values.get('contact_id')} does not exist", contact_id="does not exist")
    check_references(values, {"source_id": state.lead_sources})
    now = state.now()
    record = dict.fromkeys(LEAD_FIELDS)
    record.update(values)
    record.update(claimed_by_user_id=None, claimed_at=None, time_to_claim=None, created_at=now, modified_at=now)
    return state.leads.insert(record)


def lead_view(lead: dict) -> dict:
    """A lead as LionDesk returns it (`address_1` is a read-only alias of `street_address`)."""
    return {**lead, "address_1": lead.get("street_address")}


def apply_route_rules(state: SandboxState, route: dict) -> dict:
    """Enforce the documented route rules on a complete route; return it normalised."""
    if route.get("lead_source_id") is None and route.get("contact_source_id") is None:
        raise bad_request("A lead route needs a lead source, a contact source or both",
                          lead_source_id="required without contact_source_id")
    check_references(route, {"campaign_id": state.campaigns, "lead_source_id": state.lead_sources,
                             "contact_source_id": state.contact_sources, "team_id": state.teams})
    if route["distribution_target"] == "Myself":
        route.update(team_id=None, team_selection_method=None)
    elif route.get("team_selection_method") == "Specific Team" and route.get("team_id") is None:
        raise bad_request("team_id is required when team_selection_method is Specific Team",
                          team_id="required for Specific Team")
    elif route.get("team_selection_method") == "Zipcode":
        route["team_id"] = None
    return route


def team_view(team: dict) -> dict:
    """A team as LionDesk returns it."""
    return {k: team[k] for k in ("id", "name", "is_contact_resource_sharing_enabled", "order_method",
                                 "mins_until_next_alert", "distribution_zipcodes")}


def route_view(state: SandboxState, route: dict) -> dict:
    """A lead route with nested team, campaign and sources, as in docs/vendors/seeds/001."""
    def named(table, key):
        record = table.get(key)
        return {"id": record["id"], "name": record["name"]} if record else None

    team = state.teams.get(route.get("team_id"))
    return {"id": route["id"], "team": team_view(team) if team else None,
            "campaign": named(state.campaigns, route["campaign_id"]),
            "lead_source": named(state.lead_sources, route.get("lead_source_id")),
            "contact_source": named(state.contact_sources, route.get("contact_source_id")),
            "distribution_target": route["distribution_target"],
            "team_selection_method": route.get("team_selection_method"), "filter": route.get("filter")}


def route_score(route: dict, lead_source_id, contact_source_id) -> int:
    """How specifically a route matches a lead: 3 both sources, 2 its lead source only, 1 its contact
    source only, 0 no match. Every source a route names must match ("lead source and/or contact
    source", endpoints/lead-offers); the ranking among matches is the sandbox's reading."""
    named = {"lead": route.get("lead_source_id"), "contact": route.get("contact_source_id")}
    if named["lead"] is not None and named["lead"] != lead_source_id:
        return 0
    if named["contact"] is not None and named["contact"] != contact_source_id:
        return 0
    return (2 if named["lead"] is not None else 0) + (1 if named["contact"] is not None else 0)


def matching_team_rollout_route(state: SandboxState, lead: dict) -> dict | None:
    """The most specific Team Rollout route for the lead's source and its contact's source (oldest on a tie)."""
    contact = state.contacts.get(lead["contact_id"]) or {}
    scored = [(route_score(r, lead.get("source_id"), contact.get("source_id")), -r["id"], r)
              for r in state.lead_routes if r["distribution_target"] == "Team Rollout"]
    best = max((item for item in scored if item[0]), key=lambda item: item[:2], default=None)
    return best[2] if best else None


def target_team(state: SandboxState, route: dict, lead: dict) -> dict | None:
    """The team a Team Rollout route sends the lead to: its own, or the one covering the zipcode."""
    if route.get("team_selection_method") == "Zipcode":
        zipcode = str(lead.get("zipcode") or "").strip()
        return next((t for t in state.teams
                     if zipcode and zipcode in [z.strip() for z in (t["distribution_zipcodes"] or "").split(",")]),
                    None)
    return state.teams.get(route.get("team_id"))


def make_offers(state: SandboxState, lead: dict) -> list[dict]:
    """Create one offer per alerting member of the route's team, or refuse with 400.

    Choice (the docs only say offers "work only if" these hold): no matching Team Rollout
    route, a claimed lead, or no target team answer 400 BadRequest; a team whose members
    all have alerts off answers an empty array. Calling it twice makes a second set.
    """
    route = matching_team_rollout_route(state, lead)
    if route is None:
        raise bad_request(f"No Team Rollout lead route matches lead {lead['id']}'s sources")
    if lead.get("claimed_by_user_id"):
        raise bad_request(f"Lead {lead['id']} has already been claimed")
    team = target_team(state, route, lead)
    if team is None:
        raise bad_request(f"Lead route {route['id']} found no team for lead {lead['id']}")
    members = sorted((o for o in state.distribution_options if o["team_id"] == team["id"]
                      and (o["has_call_alert"] or o["has_text_alert"] or o["has_email_alert"])),
                     key=lambda o: o["rank"])
    now = state.clock()
    flag = {True: "true", False: "false"}
    return [state.offers.insert({
        "lead_id": lead["id"], "team_id": team["id"], "user_id": option["user_id"], "rank": str(option["rank"]),
        "notify_at": liondesk_time(now + 60 * (option["mins_until_lead_offer"] or 0)), "status": "Pending",
        "assign_automatically": flag[bool(option["assign_automatically"])],
        "has_call_alert": flag[bool(option["has_call_alert"])], "has_text_alert": flag[bool(option["has_text_alert"])],
        "has_email_alert": flag[bool(option["has_email_alert"])], "distribution_target": route["distribution_target"],
    }) for option in members]


def offer_view(state: SandboxState, offer: dict) -> dict:
    """An offer as LionDesk returns it: nested team, lead (with contact) and user; booleans as strings."""
    team, user = state.teams.get(offer["team_id"]), state.users.get(offer["user_id"])
    lead = state.leads.get(offer["lead_id"]) or {}
    contact = state.contacts.get(lead.get("contact_id")) or {}
    view = {k: offer[k] for k in ("id", "rank", "notify_at", "status", "assign_automatically",
                                  "has_call_alert", "has_text_alert", "has_email_alert")}
    view["team"] = {"id": team["id"], "name": team["name"]}
    view["lead"] = {"id": offer["lead_id"], "distribution_target": offer["distribution_target"],
                    "contact": {k: contact.get(k) for k in ("id", "first_name", "last_name")}}
    view["user"] = {k: user[k] for k in ("id", "first_name", "last_name", "email")}
    return view


# ---- campaigns and tasks -----------------------------------------------------------------

def check_campaign_name(state: SandboxState, name: str, own_id=None) -> None:
    """Refuse a campaign name another campaign already has (the docs give no status: 400 here)."""
    if any(c["name"].casefold() == name.casefold() and c["id"] != own_id for c in state.campaigns):
        raise bad_request(f"A campaign named {name!r} already exists", name="must be unique")


def enrol(state: SandboxState, campaign: dict, contact_id: int) -> dict:
    """Start a campaign for a contact. A second enrolment is accepted and makes a second drip:
    LionDesk documents no refusal, so the sandbox takes the pessimistic reading (docs/sandbox.md)."""
    if state.contacts.get(contact_id) is None:
        raise bad_request(f"contact_id {contact_id} does not exist", contact_id="does not exist")
    return state.campaign_contacts.insert({"campaign_id": campaign["id"], "contact_id": contact_id,
                                           "created_at": state.now()})


def campaign_communications(state: SandboxState, contact_id: int) -> list[dict]:
    """The communications scheduled for a contact, one per enrolment (a campaign's first action):
    what GET /contacts/{id}/campaign-communications shows (endpoints/campaign-contacts)."""
    return [{"id": cc["id"], "campaign_id": cc["campaign_id"], "campaign_contact_id": cc["id"],
             "campaign_name": (state.campaigns.get(cc["campaign_id"]) or {}).get("name"),
             "contact_id": contact_id, "type": "Email", "status": "Scheduled", "scheduled_at": cc["created_at"]}
            for cc in state.campaign_contacts if cc["contact_id"] == contact_id]


def create_task_v21(state: SandboxState, values: dict, owner_user_id: int = 1) -> dict:
    """Store a Tasks v2.1 task (a single event); the assignee must belong to one of our teams."""
    check_references(values, {"contact_id": state.contacts, "assigned_user_id": state.users})
    check_assignable(state, values, owner_user_id)
    values = {k: v for k, v in values.items() if k not in ("update_type", "recurrence_rule")}
    reminder = values.pop("reminder_type", 0)
    return _store_task(state, {**values, "action_type": "None" if not reminder else str(reminder),
                               "channel": "v2.1"}, owner_user_id)


def create_task(state: SandboxState, values: dict, owner_user_id: int = 1) -> dict:
    """Store a task; action_type (or its alias reminder_type) is required."""
    action_type = values.get("action_type") or values.get("reminder_type")
    if not action_type:
        raise bad_request("action_type is required", action_type="Missing data for required field.")
    check_references(values, {"contact_id": state.contacts, "assigned_user_id": state.users})
    return _store_task(state, {**values, "action_type": action_type, "channel": "v2.0"}, owner_user_id)


def _store_task(state: SandboxState, values: dict, owner_user_id: int) -> dict:
    """Store a validated task of either version."""
    action_type = values["action_type"]
    now = state.now()
    record = dict.fromkeys(TASK_FIELDS)
    record.update(owner_user_id=owner_user_id, campaign_contact_id=None, is_all_day=False, is_important=False,
                  is_public=False, category=None, folder=None, completed_at=None)
    record.update(values)
    record.update(action_type=action_type, reminder_type=action_type,
                  created_at=values.get("created_at") or now, modified_at=values.get("modified_at") or now)
    if record["status"] == "complete":
        record["completed_at"] = now
    return state.tasks.insert(record)


# ---- the record types the API serves ------------------------------------------------------------

@dataclass(frozen=True)
class Resource:
    """A LionDesk record type as the API serves it: its table in the state, how a 404 names it, its read shape."""

    table: str
    """The state's table, and the key of its filterable COLUMNS ("contact_sources")."""
    noun: str
    """What a 404 calls one record ("contact source")."""
    id_name: str
    """The id's name in the route (`/contact-sources/<source_id>`): call-log templates and tests show it."""
    view: Callable[[SandboxState, dict], dict] = lambda state, record: record
    """A stored record as the API answers it."""

    @property
    def path(self) -> str:
        """The resource's path under /liondesk ("/contact-sources")."""
        return "/" + self.table.replace("_", "-")

    def records(self, state: SandboxState):
        """The resource's table."""
        return getattr(state, self.table)

    def stored(self, state: SandboxState, record_id) -> dict:
        """One record as stored (to change it), or a 404."""
        return require_existing(self.records(state), record_id, self.noun)

    def one(self, state: SandboxState, record_id) -> dict:
        """One record as the API shows it, or a 404."""
        return self.view(state, self.stored(state, record_id))

    def every(self, state: SandboxState) -> list[dict]:
        """Every record as the API shows it."""
        return [self.view(state, record) for record in self.records(state)]


CONTACTS = Resource("contacts", "contact", "contact_id", contact_view)
CONTACT_SOURCES = Resource("contact_sources", "contact source", "source_id")
CUSTOM_FIELDS = Resource("custom_fields", "custom field", "field_id")
LEAD_SOURCES = Resource("lead_sources", "lead source", "source_id")
HOTNESSES = Resource("hotnesses", "hotness", "hotness_id")
LEADS = Resource("leads", "lead", "lead_id", lambda state, lead: lead_view(lead))
LEAD_ROUTES = Resource("lead_routes", "lead route", "route_id", route_view)
CAMPAIGNS = Resource("campaigns", "campaign", "campaign_id")
TASKS = Resource("tasks", "task", "task_id")
TEAMS = Resource("teams", "team", "team_id", lambda state, team: team_view(team))
USERS = Resource("users", "user", "user_id")
OFFERS = Resource("offers", "offer", "offer_id", offer_view)
