"""The control API under /_sandbox: what tests and operators use to look inside the
sandbox, act as LionDesk agents or Real Geeks, and turn fault knobs. Never logged as
API calls and never subject to faults."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from bridge.sandbox import liondesk_data as data
from bridge.sandbox import liondesk, realgeeks
from bridge.sandbox.calls import count_by_template
from bridge.sandbox.errors import ApiError, body_object
from bridge.sandbox.faults import SERVICES, validate_changes
from bridge.sandbox.query import OR_READINGS
from bridge.sandbox.seeds import DEFAULT_SITE_UUID, load_demo_preset
from bridge.sandbox.state import SandboxState, sandbox_state
from bridge.sandbox.webhooks import Destination

bp = Blueprint("control", __name__, url_prefix="/_sandbox")

TOKEN_KNOBS = ("expire_access_tokens", "revoke_refresh_tokens", "access_token_lifetime_seconds")
SETTINGS = {"address_edits_bump_contact": (True, False), "realgeeks_source_system_mode": ("writer", "lead"),
            "account_type": ("agent", "broker"), "app_owner": ("ours", "another_account"),
            "single_value_in": ("accepted", "refused"), "or_operator": OR_READINGS, "mls_id_values": ("any", "numeric"),
            "v1_service": ("on", "gone"), "tasks_v20": ("on", "gone"), "tasks_v21": ("on", "gone"),
            "realgeeks_v2_paths": ("both", "v2/rest", "rest/v2"), "realgeeks_plain_unset": ("ignore", "reject")}
"""Behaviour the vendors leave unknown, switchable per test: name -> allowed values."""


def listed(records) -> dict:
    """A control-API list answer."""
    records = list(records)
    return {"total": len(records), "data": records}


def mirror_routes(resource: data.Resource, about: str, *, one: bool = False) -> None:
    """Register GET /liondesk<path>: every record of a LionDesk resource as its API shows them, unpaged (`about`
    says which), and with `one` GET /liondesk<path>/<id> as the API's own (404 when absent)."""

    def every():
        with sandbox_state() as state:
            return jsonify(listed(resource.every(state)))

    def get_one(**ids):
        with sandbox_state() as state:
            return jsonify(resource.one(state, ids[resource.id_name]))

    every.__doc__, get_one.__doc__ = about, f"One {resource.noun}."
    bp.add_url_rule(f"/liondesk{resource.path}", f"list_{resource.table}", every, methods=["GET"])
    if one:
        bp.add_url_rule(f"/liondesk{resource.path}/<int:{resource.id_name}>", f"get_{resource.table}", get_one,
                        methods=["GET"])


def int_arg(name: str, default: int = 0) -> int:
    """An integer query parameter, or a 400."""
    try:
        return int(request.args.get(name, default))
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None


# ---- the whole sandbox -------------------------------------------------------------------------

@bp.get("/state")
def get_state():
    """Record counts, tokens, knobs, settings and the destination: a cheap health and overview call."""
    with sandbox_state() as state:
        destination = state.deliverer.destination
        return jsonify({
            "counts": state.counts(),
            "tokens": {"live_access_tokens": sum(state.tokens.is_valid(t) for t in state.tokens.access),
                       "live_refresh_tokens": len(state.tokens.refresh), "refreshes": state.tokens.refresh_count,
                       "access_token_lifetime_seconds": state.tokens.lifetime_seconds},
            "faults": state.faults.snapshot(),
            "settings": {name: getattr(state, name) for name in SETTINGS},
            "destination": {"url": destination.url, "partner_id": destination.partner_id} if destination else None,
            "last_call_seq": state.calls.last_seq,
        })


@bp.post("/reset")
def reset():
    """Back to a fresh sandbox (call sequence numbers keep growing)."""
    with sandbox_state() as state:
        state.reset()
        state.calls.clear()
    return get_state()


