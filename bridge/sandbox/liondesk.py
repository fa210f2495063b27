"""LionDesk v2 REST endpoints under /liondesk: contacts, sources, leads, routes, offers,
campaigns, users, teams, tasks. Every route needs a live Bearer access token."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from bridge.sandbox import liondesk_data as data
from bridge.sandbox.errors import ApiError, bad_request, body_object
from bridge.sandbox.query import Collation, check_fields, envelope, parse_query, select
from bridge.sandbox.state import sandbox_state
from bridge.sandbox.tokens import CLIENT_ID

bp = Blueprint("liondesk", __name__, url_prefix="/liondesk")
communications_bp = Blueprint("liondesk_communications", __name__, url_prefix="/liondesk-communications/api/v1")
"""Tasks v2.1, served from its own base URL as on communications.liondesk.com/api/v1 (endpoints/tasks-v21)."""

FOREIGN_CLIENT_MESSAGE = "The oauth_client_id does not belong to the querying user"
"""The documented 401 of /users for an app registered under another account (endpoints/users)."""

TOKEN_OWNER_ID = 1
"""Every token the sandbox issues belongs to user 1, the account that authorised the app."""


@bp.before_request
@communications_bp.before_request
def require_access_token():
    """Refuse a missing, unknown or expired access token with 401 NotAuthenticated."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    with sandbox_state() as state:
        if scheme.lower() != "bearer" or not state.tokens.is_valid(token.strip()):
            raise ApiError(401, "Invalid or expired access token")


def listing(records, resource: str, view=None, collation: Collation = Collation(), skip_params=()):
    """Answer a Feathers find: filter, sort and page `records` into the list envelope."""
    with sandbox_state() as state:
        refuse_single_in, or_operator = state.single_value_in == "refused", state.or_operator
    query = parse_query(request.args.items(multi=True), skip_params=skip_params, refuse_single_in=refuse_single_in,
                        or_operator=or_operator)
    check_fields(query, data.COLUMNS[resource])
    total, page = select(records, query, collation)
    return jsonify(envelope(total, query, [view(r) for r in page] if view else page))


def read_routes(resource: data.Resource, about: str, *, collation: Collation = Collation(), order=None) -> None:
    """Register the two reads LionDesk serves for a resource: GET <path>, a Feathers find (`about` says what
    it finds; `order`: the records' order before the query sorts them), and GET <path>/<id>, one record or 404."""

    def find():
        with sandbox_state() as state:
            records = resource.records(state)
            return listing(order(records) if order else records, resource.table,
                           lambda record: resource.view(state, record), collation)

    def get_one(**ids):
        with sandbox_state() as state:
            return jsonify(resource.one(state, ids[resource.id_name]))

    find.__doc__, get_one.__doc__ = about, f"One {resource.noun}."
    bp.add_url_rule(resource.path, f"list_{resource.table}", find, methods=["GET"])
    bp.add_url_rule(f"{resource.path}/<int:{resource.id_name}>", f"get_{resource.table}", get_one, methods=["GET"])


def patch_route(resource: data.Resource, schema, change) -> None:
    """Register PATCH <path>/<id>: check the fields sent against `schema` (partially), let `change(state, record,
    values)` apply them, and answer the record as it ends up; 404 when absent. `change` says what it does."""

    def patch_one(**ids):
        values = data.load(schema(), body_object(), partial=True)
        with sandbox_state() as state:
            record = resource.stored(state, ids[resource.id_name])
            change(state, record, values)
            return jsonify(resource.view(state, record))

    patch_one.__doc__ = change.__doc__
    bp.add_url_rule(f"{resource.path}/<int:{resource.id_name}>", f"patch_{resource.table}", patch_one,
                    methods=["PATCH"])


