"""The Real Geeks Incoming API under /realgeeks/rest (docs/vendors/realgeeks-api.md §4), plus the Outgoing
webhook each accepted write triggers when a destination is configured.

Errors are {"error": "..."}: 400 bad JSON, 401 bad credentials, 404 unknown lead or
site, 422 validation. Every write received is kept (with its body) for tests to inspect.
"""

from __future__ import annotations

import re
import uuid

from flask import Blueprint, g, jsonify, request

from bridge.sandbox.errors import ApiError, json_body
from bridge.sandbox.state import SandboxState, sandbox_state
from bridge.sandbox.validation import is_timestamp, property_problem
from bridge.sandbox.webhooks import public_view

bp = Blueprint("realgeeks", __name__, url_prefix="/realgeeks")

LEAD_FIELDS = ("id", "source", "source_details", "email", "second_email", "first_name", "last_name", "phone",
               "phone2", "address", "street_address", "city", "state", "zip", "role", "activities", "region",
               "created", "timeframe", "urgency", "status", "notes", "tags")
"""Keys a lead write may carry (docs/vendors/realgeeks-api.md §2.1); others are dropped."""
IDENTIFICATION_FIELDS = ("first_name", "last_name", "email", "phone", "address")
ROLES = ("Buyer", "Seller", "Buyer and Seller", "Renter")
TIMEFRAMES = ("Immediately", "1 Week", "2-4 Weeks", "30 Days", "60 Days", "90 Days", "3-6 Months",
              "6-12 Months", "1 Year Or More")
FOLLOW_UP_TYPES = ("created_a_followup_for", "completed_a_followup_for")
SITE_DOMAIN = "www.mysite.com"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# ---- validation (pure) ----------------------------------------------------------------------

def normalise_id(value) -> str | None:
    """A lead or site id as 32 lowercase hex digits, or None if it is not a UUID."""
    try:
        return uuid.UUID(str(value)).hex
    except ValueError:
        return None


