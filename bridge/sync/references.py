"""LionDesk reference data the sync resolves names against: sources, routes, campaigns, users, hotnesses.

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


def lead_route(client: LionDeskClient, lead_source: int | None, contact_source: int | None) -> dict | None:
    """The lead route for this (lead source, contact source) pair, or None."""
    if lead_source is None or contact_source is None:
        return None

    def matches(route):
        return (str(_id(route, "lead_source", "lead_source_id")) == str(lead_source)
                and str(_id(route, "contact_source", "contact_source_id")) == str(contact_source))

    return client.find_reference("lead-routes", matches)


def route_campaign_id(route: dict):
    """The campaign a lead route starts."""
    return _id(route, "campaign", "campaign_id")


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


def user_ids_by_email(client: LionDeskClient) -> dict:
    """LionDesk user e-mail (casefolded) → user id, for the users who authorised our app."""
    return {folded(user.get("email")): user["id"] for user in client.reference("users") if user.get("email")}


def user_emails_by_id(client: LionDeskClient) -> dict:
    """LionDesk user id → e-mail (casefolded): the reverse of `user_ids_by_email`."""
    return {str(user["id"]): folded(user.get("email")) for user in client.reference("users") if user.get("email")}


def hotness_ids_by_name(client: LionDeskClient) -> dict:
    """LionDesk hotness name → id."""
    return {record["name"]: record["id"] for record in client.reference("hotnesses") if record.get("name")}


def hotness_names_by_id(client: LionDeskClient) -> dict:
    """LionDesk hotness id → name."""
    return {str(record["id"]): record["name"] for record in client.reference("hotnesses") if record.get("name")}