def delete_route(resource: data.Resource, *, remove=None) -> None:
    """Register DELETE <path>/<id>: remove one record (`remove(state, id)`; default: from its table, nothing
    else) and answer it as it was, as LionDesk's Feathers services do; 404 when absent."""

    def delete_one(**ids):
        record_id = ids[resource.id_name]
        with sandbox_state() as state:
            removed = resource.one(state, record_id)
            if remove is None:
                resource.records(state).remove(record_id)
            else:
                remove(state, record_id)
            return jsonify(removed)

    delete_one.__doc__ = f"Remove a {resource.noun} and answer the removed record."
    bp.add_url_rule(f"{resource.path}/<int:{resource.id_name}>", f"delete_{resource.table}", delete_one,
                    methods=["DELETE"])


# ---- account ---------------------------------------------------------------------------------

@bp.get("/me")
def me():
    """The token's owner."""
    with sandbox_state() as state:
        user = state.users.get(TOKEN_OWNER_ID)
        return jsonify({k: user[k] for k in ("id", "first_name", "last_name", "email", "timezone_offset",
                                             "created_at", "modified_at", "timezone")})


@bp.get("/users")
def list_users():
    """Users holding a token for our app, usually only the one who authorised it (endpoints/users);
    `oauth_client_id` is required (400 missing, 403 unknown, 401 when it belongs to another account)."""
    check_oauth_client_id()
    with sandbox_state() as state:
        holders = [u for u in state.users if u["id"] in state.token_holders and u["is_active"]]
        return listing(holders, "users", skip_params=["oauth_client_id"])


@bp.get("/team-members")
def list_team_members():
    """Memberships of the teams the token's user created or belongs to (?request_status=Accepted)."""
    with sandbox_state() as state:
        own = {t["id"] for t in state.teams if t["user_id"] == TOKEN_OWNER_ID} | {
            m["team_id"] for m in state.team_members if m["user_id"] == TOKEN_OWNER_ID}
        return listing([m for m in state.team_members if m["team_id"] in own], "team_members",
                       lambda m: data.team_member_view(state, m))


@bp.get("/sub-accounts")
def list_sub_accounts():
    """A broker's sub-accounts, one per agent; other accounts get 403 (the sandbox's reading)."""
    with sandbox_state() as state:
        if state.account_type != "broker":
            raise ApiError(403, "Only broker accounts have sub-accounts")
        users = [u for u in state.users if u["id"] != TOKEN_OWNER_ID]
        return listing([{"id": u["id"], "user_id": u["id"], **u} for u in users], "sub_accounts",
                       data.sub_account_view)


@bp.get("/users/<int:user_id>")
def get_user(user_id):
    """One user; `oauth_client_id` is required."""
    check_oauth_client_id()
    with sandbox_state() as state:
        return jsonify(data.USERS.stored(state, user_id))


def check_oauth_client_id() -> None:
    """Refuse a /users call without our client id (400, the sandbox's choice) or with another (403, documented)."""
    client_id = request.args.get("oauth_client_id")
    if not client_id:
        raise bad_request("oauth_client_id is required", oauth_client_id="required")
    if client_id != CLIENT_ID:
        raise ApiError(403, f"oauth_client_id {client_id!r} does not exist")
    with sandbox_state() as state:
        if state.app_owner == "another_account":
            raise ApiError(401, FOREIGN_CLIENT_MESSAGE)


read_routes(data.TEAMS, "Teams the token's user created or belongs to.")


@bp.get("/team-member-distribution-options")
def list_distribution_options():
    """Distribution options of our teams (?team_id=)."""
    with sandbox_state() as state:
        return listing(state.distribution_options, "distribution_options")


# ---- contacts ----------------------------------------------------------------------------------

read_routes(data.CONTACTS, "Find contacts (phones compare exactly, other text case-insensitively).",
            collation=data.CONTACT_COLLATION)