@bp.get("/faults")
def get_faults():
    """Every service's fault knobs."""
    with sandbox_state() as state:
        return jsonify(state.faults.snapshot())


@bp.post("/faults")
def set_faults():
    """Turn knobs for one service ("service": "liondesk" | "liondesk_v1" | "realgeeks", a list,
    or "all" / absent), and act on LionDesk tokens: expire_access_tokens, revoke_refresh_tokens,
    access_token_lifetime_seconds. {"clear": true} turns every fault off first."""
    body = body_object()
    services = body.pop("service", None) or "all"
    services = list(SERVICES) if services == "all" else [services] if isinstance(services, str) else services
    if not set(services) <= set(SERVICES):
        raise ApiError(400, f"service must be one of {', '.join(SERVICES)}")
    token_actions = {name: body.pop(name) for name in TOKEN_KNOBS if name in body}
    clear = body.pop("clear", False)
    try:
        validate_changes(body)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    with sandbox_state() as state:
        if clear:
            state.faults.clear()
        state.faults.configure(services, body)
        if "access_token_lifetime_seconds" in token_actions:
            state.tokens.lifetime_seconds = float(token_actions["access_token_lifetime_seconds"])
        if token_actions.get("expire_access_tokens"):
            state.tokens.expire_all()
        if token_actions.get("revoke_refresh_tokens"):
            state.tokens.revoke_refresh_tokens()
        return jsonify(state.faults.snapshot())


@bp.post("/settings")
def set_settings():
    """Switch behaviour the vendors leave unknown (see SETTINGS)."""
    body = body_object()
    with sandbox_state() as state:
        for name, value in body.items():
            if name not in SETTINGS or value not in SETTINGS[name]:
                raise ApiError(400, f"unknown setting or value: {name}={value!r}; allowed: {SETTINGS}")
            setattr(state, name, value)
        return jsonify({name: getattr(state, name) for name in SETTINGS})


@bp.get("/calls")
def get_calls():
    """The call log (?since=<seq>, ?service=), with counts per (method, path template)."""
    since, service = int_arg("since"), request.args.get("service")
    with sandbox_state() as state:
        calls = state.calls.since(since, service)
        last_seq = state.calls.last_seq
    return jsonify({"last_seq": last_seq, "total": len(calls), "counts": count_by_template(calls), "calls": calls})


# ---- LionDesk, as its agents and admins see it ---------------------------------------------------

mirror_routes(data.CONTACTS, "Every contact, as the API would show it.", one=True)


@bp.post("/liondesk/contacts")
def agent_creates_contact():
    """A contact an agent typed into the LionDesk UI (owner_user_id may be given; default 1)."""
    body = body_object()
    owner = body.pop("owner_user_id", 1)
    values = data.load(data.ContactSchema(), body)
    with sandbox_state() as state:
        return jsonify(data.contact_view(state, data.create_contact(state, values, owner_user_id=owner))), 201


# An agent's edit in the LionDesk UI is the API's own PATCH (modified_at moves when something changed),
# made without a token.
bp.add_url_rule("/liondesk/contacts/<int:contact_id>", "agent_edits_contact", liondesk.patch_contact,
                methods=["PATCH"])


@bp.post("/liondesk/bulk-contacts")
def bulk_contacts():
    """Create `count` contacts at once (for poll benchmarks); with "linked": true each also
    gets a Real Geeks lead with the same name and e-mail, and the pairs are returned."""
    body = body_object()
    count = body.get("count")
    if not isinstance(count, int) or not 1 <= count <= 1_000_000:
        raise ApiError(400, "count must be an integer between 1 and 1000000")
    site = realgeeks.canonical_site(body.get("site_uuid", DEFAULT_SITE_UUID))
    if site is None:
        raise ApiError(400, "site_uuid must be a UUID")
    with sandbox_state() as state:
        links, first_id = [], None
        for _ in range(count):
            contact = data.create_contact(state, {}, owner_user_id=1)
            number = contact["id"]
            contact.update(first_name="Bulk", last_name=f"Contact {number}", email=f"bulk{number}@example.com",
                           mobile_phone=f"808-{number // 10000 % 1000:03d}-{number % 10000:04d}")
            first_id = first_id or number
            if body.get("linked"):
                lead = realgeeks.insert_lead(
                    state, site, {"id": uuid.uuid4().hex, "source": "Website Property Search", "first_name": "Bulk",
                                  "last_name": contact["last_name"], "email": contact["email"]},
                    source_system="Website")
                links.append({"contact_id": number, "lead_id": lead["id"], "site_uuid": site})
        return jsonify({"created": count, "first_id": first_id, "last_id": first_id + count - 1,
                        "links": links}), 201


