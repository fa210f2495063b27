"""Real Geeks lead → LionDesk lead: the enquiry (type, text, property) created for a contact.

`lead_body` builds a POST /leads body: a new record, so empty values are simply left
out (there is nothing to clear). The lead's text carries what the contact cannot hold
(status, source details, area, timeframe, notes, second e-mail, a potential seller's
estimated value, the site login link). When those change later, `text_fields` and
`details_changes` let the sync rewrite the text and tell the agent what changed.

Section numbers (§) refer to docs/vendors/liondesk-api.md.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.translate import liondesk
from bridge.translate.activity import most_recent, price_text
from bridge.translate.rules import lookup
from bridge.translate.states import state_code
from bridge.translate.text import folded
from bridge.translate.translation import Translation

PROPERTY_TO_LEAD = {"mls": "mls_id", "listing_price": "listing_price", "listing_status": "listing_status",
                    "street_address": "street_address", "city": "city", "state": "state", "zip": "zipcode"}
"""Real Geeks Property field → LionDesk lead field (docs/vendors/liondesk-api.md §4.7, §7.6: `zip` becomes `zipcode`)."""

ADDRESS_TO_LEAD = {"street_address": "street_address", "city": "city", "state": "state", "zip": "zipcode"}
"""Real Geeks lead address field → LionDesk lead field, for leads about the person's own home."""

# Label and lead field of each line of the lead's text, in the order agents read them.
_TEXT_LINES = (
    ("Source", "source"), ("Source details", "source_details"), ("Role", "role"), ("Status", "status"),
    ("Area", "region"), ("Timeframe", "timeframe"), ("Estimated value", "estimated_value"),
    ("Second email", "second_email"), ("Notes", "notes"),
    ("Log in as this lead", "site_login_url"), ("Real Geeks lead id", "received_id"),
)
_LABELS = dict((key, label) for label, key in _TEXT_LINES)

DETAIL_FIELDS = ("status", "timeframe", "notes", "region", "source_details", "second_email", "estimated_value")
"""Lead fields that live only in the LionDesk lead's text: a change of one rewrites it and goes on the timeline."""


def lead_type(lead: Mapping, rules: Mapping) -> str | None:
    """The LionDesk lead `type` for the lead's role (`lead.type_by_role`, else `lead.default_type`), or None."""
    return lookup(rules["lead"]["type_by_role"], lead.get("role")) or rules["lead"]["default_type"] or None


def lead_source_name(lead: Mapping, rules: Mapping) -> str | None:
    """The name of the LionDesk lead source to look up for the lead's `source`, or None for none."""
    source = str(lead.get("source") or "").strip()
    if not source:
        return None
    table = rules["lead"]["source_names"]
    mapped = lookup(table, source)
    # A source listed with "" is deliberately unmapped: send the lead without a source.
    listed = any(folded(key) == folded(source) for key in table)
    return mapped if listed else source


def campaign_name(lead: Mapping, rules: Mapping) -> str | None:
    """The LionDesk campaign to start for the lead's role when no lead route applies, or None."""
    return lookup(rules["campaigns"]["by_role"], lead.get("role"))


def _lead_fields(source: Mapping, mapping: Mapping[str, str]) -> dict:
    """Copy the non-empty fields of `source` under their LionDesk lead names, the state abbreviated."""
    fields = {target: str(source[name]).strip() for name, target in mapping.items()
              if source.get(name) not in (None, "") and str(source[name]).strip()}
    if "state" in fields:
        fields["state"] = state_code(fields["state"])  # leads want "WA", unlike addresses (§7.6)
    return fields


def lead_property(lead: Mapping, rules: Mapping) -> dict:
    """The LionDesk lead's property fields: the latest activity's property, else (owners) the lead's address."""
    with_property = [act for act in lead.get("activities") or () if act.get("property")]
    latest = most_recent(with_property)
    if latest is not None:
        return _lead_fields(latest["property"], PROPERTY_TO_LEAD)
    owners = {folded(role) for role in rules["lead"]["own_address_roles"]}
    if folded(lead.get("role")) in owners:
        address = dict(lead)
        if not address.get("street_address") and address.get("address"):
            address["street_address"] = address["address"]
        return _lead_fields(address, ADDRESS_TO_LEAD)
    return {}


def estimated_value(lead: Mapping) -> str | None:
    """A potential seller's estimated value: the latest activity property's `estimated_value`, or None."""
    valued = [act for act in lead.get("activities") or () if (act.get("property") or {}).get("estimated_value")]
    latest = most_recent(valued)
    return price_text(latest["property"]["estimated_value"]) if latest is not None else None


def text_fields(lead: Mapping) -> dict:
    """The values of the text's lines this delivery carries (absent stays absent, "" clears), stripped."""
    values = {key: str(lead[key]).strip() if lead[key] is not None else "" for _, key in _TEXT_LINES if key in lead}
    value = estimated_value(lead)
    if value is not None:
        values["estimated_value"] = value
    return values


def lead_text(lead: Mapping) -> str:
    """The lead's `text_body`: one labelled line per thing Real Geeks told us that the contact cannot hold."""
    values = text_fields(lead)
    return "\n".join(f"{label}: {values[key]}" for label, key in _TEXT_LINES if values.get(key))


def details_changes(old: Mapping, new: Mapping) -> list[str]:
    """Readable lines for the detail fields that differ ("Status: Dead (was Active)"); [] when none."""
    lines = []
    for key in DETAIL_FIELDS:
        if key in new and new[key] != old.get(key, ""):
            was = f" (was {old[key]})" if old.get(key) else ""
            lines.append(f"{_LABELS[key]}: {new[key] or '(cleared)'}{was}")
    return lines


def lead_body(lead: Mapping, rules: Mapping, *, contact_id, source_id=None) -> Translation:
    """Translate a loaded Real Geeks lead into a POST /leads body for the LionDesk contact `contact_id`."""
    body = {"contact_id": contact_id}
    if source_id is not None:
        body["source_id"] = source_id
    kind = lead_type(lead, rules)
    if kind:
        body["type"] = kind
    text = lead_text(lead)
    if text:
        body["text_body"] = text
    body.update(lead_property(lead, rules))
    return Translation(body=liondesk.checked(liondesk.LEAD_BODY, body))