@bp.post("/contacts")
def create_contact():
    """Create a contact; LionDesk does not deduplicate, so neither does the sandbox."""
    values = data.load(data.ContactSchema(), body_object())
    with sandbox_state() as state:
        contact = data.create_contact(state, values, owner_user_id=TOKEN_OWNER_ID)
        return jsonify(data.contact_view(state, contact)), 201


@bp.patch("/contacts/<int:contact_id>")
def patch_contact(contact_id):
    """Change only the fields sent; modified_at moves when something changed."""
    body = body_object()
    with sandbox_state() as state:
        return jsonify(data.patch_contact(state, contact_id, body))


delete_route(data.CONTACTS, remove=lambda state, contact_id: state.remove_contact(contact_id))  # addresses too


@bp.get("/contacts/<int:contact_id>/campaign-communications")
def list_campaign_communications(contact_id):
    """The campaign communications scheduled for a contact (?campaign_name[$like]=...), one per enrolment."""
    with sandbox_state() as state:
        data.require_existing(state.contacts, contact_id, "contact")
        return listing(data.campaign_communications(state, contact_id), "campaign_communications")


@bp.get("/contacts/<int:contact_id>/addresses")
def list_addresses(contact_id):
    """A contact's addresses."""
    with sandbox_state() as state:
        data.CONTACTS.stored(state, contact_id)
        return listing(state.addresses_of(contact_id), "addresses", data.address_view)


@bp.post("/contacts/<int:contact_id>/addresses")
def create_address(contact_id):
    """Add an address to a contact."""
    values = data.load(data.AddressSchema(), body_object())
    with sandbox_state() as state:
        contact = data.CONTACTS.stored(state, contact_id)
        address = state.add_address(contact_id, {**dict.fromkeys(data.ADDRESS_FIELDS), **values})
        data.touch_for_address(state, contact)
        return jsonify(data.address_view(address)), 201


@bp.get("/contacts/<int:contact_id>/addresses/<address_id>")
def get_address(contact_id, address_id):
    """One address of a contact."""
    with sandbox_state() as state:
        return jsonify(data.address_view(_address(state, contact_id, address_id)))


@bp.patch("/contacts/<int:contact_id>/addresses/<address_id>")
def patch_address(contact_id, address_id):
    """Change only the address fields sent."""
    values = data.load(data.AddressSchema(), body_object(), partial=True)
    with sandbox_state() as state:
        address = _address(state, contact_id, address_id)
        if any(address.get(k) != v for k, v in values.items()):
            address.update(values, modified_at=state.now())
            data.touch_for_address(state, state.contacts.get(contact_id))
        return jsonify(data.address_view(address))


def _address(state, contact_id, address_id) -> dict:
    """Address `address_id` of contact `contact_id`, or a 404."""
    data.CONTACTS.stored(state, contact_id)
    address = state.addresses.get(address_id)
    if address is None or address["contact_id"] != contact_id:
        raise ApiError(404, f"No record found for id '{address_id}'")
    return address


# ---- sources and hotnesses ---------------------------------------------------------------------

read_routes(data.CONTACT_SOURCES, "Contact sources the token's user created (?name=).")


@bp.post("/contact-sources")
def create_contact_source():
    """Create a contact source."""
    values = data.load(data.ContactSourceSchema(), body_object())
    with sandbox_state() as state:
        source = state.contact_sources.insert({**values, "user_id": TOKEN_OWNER_ID, "created_at": state.now()})
        return jsonify(source), 201


def rename_contact_source(state, source, values):
    """Rename a contact source."""
    source.update(values)


patch_route(data.CONTACT_SOURCES, data.ContactSourceSchema, rename_contact_source)


delete_route(data.CONTACT_SOURCES)


read_routes(data.CUSTOM_FIELDS, "Custom field definitions (string ids, as documented).")


@bp.post("/custom-fields")
def create_custom_field():
    """Define a custom field (name required, rank 99999 by default)."""
    values = data.load(data.CustomFieldSchema(), body_object())
    with sandbox_state() as state:
        return jsonify(data.create_custom_field(state, values, TOKEN_OWNER_ID)), 201