mirror_routes(data.LEADS, "Every LionDesk lead.")


@bp.patch("/liondesk/leads/<int:lead_id>")
def agent_claims_lead(lead_id):
    """An agent claims (or a broker assigns) a lead: {"claimed_by_user_id": 2, "claimed_via": "Phone"}."""
    body = body_object()
    with sandbox_state() as state:
        lead = data.LEADS.stored(state, lead_id)
        user = data.USERS.stored(state, body.get("claimed_by_user_id"))
        lead.update(claimed_by_user_id=user["id"], claimed_at=state.now(),
                    claimed_via=body.get("claimed_via", "Assigned"), modified_at=state.now())
        return jsonify(data.lead_view(lead))


@bp.get("/liondesk/campaign-enrolments")
def list_enrolments():
    """Every campaign enrolment (campaign_id, contact_id)."""
    with sandbox_state() as state:
        return jsonify(listed(state.campaign_contacts))


mirror_routes(data.OFFERS, "Every lead offer made.")
mirror_routes(data.TASKS, "Every task.")
mirror_routes(data.CONTACT_SOURCES, "Every contact source.")


@bp.post("/liondesk/contact-sources")
def add_contact_source():
    """Create a contact source as an agent would ({"name": "Real Geeks"})."""
    values = data.load(data.ContactSourceSchema(), body_object())
    with sandbox_state() as state:
        return jsonify(state.contact_sources.insert({**values, "user_id": 1, "created_at": state.now()})), 201


mirror_routes(data.LEAD_ROUTES, "Every lead route, nested as the API shows them.")


@bp.post("/liondesk/lead-routes")
def add_lead_route():
    """Create a lead route by ids, or by names: lead_source, contact_source, campaign, team."""
    body = body_object()
    with sandbox_state() as state:
        for name, table in (("lead_source", state.lead_sources), ("contact_source", state.contact_sources),
                            ("campaign", state.campaigns), ("team", state.teams)):
            if name in body:
                body[f"{name}_id"] = id_by_name(table, body.pop(name), name)
        values = data.load(data.LeadRouteSchema(), body)
        route = data.apply_route_rules(state, {"team_id": None, "team_selection_method": None, "filter": None,
                                               **values, "user_id": 1})
        return jsonify(data.route_view(state, state.lead_routes.insert(route))), 201


def id_by_name(table, name: str, what: str) -> int:
    """The id of the record called `name`, or a 400."""
    record = next((r for r in table if r["name"] == name), None)
    if record is None:
        raise ApiError(400, f"no {what} named {name!r}")
    return record["id"]


mirror_routes(data.USERS, "Every LionDesk user.")


@bp.post("/liondesk/users")
def add_user():
    """Add a LionDesk user ({"first_name", "last_name", "email"}): an accepted member of the sandbox team
    unless "team": false, and holding a token for our app (listed by /users) only with "authorised": true."""
    body = body_object()
    if not body.get("email"):
        raise ApiError(400, "email is required")
    with sandbox_state() as state:
        now = state.now()
        user = state.users.insert({
            "first_name": body.get("first_name"), "last_name": body.get("last_name"), "email": body["email"],
            "username": body.get("username") or body["email"].split("@")[0], "phone": body.get("phone"),
            "system_phone": None, "timezone_offset": -10, "timezone": "Pacific/Honolulu", "profile_picture": None,
            "is_active": 1, "created_at": now, "modified_at": now})
        if body.get("team", True):
            state.team_members.insert({"team_id": next(iter(state.teams))["id"], "user_id": user["id"],
                                       "request_status": body.get("request_status") or "Accepted"})
        if body.get("authorised"):
            state.token_holders.add(user["id"])
        return jsonify(user), 201


