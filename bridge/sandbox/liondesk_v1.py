"""The legacy LionDesk v1 partner endpoint (docs/vendors/seeds/002): one URL, POST JSON with an `action`.

Authentication is Basic with the partner API key as user name (password empty) plus
the user's key in X-LionDesk-Id. Application errors come back inside an HTTP 200 as
{"error": N, "errorText": ...}, the way the public PHP client reads them (inferred).
The error numbers other than 10 are the sandbox's own; LionDesk's are unknown.
v1 writes land in the same contacts the v2 API serves: it is one LionDesk account.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from bridge.sandbox import liondesk_data as data
from bridge.sandbox.errors import json_body
from bridge.sandbox.query import Condition, predicate
from bridge.sandbox.state import V1_PERSONAL_API_KEY, SandboxState, sandbox_state
from bridge.sandbox.validation import is_timestamp, property_problem

bp = Blueprint("liondesk_v1", __name__, url_prefix="/liondesk-v1")

INVALID_REQUEST, UNKNOWN_ACTION, USER_VALIDATION, NOT_PERMITTED = 1, 2, 10, 11
MISSING_FIELD, TOO_LONG, INVALID_VALUE, CONTACT_NOT_FOUND, NOT_YOUR_CONTACT = 20, 21, 22, 30, 31

SUBMISSION_LIMITS = {
    "firstname": 255, "lastname": 255, "phone": 50, "email": 50, "street_address": 50, "city": 100,
    "state": 50, "zip": 50, "assigned user name": 50, "assigned user email": 50, "assigned user phone": 50,
    "assigned_user_name": 50, "assigned_user_email": 50, "assigned_user_phone": 50,
    "siteid": 50, "tag": 255, "contactid": 50, "comments": 5000,
}
"""NewSubmission limits in characters; the assigned-user keys are printed with spaces
in the docs, so both spellings are accepted."""
ACTIVITY_LIMITS = {"contactid": 50, "siteid": 255, "sitedomain": 255, "description": 2000}
COMMENT_LIMITS = {"contactid": 50, "description": 2000}
COMMENT_TYPES = {1: "Standard Comment", 5: "Text Message Sent", 8: "Text Message Received"}
ACTIVITY_TYPES = ("visit", "user_login", "search_performed", "saved_search_added", "saved_search_removed",
                  "property_viewed", "favorite_property_added", "favorite_property_removed")


class V1Error(Exception):
    """A v1 application error: answered as HTTP 200 {"error": code, "errorText": text}."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


@bp.post("/", strict_slashes=False)
def endpoint():
    """Authenticate, then run the body's `action`; with `v1_service: gone`, a retired host's 404 page.

    v1 was announced as shutting down in 2018 (docs/vendors/liondesk-api.md §8); what it answers
    once gone is unknown, so the knob answers an HTML 404, the harder case (not even JSON).
    """
    with sandbox_state() as state:
        if state.v1_service == "gone":
            return Response("<html><body><h1>404 Not Found</h1></body></html>", status=404, mimetype="text/html")
    body = json_body()
    try:
        if not isinstance(body, dict):
            raise V1Error(INVALID_REQUEST, "The request body must be a JSON object")
        with sandbox_state() as state:
            user_id = authenticate(state)
            action = ACTIONS.get(body.get("action"))
            if action is None:
                raise V1Error(UNKNOWN_ACTION, f"Unknown action {body.get('action')!r}")
            return jsonify({"error": 0, **action(state, user_id, body)})
    except V1Error as exc:
        return jsonify({"error": exc.code, "errorText": exc.text})


def authenticate(state: SandboxState) -> int:
    """The LionDesk user id behind the API key and X-LionDesk-Id, or a User Validation Error."""
    auth = request.authorization
    api_key = auth.username if auth and auth.type == "basic" else None
    user_id = state.v1_user_keys.get(request.headers.get("X-LionDesk-Id", ""))
    if api_key not in state.v1_api_keys or user_id is None:
        raise V1Error(USER_VALIDATION, "User Validation Error")
    return user_id


def check_strings(body: dict, limits: dict) -> dict:
    """The limited fields of `body` as strings, refusing any that is too long."""
    values = {}
    for field, limit in limits.items():
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise V1Error(INVALID_VALUE, f"{field} must be a string")
        value = str(value)
        if len(value) > limit:
            raise V1Error(TOO_LONG, f"{field} is longer than {limit} characters")
        values[field] = value
    return values


def resolve_contact(state: SandboxState, user_id: int, body: dict) -> dict:
    """The contact named by liondeskcontactid or contactid, owned by or assigned to the user."""
    if body.get("liondeskcontactid") not in (None, ""):
        contact = state.contacts.get(body["liondeskcontactid"])
    elif body.get("contactid") not in (None, ""):
        contact = state.contacts.get(state.v1_partner_contact_ids.get(str(body["contactid"])))
    else:
        raise V1Error(MISSING_FIELD, "liondeskcontactid or contactid is required")
    if contact is None:
        raise V1Error(CONTACT_NOT_FOUND, "Contact not found")
    if user_id not in (contact["owner_user_id"], contact["assigned_user_id"]):
        raise V1Error(NOT_YOUR_CONTACT, "The contact is not owned by or assigned to this user")
    return contact