def canonical_site(value) -> str | None:
    """A site id as a dashed lowercase UUID (how site_uuid is written), or None if it is not a UUID."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def lead_problem(body: dict, *, creating: bool, needs_identification: bool = True,
                 roles: tuple[str, ...] = ROLES) -> str | None:
    """What makes a lead write invalid (worded for a 422), or None."""
    if creating and "id" in body and normalise_id(body["id"]) is None:
        return f"Invalid lead id {body['id']!r}: must be a UUID"
    if (creating and not body.get("source")) or body.get("source") == "":
        return "Field 'source' is required"
    if creating and needs_identification and not any(body.get(f) for f in IDENTIFICATION_FIELDS):
        return f"At least one of {', '.join(IDENTIFICATION_FIELDS)} is required"
    for field in LEAD_FIELDS:
        value = body.get(field)
        if value is None or value == "" or field in ("id", "activities"):
            continue
        if field == "tags":
            if not (isinstance(value, list) and all(isinstance(tag, str) for tag in value)):
                return "Field 'tags' must be a list of strings"
        elif not isinstance(value, str):
            return f"Field '{field}' must be a string"
        elif field in ("email", "second_email") and not _EMAIL.match(value):
            return f"Field '{field}' is not a valid email address"
        elif field == "role" and value not in roles:
            return f"Field 'role' must be one of: {', '.join(roles)}"
        elif field == "timeframe" and value not in TIMEFRAMES:
            return f"Field 'timeframe' must be one of: {', '.join(TIMEFRAMES)}"
        elif field == "created" and not is_timestamp(value):
            return "Field 'created' must be an ISO 8601 timestamp"
    if "activities" in body:
        return activities_problem(body["activities"], user_ids=None)
    return None


def activities_problem(activities, user_ids: set[str] | None) -> str | None:
    """What is wrong with a list of activities (None for `user_ids` skips the user check)."""
    if not isinstance(activities, list):
        return "Activities must be a JSON array"
    for index, activity in enumerate(activities):
        problem = activity_problem(activity, user_ids)
        if problem:
            return f"Activity {index}: {problem}"
    return None


def activity_problem(activity, user_ids: set[str] | None) -> str | None:
    """What is wrong with one activity: type, source and description are required, except that a
    `was_assigned` needs only its user's id (the assign-leads post's Incoming form) and a follow-up only
    `user.id` and `metadata.event` (the follow-ups page's example has no source or description);
    assignments and follow-ups must name a known user."""
    if not isinstance(activity, dict):
        return "must be an object"
    short = activity.get("type") in ("was_assigned", *FOLLOW_UP_TYPES)
    required = ("type",) if short else ("type", "source", "description")
    for field in required:
        if not isinstance(activity.get(field), str) or not activity[field]:
            return f"field '{field}' is required"
    if activity.get("created") is not None and not is_timestamp(activity["created"]):
        return "field 'created' must be an ISO 8601 timestamp"
    if activity.get("property") is not None and (problem := property_problem(activity["property"])):
        return problem
    user = activity.get("user")
    if activity["type"] in ("was_assigned", *FOLLOW_UP_TYPES):
        if not isinstance(user, dict) or not user.get("id"):
            return "field 'user.id' is required"
        if user_ids is not None and str(user["id"]) not in user_ids:
            return f"User '{user['id']}' does not exist"
    if activity["type"] in FOLLOW_UP_TYPES:
        event = (activity.get("metadata") or {}).get("event")
        if not isinstance(event, dict) or normalise_id(event.get("id")) is None:
            return "field 'metadata.event.id' must be a UUID"
    return None


def apply_changes(lead: dict, body: dict, *, unset: bool = True) -> list[str]:
    """Apply the sent keys to a stored lead ("" removes a key, only when `unset`); return the keys removed."""
    removed = []
    for field in LEAD_FIELDS:
        if field not in body or field in ("id", "activities", "created"):
            continue
        if body[field] == "":
            if not unset:
                continue  # the documented PATCH "does not allow unsetting": the value stays
            if lead.pop(field, None) is not None:
                removed.append(field)
        else:
            lead[field] = body[field]
    return removed


# ---- the Outgoing side ---------------------------------------------------------------------

def outgoing_payload(state: SandboxState, site: str, lead: dict, action: str, *, writer: str,
                     cleared=(), activities=None) -> dict:
    """The webhook body Real Geeks would send after a write: the full lead (or, for
    activity_added, its id and the new activities), with the Outgoing-only fields."""
    destination = state.deliverer.destination
    if activities is not None:
        payload = {"action": action, "id": lead["id"], "activities": activities}
    else:
        payload = {"action": action, **lead, **{field: "" for field in cleared}}
    # The reference confirms source_system = our API user name only for leads created
    # through the Incoming API; "writer" mode stamps it on every write's echo, "lead"
    # mode sends the lead's own source_system (e.g. "Website") as production may.
    source_system = writer if state.realgeeks_source_system_mode == "writer" else lead.get("source_system")
    payload.update(partner_id=destination.partner_id if destination else "", site_uuid=site,
                   site_domain=SITE_DOMAIN, site_login_url=f"https://{SITE_DOMAIN}/member/quick_login/{lead['id']}/",
                   source_system=source_system or writer)
    return payload


def deliver(state: SandboxState, site: str, lead: dict, action: str, *, writer: str, **extra) -> dict | None:
    """Queue the Outgoing webhook for a write; the delivery record, or None without a destination."""
    if state.deliverer.destination is None:
        return None
    delivery = state.deliverer.enqueue(outgoing_payload(state, site, lead, action, writer=writer, **extra))
    return public_view(delivery) if delivery else None


# ---- storage -------------------------------------------------------------------------------

def stamp_activities(state: SandboxState, activities: list) -> list[dict]:
    """Activities as stored: `created` defaults to the time received."""
    return [{**activity, "created": activity.get("created") or state.now_realgeeks()} for activity in activities]


def _same_name(lead: dict, body: dict) -> bool:
    """Whether a stored lead and a create carry the same first and last name (both given, any case)."""
    names = [(str(lead.get(key) or "").strip().casefold(), str(body.get(key) or "").strip().casefold())
             for key in ("first_name", "last_name")]
    return all(ours and ours == theirs for ours, theirs in names)


def store_lead(state: SandboxState, site: str, body: dict, *, source_system: str,
               by_name: bool = False) -> tuple[dict, str]:
    """Create a lead, or merge into the site's lead with the same id, else e-mail, else (`by_name`, an
    Incoming API create) name: Lead Manager merges Incoming leads "based on email or name"
    (docs/vendors/realgeeks-api.md §4.2, §7). Return the lead and the Outgoing action (created | updated)."""
    lead_key = normalise_id(body["id"]) if body.get("id") else None
    existing = state.realgeeks_leads.get((site, lead_key)) if lead_key else None
    site_leads = [lead for (lead_site, _), lead in state.realgeeks_leads.items() if lead_site == site]
    if existing is None and body.get("email"):
        existing = next((lead for lead in site_leads
                         if (lead.get("email") or "").casefold() == body["email"].casefold()), None)
    if existing is None and by_name:
        existing = next((lead for lead in site_leads if _same_name(lead, body)), None)
    if existing is None:
        return insert_lead(state, site, body, source_system=source_system), "created"
    apply_changes(existing, body)
    existing.setdefault("activities", []).extend(stamp_activities(state, body.get("activities") or []))
    return existing, "updated"


def insert_lead(state: SandboxState, site: str, body: dict, *, source_system: str) -> dict:
    """Store a new lead of `site` (its id, if sent, must not be in use)."""
    lead = {"id": body.get("id") or uuid.uuid4().hex}
    apply_changes(lead, body)
    lead.update(created=body.get("created") or state.now_realgeeks(),
                activities=stamp_activities(state, body.get("activities") or []), source_system=source_system)
    state.realgeeks_leads[(site, normalise_id(lead["id"]))] = lead
    return lead


def find_lead(state: SandboxState, site: str, lead_id: str) -> dict:
    """A stored lead of `site`, or a 404."""
    lead = state.realgeeks_leads.get((site, normalise_id(lead_id)))
    if lead is None:
        raise ApiError(404, f"Lead {lead_id} not found")
    return lead


# ---- HTTP --------------------------------------------------------------------------------------

@bp.before_request
def require_basic_auth():
    """Refuse a request without the sandbox's API user name and password with 401."""
    auth = request.authorization
    with sandbox_state() as state:
        if not auth or auth.type != "basic" or (auth.username, auth.password) != state.realgeeks_credentials:
            raise ApiError(401, "Invalid credentials", headers={"WWW-Authenticate": 'Basic realm="leadrouter"'})