@bp.post("/liondesk/custom-fields")
def add_custom_field():
    """Define a custom field as the broker would in LionDesk ({"name", "data_type"})."""
    values = data.load(data.CustomFieldSchema(), body_object())
    with sandbox_state() as state:
        return jsonify(data.create_custom_field(state, values)), 201


@bp.post("/liondesk/lead-sources")
def add_lead_source():
    """Add a lead source (LionDesk's API cannot; an account may already have one)."""
    body = body_object()
    if not isinstance(body.get("name"), str) or not body["name"]:
        raise ApiError(400, "name is required")
    with sandbox_state() as state:
        return jsonify(state.lead_sources.insert({"name": body["name"]})), 201


@bp.post("/liondesk/preset/demo")
def demo_preset():
    """Add a "Real Geeks" contact source and routes for the website sources (idempotent)."""
    with sandbox_state() as state:
        preset = load_demo_preset(state)
        return jsonify({"contact_source": preset["contact_source"],
                        "lead_routes": [data.route_view(state, r) for r in preset["lead_routes"]]})


@bp.post("/liondesk/oauth/codes")
def add_authorization_code():
    """Register a one-time authorization code ({"code": ...}, or a random one) for the code grant."""
    body = body_object()
    with sandbox_state() as state:
        code = body.get("code") or state.tokens.new_code()
        state.tokens.codes.add(code)
        return jsonify({"code": code}), 201


# ---- LionDesk v1 ----------------------------------------------------------------------------------

@bp.get("/liondesk-v1/activities")
def list_v1_activities():
    """Comments and activities received through v1 (?contact_id= to narrow)."""
    contact_id = request.args.get("contact_id")
    with sandbox_state() as state:
        return jsonify(listed(a for a in state.v1_activities
                              if contact_id is None or str(a["contact_id"]) == contact_id))


@bp.post("/liondesk-v1/keys")
def add_v1_keys():
    """Accept another partner API key and/or user key ({"api_key", "user_key", "user_id"})."""
    body = body_object()
    with sandbox_state() as state:
        if body.get("api_key"):
            state.v1_api_keys.add(body["api_key"])
        if body.get("user_key"):
            data.USERS.stored(state, body.get("user_id", 1))
            state.v1_user_keys[body["user_key"]] = int(body.get("user_id", 1))
        return jsonify({"api_keys": sorted(state.v1_api_keys), "user_keys": state.v1_user_keys})


# ---- Real Geeks -----------------------------------------------------------------------------------

@bp.get("/realgeeks/leads")
def list_realgeeks_leads():
    """Every Real Geeks lead (?site_uuid= to narrow), with its site."""
    site = realgeeks.canonical_site(request.args["site_uuid"]) if "site_uuid" in request.args else None
    with sandbox_state() as state:
        return jsonify(listed({**lead, "site_uuid": lead_site} for (lead_site, _), lead in state.realgeeks_leads.items()
                              if site is None or lead_site == site))


@bp.get("/realgeeks/leads/<lead_id>")
def get_realgeeks_lead(lead_id):
    """One Real Geeks lead, on whichever site holds it."""
    key = realgeeks.normalise_id(lead_id)
    with sandbox_state() as state:
        for (site, lead_key), lead in state.realgeeks_leads.items():
            if lead_key == key:
                return jsonify({**lead, "site_uuid": site})
    raise ApiError(404, f"no Real Geeks lead {lead_id}")


