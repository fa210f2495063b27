"""Reference data a fresh sandbox starts with, and the "demo" preset that wires a Real Geeks route.

A fresh sandbox has agents, lead sources, hotnesses, campaigns and a team, but no
contact source and no lead route: finding or creating those is the bridge's job, so
tests set them up explicitly (or load the demo preset).
"""

from __future__ import annotations

DEFAULT_SITE_UUID = "5ead6dd1-2cb9-4f80-80fc-5716b05c90ba"
"""The Real Geeks site bridge.sandbox.sample uses; any other well-formed site UUID works too."""

AGENTS = (
    # (first, last, email, phone, Real Geeks user id, Real Geeks admin)
    ("Alex", "Agent", "agent@example.com", "808-555-0101", "14187", True),
    ("Casey", "Rivera", "casey@example.com", "808-555-0102", "14188", False),
    ("Dana", "Kim", "dana@example.com", "808-555-0103", "14189", False),
)
"""The LionDesk users, who are also Real Geeks agents with the same e-mail. User 1
(Alex) is the account that authorised the sandbox app: every token belongs to it."""

LEAD_SOURCES = ("Website Property Search", "Website Property Valuation", "LeadManager", "Zillow")
HOTNESSES = (("Hot", 1, "#d9534f"), ("Warm", 2, "#f0ad4e"), ("Cold", 3, "#5bc0de"))
CAMPAIGNS = ("Buyer Drip", "Seller Drip")
TEAM_NAME = "Sandbox Team"
REAL_GEEKS_SOURCE_NAME = "Real Geeks"


def seed_reference_data(state) -> None:
    """Fill an empty state with users, lead sources, hotnesses, campaigns, a team and Real Geeks users."""
    now = state.now()
    for first, last, email, phone, _, _ in AGENTS:
        state.users.insert({
            "first_name": first, "last_name": last, "email": email, "username": email.split("@")[0],
            "phone": phone, "system_phone": None, "timezone_offset": -10, "timezone": "Pacific/Honolulu",
            "profile_picture": None, "is_active": 1, "created_at": now, "modified_at": now})
    for name in LEAD_SOURCES:
        state.lead_sources.insert({"name": name})
    for name, rank, color in HOTNESSES:
        state.hotnesses.insert({"name": name, "rank": rank, "color": color, "user_id": 1})
    for name in CAMPAIGNS:
        state.campaigns.insert({"name": name, "user_id": 1, "created_at": now, "modified_at": now,
                                "is_broker_sharing_on": False, "is_default": False, "is_shared_by_broker": False})
    team = state.teams.insert({"name": TEAM_NAME, "user_id": 1, "is_contact_resource_sharing_enabled": True,
                               "order_method": "Rank", "mins_until_next_alert": 5,
                               "distribution_zipcodes": "96815,96816"})
    for user in state.users:
        # Everyone is an accepted member of the team; /team-members is how the app sees
        # agents who never authorised it themselves (endpoints/team-members).
        state.team_members.insert({"team_id": team["id"], "user_id": user["id"], "request_status": "Accepted"})
    for rank, user in enumerate(state.users, start=1):
        # The third agent has every alert off: a member who gets no offer.
        alerts = rank < 3
        state.distribution_options.insert({
            "team_id": team["id"], "user_id": user["id"], "assign_automatically": rank == 1, "rank": rank,
            "mins_until_lead_offer": 5 * (rank - 1), "has_call_alert": False, "has_text_alert": alerts,
            "has_email_alert": alerts})
    state.realgeeks_users = [
        {"id": rg_id, "role": "Agent", "admin": admin, "name": f"{first} {last}", "email": email,
         "signature": f"{first} {last}, Sandbox Realty", "phone_company": "", "phone_office": "",
         "phone_cell": phone, "phone_home": ""}
        for first, last, email, phone, rg_id, admin in AGENTS
    ] + [{"id": "14190", "role": "Lender", "admin": False, "name": "Lee Lender", "email": "lender@example.com",
          "signature": "", "phone_company": "", "phone_office": "808-555-0190", "phone_cell": "", "phone_home": ""}]


def load_demo_preset(state) -> dict:
    """Add a "Real Geeks" contact source and two routes (idempotent); return what exists now."""
    source = next((s for s in state.contact_sources if s["name"] == REAL_GEEKS_SOURCE_NAME), None)
    if source is None:
        source = state.contact_sources.insert({"name": REAL_GEEKS_SOURCE_NAME, "user_id": 1,
                                               "created_at": state.now()})
    lead_source_ids = {s["name"]: s["id"] for s in state.lead_sources}
    campaign_ids = {c["name"]: c["id"] for c in state.campaigns}
    team_id = next(iter(state.teams))["id"]
    wanted = (
        {"lead_source_id": lead_source_ids["Website Property Search"], "campaign_id": campaign_ids["Buyer Drip"],
         "distribution_target": "Team Rollout", "team_selection_method": "Specific Team", "team_id": team_id,
         "filter": "Buyer"},
        {"lead_source_id": lead_source_ids["Website Property Valuation"], "campaign_id": campaign_ids["Seller Drip"],
         "distribution_target": "Myself", "team_selection_method": None, "team_id": None, "filter": "Seller"},
    )
    for route in wanted:
        route = {**route, "contact_source_id": source["id"], "user_id": 1}
        if not any(r["lead_source_id"] == route["lead_source_id"] and r["contact_source_id"] == source["id"]
                   for r in state.lead_routes):
            state.lead_routes.insert(route)
    return {"contact_source": source, "lead_routes": [r for r in state.lead_routes
                                                      if r["contact_source_id"] == source["id"]]}