read_routes(data.LEAD_SOURCES, 'Lead sources (read-only: there is no POST, so a "Real Geeks" one cannot be created).')
read_routes(data.HOTNESSES, "Hotnesses, by default in user_id then rank order.",
            order=lambda records: sorted(records, key=lambda h: (h["user_id"], h["rank"])))


# ---- leads, routes, offers ------------------------------------------------------------------

read_routes(data.LEADS, "Find leads (listing is inferred, not documented).")


@bp.post("/leads")
def create_lead():
    """Create a lead for an existing contact (contact_id is required)."""
    values = data.load(data.LeadSchema(), body_object())
    with sandbox_state() as state:
        return jsonify(data.lead_view(data.create_lead(state, values))), 201


def change_lead(state, lead, values):
    """Change only the lead fields sent."""
    if "contact_id" in values and state.contacts.get(values["contact_id"]) is None:
        raise bad_request(f"contact_id {values['contact_id']} does not exist", contact_id="does not exist")
    data.check_references(values, {"source_id": state.lead_sources})
    if any(lead.get(k) != v for k, v in values.items()):
        lead.update(values, modified_at=state.now())


patch_route(data.LEADS, data.LeadSchema, change_lead)


@bp.post("/leads/<int:lead_id>/offers")
def create_offers(lead_id):
    """Offer the lead to the members of the matching Team Rollout route's team (no body)."""
    with sandbox_state() as state:
        lead = data.LEADS.stored(state, lead_id)
        offers = data.make_offers(state, lead)
        return jsonify([data.offer_view(state, offer) for offer in offers]), 201


@bp.get("/leads/<int:lead_id>/offers")
def list_offers(lead_id):
    """The offers made for a lead (inferred: the docs show only the POST)."""
    with sandbox_state() as state:
        data.require_existing(state.leads, lead_id, "lead")
        offers = [data.offer_view(state, o) for o in state.offers if o["lead_id"] == lead_id]
        return listing(offers, "offers_view")


read_routes(data.LEAD_ROUTES, "Find lead routes (?lead_source_id=&contact_source_id=), answered with nested records.")


@bp.post("/lead-routes")
def create_lead_route():
    """Create a lead route, applying the documented Myself / Specific Team / Zipcode rules."""
    values = data.load(data.LeadRouteSchema(), body_object())
    with sandbox_state() as state:
        route = data.apply_route_rules(state, {"team_id": None, "team_selection_method": None, "filter": None,
                                               **values, "user_id": TOKEN_OWNER_ID})
        return jsonify(data.route_view(state, state.lead_routes.insert(route))), 201


def change_lead_route(state, route, values):
    """Change a lead route; the rules apply to the route as it ends up."""
    route.update(data.apply_route_rules(state, {**route, **values}))


patch_route(data.LEAD_ROUTES, data.LeadRouteSchema, change_lead_route)


delete_route(data.LEAD_ROUTES)


# ---- campaigns and tasks -------------------------------------------------------------------------

read_routes(data.CAMPAIGNS, "Find campaigns (?name[$like]=%25Buyer%25).")


@bp.post("/campaigns")
def create_campaign():
    """Create a campaign with a unique name."""
    values = data.load(data.CampaignSchema(), body_object())
    with sandbox_state() as state:
        data.check_campaign_name(state, values["name"])
        now = state.now()
        campaign = state.campaigns.insert({"is_broker_sharing_on": False, **values, "user_id": TOKEN_OWNER_ID,
                                           "created_at": now, "modified_at": now, "is_default": False,
                                           "is_shared_by_broker": False})
        return jsonify(campaign), 201


def change_campaign(state, campaign, values):
    """Change a campaign (the name stays unique)."""
    if "name" in values:
        data.check_campaign_name(state, values["name"], own_id=campaign["id"])
    campaign.update(values, modified_at=state.now())