@bp.post("/realgeeks/leads")
def website_creates_lead():
    """A lead that signs up on the website (or is typed into Lead Manager): stored, and sent
    to the destination as a `created` webhook. Extra keys: site_uuid, source_system
    (default "Website"), deliver (default true)."""
    body = body_object()
    site = realgeeks.canonical_site(body.pop("site_uuid", DEFAULT_SITE_UUID))
    source_system = body.pop("source_system", "Website")
    send = body.pop("deliver", True)
    body.setdefault("id", uuid.uuid4().hex)
    problem = realgeeks.lead_problem(body, creating=True)
    if site is None or problem:
        raise ApiError(400, problem or "site_uuid must be a UUID")
    with sandbox_state() as state:
        lead, action = realgeeks.store_lead(state, site, body, source_system=source_system)
        delivery = realgeeks.deliver(state, site, lead, action, writer=source_system) if send else None
        return jsonify({"lead": {**lead, "site_uuid": site}, "delivery": delivery}), 201


@bp.post("/realgeeks/users")
def add_realgeeks_user():
    """Add a Lead Manager user ({"id", "name", "email", "role"})."""
    body = body_object()
    if not body.get("id") or not body.get("email"):
        raise ApiError(400, "id and email are required")
    user = {"id": str(body["id"]), "role": body.get("role", "Agent"), "admin": bool(body.get("admin")),
            "name": body.get("name", ""), "email": body["email"], "signature": "", "phone_company": "",
            "phone_office": "", "phone_cell": body.get("phone_cell", ""), "phone_home": ""}
    with sandbox_state() as state:
        state.realgeeks_users.append(user)
    return jsonify(user), 201


@bp.get("/realgeeks/requests")
def list_realgeeks_requests():
    """Every write the Incoming API received, with body and answer (?since=<id>)."""
    since = int_arg("since")
    with sandbox_state() as state:
        return jsonify(listed(r for r in state.realgeeks_requests if r["id"] > since))


@bp.get("/realgeeks/destination")
def get_destination():
    """The configured destination (without its secret)."""
    with sandbox_state() as state:
        return jsonify(destination_view(state))


@bp.post("/realgeeks/destination")
def set_destination():
    """Point the Outgoing webhooks at the bridge: {"url", "secret", "partner_id"}."""
    body = body_object()
    if not body.get("url") or not body.get("secret"):
        raise ApiError(400, "url and secret are required")
    with sandbox_state() as state:
        state.deliverer.configure(Destination(body["url"], body["secret"], body.get("partner_id", "")))
        return jsonify(destination_view(state))


@bp.delete("/realgeeks/destination")
def remove_destination():
    """Stop sending Outgoing webhooks."""
    with sandbox_state() as state:
        state.deliverer.configure(None)
        return jsonify(destination_view(state))


def destination_view(state: SandboxState) -> dict | None:
    """The destination as the control API shows it."""
    destination = state.deliverer.destination
    return {"url": destination.url, "partner_id": destination.partner_id} if destination else None


@bp.get("/realgeeks/deliveries")
def list_deliveries():
    """Every webhook sent or queued, with its outcome; ?wait=1 first waits (up to 10 s) until none is pending."""
    deliverer = current_deliverer()
    idle = deliverer.wait_idle() if request.args.get("wait") else None
    return jsonify({**listed(deliverer.public()), "idle": idle})


@bp.post("/realgeeks/deliveries/<int:seq>/redeliver")
def redeliver(seq):
    """Send delivery `seq` again, byte for byte (Real Geeks delivers at least once)."""
    delivery = current_deliverer().redeliver(seq)
    if delivery is None:
        raise ApiError(404, f"no delivery {seq}")
    return jsonify({"seq": seq, "status": delivery["status"]})


def current_deliverer():
    """The app's webhook deliverer (it has its own lock; waiting on it must not hold the state's)."""
    with sandbox_state() as state:
        return state.deliverer