@bp.after_request
def keep_write(response):
    """Remember every write that reached the API (not injected faults), with its body and answer."""
    if request.method in ("POST", "PATCH", "PUT", "DELETE") and not g.get("fault"):
        raw = request.get_data(cache=True, as_text=True)
        try:
            body = json_body()
        except ApiError:
            body = raw
        answer = response.get_json(silent=True) if response.is_json else None
        with sandbox_state() as state:
            state.realgeeks_requests.insert({
                "time": state.now_realgeeks(), "method": request.method, "path": request.path,
                "kind": (request.endpoint or "").rpartition(".")[2], "site_uuid": (request.view_args or {}).get("site"),
                "lead_id": (request.view_args or {}).get("lead_id"), "body": body, "status": response.status_code,
                "error": answer.get("error") if isinstance(answer, dict) else None})
    return response


def site_of(site: str) -> str:
    """The site id from the URL (normalised), or a 404 when it is not a UUID."""
    key = canonical_site(site)
    if key is None:
        raise ApiError(404, f"Site {site} not found")
    return key


def lead_body() -> dict:
    """The JSON body of a lead write: 400 when not JSON, 422 when not an object."""
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(422, "The lead must be a JSON object")
    return body


def writer() -> str:
    """The API user name making this request (Real Geeks stamps it as source_system)."""
    return request.authorization.username


@bp.post("/rest/sites/<site>/leads")
def create_lead(site):
    """Create a lead (201 {}); Lead Manager may merge it into an existing one instead."""
    return _create(site, lead_body(), needs_identification=True)