patch_route(data.CAMPAIGNS, data.CampaignSchema, change_campaign)


@bp.get("/campaigns/<int:campaign_id>/contacts")
def list_campaign_contacts(campaign_id):
    """Contacts enrolled in a campaign."""
    with sandbox_state() as state:
        data.CAMPAIGNS.stored(state, campaign_id)
        return listing([cc for cc in state.campaign_contacts if cc["campaign_id"] == campaign_id],
                       "campaign_contacts")


@bp.post("/campaigns/<int:campaign_id>/contacts")
def enrol_contact(campaign_id):
    """Start the campaign for {"contact_id"}; enrolling the same contact twice is a 400."""
    values = data.load(data.CampaignContactSchema(), body_object())
    with sandbox_state() as state:
        campaign = data.CAMPAIGNS.stored(state, campaign_id)
        return jsonify(data.enrol(state, campaign, values["contact_id"])), 201


@bp.before_request
def require_tasks_v20():
    """With `tasks_v20: gone`, answer /tasks as a host that retired it would (404 NotFound)."""
    if request.path.startswith(f"{bp.url_prefix}/tasks"):
        with sandbox_state() as state:
            if state.tasks_v20 == "gone":
                raise ApiError(404, "Page not found")


read_routes(data.TASKS, "Find tasks (?contact_id=, ?campaign_contact_id=, ...).")


@bp.post("/tasks")
def create_task():
    """Create a task: description (at most 2000) and status are required, and an action_type."""
    require_tasks_v20()
    values = data.load(data.TaskSchema(), body_object())
    with sandbox_state() as state:
        return jsonify(data.create_task(state, values, owner_user_id=TOKEN_OWNER_ID)), 201


def change_task(state, task, values):
    """Change only the task fields sent."""
    data.check_references(values, {"contact_id": state.contacts, "assigned_user_id": state.users})
    task.update(values, modified_at=state.now())
    for alias in ("action_type", "reminder_type"):
        if values.get(alias):
            task.update(action_type=values[alias], reminder_type=values[alias])
    if values.get("status") == "complete" and not task["completed_at"]:
        task["completed_at"] = state.now()


patch_route(data.TASKS, data.TaskSchema, change_task)


# ---- Tasks v2.1 (communications.liondesk.com/api/v1) ---------------------------------------------

@communications_bp.before_request
def require_tasks_v21():
    """With `tasks_v21: gone`, the v2.1 host answers 404 to everything."""
    with sandbox_state() as state:
        if state.tasks_v21 == "gone":
            raise ApiError(404, "Page not found")


@communications_bp.get("/tasks")
def list_tasks_v21():
    """Tasks v2.1 created on this host."""
    with sandbox_state() as state:
        return listing([t for t in state.tasks if t.get("channel") == "v2.1"], "tasks")


@communications_bp.post("/tasks")
def create_task_v21():
    """Create a single Tasks v2.1 task: assigned_user_id and due_at are required."""
    values = data.load(data.TaskV21Schema(), body_object())
    with sandbox_state() as state:
        return jsonify(data.create_task_v21(state, values, owner_user_id=TOKEN_OWNER_ID)), 201


@communications_bp.patch("/tasks/<int:task_id>")
def patch_task_v21(task_id):
    """Change a v2.1 task; `update_type` 3 changes only its status."""
    values = data.load(data.TaskV21Schema(), body_object(), partial=True)
    with sandbox_state() as state:
        task = data.require_existing(state.tasks, task_id, "task")
        if task.get("channel") != "v2.1":
            raise ApiError(404, f"No record found for id '{task_id}'")
        if values.pop("update_type", None) == 3:
            values = {k: v for k, v in values.items() if k == "status"}
        values.pop("reminder_type", None)
        task.update(values, modified_at=state.now())
        if values.get("status") == "complete" and not task["completed_at"]:
            task["completed_at"] = state.now()
        return jsonify(task)
