"""LionDesk reference data the sync resolves names against: sources, routes, campaigns, agents, hotnesses.

Every lookup goes through the client's Redis cache (reference data changes rarely), so with warm
caches a new lead costs only the calls it must make.
"""

from __future__ import annotations

from bridge.clients.liondesk import LionDeskClient
from bridge.translate.text import folded


def _id(record: dict | None, nested: str, flat: str):
    """An id a LionDesk record gives either flat (`lead_source_id`) or nested (`lead_source.id`)."""
    if record is None:
        return None
    if record.get(flat) is not None:
        return record[flat]
    return (record.get(nested) or {}).get("id")


def contact_source_id(client: LionDeskClient, name: str) -> int:
    """The id of the contact source called `name`, created when LionDesk has none."""
    found = client.find_reference("contact-sources", lambda r: folded(r.get("name")) == folded(name))
    return found["id"] if found else client.create_contact_source(name)["id"]


def lead_source_id(client: LionDeskClient, name: str | None):
    """The id of the (read-only) lead source called `name`, or None when LionDesk has none."""
    if not name:
        return None
    found = client.find_reference("lead-sources", lambda r: folded(r.get("name")) == folded(name))
    return found["id"] if found else None


def route_specificity(route: dict, lead_source, contact_source) -> int:
    """How well a lead route fits a lead: 0 not at all, else 3 (both sources), 2 (lead source only), 1 (contact source only).

    LionDesk applies a route "for a specific lead source and/or contact source" (endpoints/lead-offers):
    every source a route names must be the lead's, and a route may name only one. The ranking is ours
    (LionDesk documents none): both beat one, and a lead source beats a contact source because it
    names this enquiry's origin, while every Real Geeks contact shares one contact source.
    """
    named_lead = _id(route, "lead_source", "lead_source_id")
    named_contact = _id(route, "contact_source", "contact_source_id")
    if named_lead is None and named_contact is None:
        return 0
    if named_lead is not None and (lead_source is None or str(named_lead) != str(lead_source)):
        return 0
    if named_contact is not None and (contact_source is None or str(named_contact) != str(contact_source)):
        return 0
    return (2 if named_lead is not None else 0) + (1 if named_contact is not None else 0)


def lead_route(client: LionDeskClient, lead_source: int | None, contact_source: int | None) -> dict | None:
    """The most specific lead route for this lead source and contact source (the oldest on a tie), or None."""
    if lead_source is None and contact_source is None:
        return None
    # A miss fetches the list once more (a route may have been added since it was cached).
    if client.find_reference("lead-routes", lambda r: route_specificity(r, lead_source, contact_source)) is None:
        return None
    ranked = [(route_specificity(route, lead_source, contact_source), -int(route.get("id") or 0), route)
              for route in client.reference("lead-routes")]
    best = max((item for item in ranked if item[0]), key=lambda item: item[:2], default=None)
    return best[2] if best else None


def route_campaign_id(route: dict):
    """The campaign a lead route starts."""
    return _id(route, "campaign", "campaign_id")


def communication_campaign_id(communication: dict):
    """The campaign a campaign communication belongs to (flat or nested; its shape is not documented)."""
    return _id(communication, "campaign", "campaign_id")


def campaign_name_of(client: LionDeskClient, campaign_id) -> str | None:
    """The name (casefolded) of campaign `campaign_id` from the cached list, or None."""
    found = client.find_reference("campaigns", lambda r: str(r.get("id")) == str(campaign_id))
    return folded(found.get("name")) if found else None


def is_team_rollout(route: dict) -> bool:
    """Whether a lead route distributes offers to a team."""
    return folded(route.get("distribution_target")) == "team rollout"


def campaign_id_by_name(client: LionDeskClient, name: str):
    """The id of the campaign called `name` (exactly, ignoring case), searched with `$like` on a cache miss."""
    wanted = folded(name)
    found = client.find_reference("campaigns", lambda r: folded(r.get("name")) == wanted)
    if found is None:
        found = next((c for c in client.find_campaigns_like(name) if folded(c.get("name")) == wanted), None)
    return found["id"] if found else None


AGENT_SOURCES = ("users", "team-members", "sub-accounts")
"""Where LionDesk shows the account's agents (§10): `/users` lists only who holds a token for our
app (usually the broker alone), `/team-members` (accepted) and a broker's `/sub-accounts` the rest."""


def agent_directory(client: LionDeskClient) -> list[dict]:
    """Every LionDesk user the account works with, once each: the union of AGENT_SOURCES.

    Team members and sub-accounts carry the agent as a nested `user`. Each list is cached
    like other reference data; a list LionDesk refuses (no sub-accounts for a non-broker,
    /users for an app of another account) counts as empty.
    """
    users: dict[str, dict] = {}
    for kind in AGENT_SOURCES:
        for record in client.reference(kind):
            user = _agent_of(kind, record)
            if user.get("id") is not None and user.get("email"):
                users.setdefault(str(user["id"]), user)
    return list(users.values())


def agent_by_id(client: LionDeskClient, user_id) -> dict | None:
    """The directory's agent with this LionDesk user id, looking each list up again on a miss
    (at most once per REFERENCE_MISS_REFRESH_SECONDS each): an agent may have joined a team since."""
    for kind in AGENT_SOURCES:
        found = client.find_reference(kind, lambda r: str(_agent_of(kind, r).get("id")) == str(user_id))
        if found and _agent_of(kind, found).get("email"):
            return _agent_of(kind, found)
    return None


def _agent_of(kind: str, record: dict) -> dict:
    """The user a directory record describes (team members and sub-accounts nest it as `user`)."""
    return record if kind == "users" else (record.get("user") or {})


def user_ids_by_email(client: LionDeskClient) -> dict:
    """LionDesk user e-mail (casefolded) → user id, for every agent of the directory."""
    return {folded(user["email"]): user["id"] for user in agent_directory(client)}


def user_emails_by_id(client: LionDeskClient) -> dict:
    """LionDesk user id → e-mail (casefolded): the reverse of `user_ids_by_email`."""
    return {str(user["id"]): folded(user["email"]) for user in agent_directory(client)}


def hotness_ids_by_name(client: LionDeskClient) -> dict:
    """LionDesk hotness name → id."""
    return {record["name"]: record["id"] for record in client.reference("hotnesses") if record.get("name")}


def hotness_names_by_id(client: LionDeskClient) -> dict:
    """LionDesk hotness id → name."""
    return {str(record["id"]): record["name"] for record in client.reference("hotnesses") if record.get("name")}


def custom_field_ids_by_name(client: LionDeskClient) -> dict:
    """LionDesk custom field name (casefolded) → id, for the fields the account can see."""
    return {folded(record["name"]): record["id"] for record in client.reference("custom-fields") if record.get("name")}