@bp.post("/rest/sites/<site>/potential-seller-leads")
def create_potential_seller(site):
    """Create a potential seller: someone who tried a valuation without signing up."""
    body = lead_body()
    return _create(site, {**body, "role": body.get("role") or "Potential Seller"}, needs_identification=False,
                   roles=(*ROLES, "Potential Seller"))


def _create(site: str, body: dict, *, needs_identification: bool, roles: tuple[str, ...] = ROLES):
    """Validate, store and announce a new lead."""
    site = site_of(site)
    problem = lead_problem(body, creating=True, needs_identification=needs_identification, roles=roles)
    with sandbox_state() as state:
        user_ids = {str(u["id"]) for u in state.realgeeks_users}
        problem = problem or activities_problem(body.get("activities") or [], user_ids)
        if problem:
            raise ApiError(422, problem)
        lead, action = store_lead(state, site, body, source_system=writer(), by_name=True)
        deliver(state, site, lead, action, writer=writer())
    return jsonify({}), 201


@bp.patch("/rest/sites/<site>/leads/<lead_id>")
def update_lead(site, lead_id):
    """Change only the keys sent. This PATCH cannot unset: "" is ignored (or, knob "reject", refused with 422)."""
    body = lead_body()
    with sandbox_state() as state:
        if state.realgeeks_plain_unset == "reject" and any(body.get(field) == "" for field in LEAD_FIELDS):
            raise ApiError(422, "Fields cannot be unset with this endpoint; use the v2 API")
    return _update(site, lead_id, body, unset=False)


@bp.patch("/v2/rest/sites/<site>/leads/<lead_id>", endpoint="update_lead_v2_prefix")
def update_lead_v2_prefix(site, lead_id):
    """The v2 PATCH as `/v2/rest/sites/{site}/leads/{id}`: "" unsets a field."""
    return _update_v2("v2/rest", site, lead_id)


@bp.patch("/rest/sites/<site>/v2/leads/<lead_id>", endpoint="update_lead_v2")
def update_lead_v2(site, lead_id):
    """The v2 PATCH as `/rest/sites/{site}/v2/leads/{id}`: "" unsets a field."""
    return _update_v2("rest/v2", site, lead_id)


def _update_v2(form: str, site: str, lead_id: str):
    """A v2 PATCH in one of its two published forms; 404 when the `realgeeks_v2_paths` knob says it does not exist."""
    with sandbox_state() as state:
        if state.realgeeks_v2_paths not in ("both", form):
            raise ApiError(404, "Not Found")
    return _update(site, lead_id, lead_body(), unset=True)


def _update(site: str, lead_id: str, body: dict, *, unset: bool):
    """Validate and apply a lead PATCH, then announce it as `updated`."""
    site = site_of(site)
    problem = lead_problem(body, creating=False)
    if problem:
        raise ApiError(422, problem)
    with sandbox_state() as state:
        lead = find_lead(state, site, lead_id)
        cleared = apply_changes(lead, body, unset=unset)
        deliver(state, site, lead, "updated", writer=writer(), cleared=cleared)
    return jsonify({})


@bp.post("/rest/sites/<site>/leads/<lead_id>/activities")
def add_activities(site, lead_id):
    """Append a JSON array of activities to a lead."""
    site, body = site_of(site), json_body()
    with sandbox_state() as state:
        lead = find_lead(state, site, lead_id)
        problem = activities_problem(body, {str(u["id"]) for u in state.realgeeks_users})
        if problem:
            raise ApiError(422, problem)
        activities = stamp_activities(state, body)
        lead.setdefault("activities", []).extend(activities)
        deliver(state, site, lead, "activity_added", writer=writer(), activities=activities)
    return jsonify({}), 201


@bp.get("/rest/sites/<site>/users")
def list_users(site):
    """The site's Lead Manager users (agents and lenders)."""
    site_of(site)
    with sandbox_state() as state:
        return jsonify(list(state.realgeeks_users))


@bp.route("/rest/sites/<site>/users/<user_id>", methods=["PUT", "DELETE"])
def change_user(site, user_id):
    """Reserved for Lead Manager: everyone else gets 403."""
    raise ApiError(403, "Only Lead Manager may change users")