def record_activity(state: SandboxState, user_id: int, contact: dict, body: dict, **fields) -> dict:
    """Store one comment or activity on a contact's timeline."""
    return state.v1_activities.insert({
        "contact_id": contact["id"], "partner_contact_id": body.get("contactid"), "user_id": user_id,
        "received_at": state.now(), **fields})


def echo(state, user_id, body):
    """Echo: change nothing, answer the sent fields back."""
    return {k: v for k, v in body.items() if k != "action"}


def get_users(state, user_id, body):
    """GetUsers: the users who authorised the partner (refused to the Personal partner)."""
    if request.authorization.username == V1_PERSONAL_API_KEY:
        raise V1Error(NOT_PERMITTED, "The Personal partner may not call GetUsers")
    return {"users": [{"userkey": key, "email": state.users.get(uid)["email"]}
                      for key, uid in state.v1_user_keys.items()]}


def new_submission(state, user_id, body):
    """NewSubmission: create a contact, or add only the comments to the one whose e-mail or phone matches."""
    values = check_strings(body, SUBMISSION_LIMITS)
    email, phone = values.get("email", ""), values.get("phone", "")
    if not (email or phone):
        raise V1Error(MISSING_FIELD, "A submission needs a phone or an email")
    contact = find_existing(state, email, phone)
    if contact is None:
        contact = data.create_contact(state, {
            "first_name": values.get("firstname"), "last_name": values.get("lastname"), "email": email or None,
            "mobile_phone": phone or None, "tags": values.get("tag"),
            "assigned_user_id": assigned_user_id(state, values)}, owner_user_id=user_id)
        if any(values.get(k) for k in ("street_address", "city", "state", "zip")):
            state.add_address(contact["id"], {"type": "Home", "street_address_1": values.get("street_address"),
                                              "street_address_2": None, "zip": values.get("zip"),
                                              "city": values.get("city"), "state": values.get("state")})
    if values.get("contactid"):
        state.v1_partner_contact_ids[values["contactid"]] = contact["id"]
    if values.get("comments"):
        record_activity(state, user_id, contact, body, kind="comment", type=1, description=values["comments"])
    return {"id": contact["id"]}


def find_existing(state: SandboxState, email: str, phone: str) -> dict | None:
    """The first contact whose e-mail (case-insensitively) or any phone (exactly) matches."""
    conditions = [Condition("email", "=", (email,))] if email else []
    conditions += [Condition(field, "=", (phone,)) for field in ("mobile_phone", "home_phone", "office_phone")
                   if phone]
    tests = [predicate(condition, data.CONTACT_COLLATION) for condition in conditions]
    return next((contact for contact in state.contacts if any(test(contact) for test in tests)), None)


def assigned_user_id(state: SandboxState, values: dict) -> int | None:
    """The user named by the submission's assigned-user e-mail, if one matches."""
    email = (values.get("assigned user email") or values.get("assigned_user_email") or "").casefold()
    return next((u["id"] for u in state.users if email and u["email"].casefold() == email), None)


def new_comment(state, user_id, body):
    """NewComment: add a comment (type 1, 5 or 8) to a contact."""
    values = check_strings(body, COMMENT_LIMITS)
    contact = resolve_contact(state, user_id, body)
    try:
        comment_type = int(body.get("type"))
    except (TypeError, ValueError):
        comment_type = None
    if comment_type not in COMMENT_TYPES:
        raise V1Error(INVALID_VALUE, f"type must be one of {sorted(COMMENT_TYPES)}")
    activity = record_activity(state, user_id, contact, body, kind="comment", type=comment_type,
                               description=values.get("description"))
    return {"id": activity["id"]}


def new_activity(state, user_id, body):
    """NewActivity: add a website activity (visit, property_viewed, ...) to a contact."""
    values = check_strings(body, ACTIVITY_LIMITS)
    contact = resolve_contact(state, user_id, body)
    if body.get("type") not in ACTIVITY_TYPES:
        raise V1Error(INVALID_VALUE, f"type must be one of {', '.join(ACTIVITY_TYPES)}")
    if body.get("created") not in (None, "") and not is_timestamp(body["created"]):
        raise V1Error(INVALID_VALUE, "created must be an ISO 8601 timestamp")
    if body.get("property") not in (None, "") and (problem := property_problem(body["property"])):
        raise V1Error(INVALID_VALUE, problem)
    activity = record_activity(state, user_id, contact, body, kind="activity", type=body["type"],
                               description=values.get("description"), siteid=values.get("siteid"),
                               sitedomain=values.get("sitedomain"), created=body.get("created") or None,
                               property=body.get("property") or None)
    return {"id": activity["id"]}


ACTIONS = {"Echo": echo, "GetUsers": get_users, "NewSubmission": new_submission,
           "NewComment": new_comment, "NewActivity": new_activity}
