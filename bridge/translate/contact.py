"""Real Geeks lead → LionDesk contact and its address: the person's fields both sides keep.

Decisions, with the reason for each:
- Absent stays absent, "" clears: a key the lead does not carry produces no key (a PATCH
  leaves LionDesk alone); a cleared one produces "" (text) or null (ids).
- E-mail is written as Real Geeks gave it (stripped): the address is the person's and
  we do not rewrite it. It is COMPARED case-insensitively (`snapshot`), and searched
  both as given and lower-cased (`email_search_forms`) since LionDesk's search case
  sensitivity is unknown (docs/vendors/liondesk-api.md §7.1).
- `phone` → `mobile_phone` and `phone2` → `home_phone`, in the one format of
  `phones.display`.
- `second_email` has no home on a LionDesk contact (`spouse_email` is another person):
  it goes into the lead's text (`lead.lead_text`) and a note in the translation, so the
  lead's history shows where it went. Custom fields were rejected: assignees and
  teammates cannot see them (§4.3).
- The address becomes one LionDesk address record of `contact.address_type`, state
  spelled out (§4.2). Without `street_address`, the one-line `address` fills the street.
- Hotness and assigned agent are names (hotness name, agent e-mail) that become ids
  only with the caller's reference maps; unresolved names are noted, never guessed.

Section numbers (§) refer to docs/vendors/liondesk-api.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bridge.translate import limits, liondesk, phones
from bridge.translate.activity import assigned_agent_email
from bridge.translate.realgeeks import CLEARED
from bridge.translate.rules import lookup
from bridge.translate.states import state_name
from bridge.translate.text import folded
from bridge.translate.translation import Translation


@dataclass(frozen=True)
class SyncedField:
    """A person's field kept in step on both sides: its Real Geeks name and where LionDesk keeps it."""

    name: str
    liondesk: str
    record: str
    kind: str


CONTACT_FIELDS = (
    SyncedField("first_name", "first_name", "contact", "text"),
    SyncedField("last_name", "last_name", "contact", "text"),
    SyncedField("email", "email", "contact", "email"),
    SyncedField("phone", "mobile_phone", "contact", "phone"),
    SyncedField("phone2", "home_phone", "contact", "phone"),
    SyncedField("street_address", "street_address_1", "address", "text"),
    SyncedField("city", "city", "address", "text"),
    SyncedField("state", "state", "address", "state"),
    SyncedField("zip", "zip", "address", "text"),
)
"""The text fields of a person, by Real Geeks name; `record` is "contact" or "address"."""


def phone_region(rules: Mapping) -> str:
    """The region phone numbers without a country code belong to."""
    return rules["contact"]["phone_region"].strip().upper()


def hotness_for(urgency: str, rules: Mapping) -> str | None:
    """The LionDesk hotness name for a Real Geeks urgency: "" when cleared, None when the urgency maps to none."""
    if urgency == CLEARED:
        return CLEARED
    return lookup(rules["hotness"]["by_urgency"], urgency)


def realgeeks_values(lead: Mapping, rules: Mapping) -> dict:
    """The synced values a Real Geeks lead carries, by field name: absent keys stay absent, "" stays ""."""
    values = {field.name: lead[field.name] for field in CONTACT_FIELDS if field.name in lead}
    if "street_address" not in lead and "address" in lead:
        values["street_address"] = lead["address"]
    if "tags" in lead:
        values["tags"] = list(lead["tags"] or [])  # null and [] both clear
    hotness = hotness_for(lead["urgency"], rules) if "urgency" in lead else None
    if hotness is not None:
        values["hotness"] = hotness
    agent = assigned_agent_email(lead, rules)
    if agent is not None:
        values["agent_email"] = agent
    return values


def liondesk_text(field: SyncedField, value: str, region: str) -> str:
    """The text LionDesk gets for one field's value (before trimming): phones displayed, states spelled out."""
    if value == CLEARED:
        return CLEARED
    if field.kind == "phone":
        return phones.display(value, region)
    if field.kind == "state":
        return state_name(value)
    return value.strip()


def _id_for(ids: Mapping, name: str) -> object | None:
    """The id a reference map gives a name (case-insensitive), or None when the map lacks it."""
    wanted = folded(name)
    return next((value for key, value in ids.items() if folded(key) == wanted), None)


def _resolve(translation: Translation, what: str, key: str, name: str, ids: Mapping | None) -> None:
    """Put the id of `name` under `key` of the body ("" → null), or note that LionDesk has no such `what`."""
    if ids is None:
        return
    if name == CLEARED:
        translation.body[key] = None
        return
    found = _id_for(ids, name)
    if found is None:
        translation.notes.append(f"LionDesk has no {what} {name!r}; {key} left unchanged")
    else:
        translation.body[key] = found


def liondesk_contact(values: Mapping, rules: Mapping, *, base_tags: Iterable[str] = (), write_tags: bool = False,
                     source_id=None, hotness_ids: Mapping | None = None,
                     user_ids: Mapping | None = None) -> Translation:
    """Turn synced values (Real Geeks' or a snapshot's) into a LionDesk contact body and address record.

    Tags are written when `values` has them or `write_tags` is set: configured extra
    tags first, then `base_tags`, then the values' tags, within 508 characters.
    `hotness_ids` (hotness name → id) and `user_ids` (user e-mail → id) turn the
    hotness and agent into ids; without them the names stay in the translation only.
    """
    region = phone_region(rules)
    texts = {"contact": {}, "address": {}}
    for field in CONTACT_FIELDS:
        if field.name in values:
            texts[field.record][field.liondesk] = liondesk_text(field, values[field.name], region)
    body, trims = limits.fit("contact", texts["contact"], limits.CONTACT)
    address, address_trims = limits.fit("address", texts["address"], limits.ADDRESS)
    translation = Translation(body=body, trims=trims + address_trims)
    if "tags" in values or write_tags:
        tags = [*rules["contact"]["extra_tags"], *base_tags, *values.get("tags", ())]
        body["tags"], _, translation.dropped_tags = limits.fit_tags(tags)
        if translation.dropped_tags:
            translation.notes.append(f"tags over LionDesk's {limits.CONTACT_TAGS} characters dropped: "
                                     + ", ".join(translation.dropped_tags))
    if source_id is not None:
        body["source_id"] = source_id
    if "hotness" in values:
        translation.hotness = values["hotness"]
        _resolve(translation, "hotness", "hotness_id", values["hotness"], hotness_ids)
    if "agent_email" in values:
        translation.agent_email = values["agent_email"]
        _resolve(translation, "user with e-mail", "assigned_user_id", values["agent_email"], user_ids)
    translation.body = liondesk.checked(liondesk.CONTACT_BODY, body)
    if address:
        address = {"type": rules["contact"]["address_type"], **address}
        translation.address = liondesk.checked(liondesk.ADDRESS, address)
    return translation


def contact_body(lead: Mapping, rules: Mapping, *, first_sync: bool = False, existing_tags: str | None = None,
                 source_id=None, hotness_ids: Mapping | None = None,
                 user_ids: Mapping | None = None) -> Translation:
    """Translate a loaded Real Geeks lead into a LionDesk contact body (POST or PATCH) and address record.

    `first_sync`: the body creates the contact, or links an existing one to this lead,
    so tags are written even when the lead has none (the configured extra tags), with
    the linked contact's `existing_tags` kept first. Later updates write tags only when
    the lead carries `tags`. `source_id` (the contact source) is written when given.
    """
    base_tags = limits.split_tags(existing_tags) if first_sync else ()
    translation = liondesk_contact(realgeeks_values(lead, rules), rules, base_tags=base_tags,
                                   write_tags=first_sync, source_id=source_id,
                                   hotness_ids=hotness_ids, user_ids=user_ids)
    if lead.get("second_email"):
        translation.notes.append("second_email kept in the LionDesk lead text: contacts have no field for it")
    return translation


def email_search_forms(emails: Iterable[str | None]) -> list[str]:
    """Every form to search LionDesk's `email` with for these addresses: as given and lower-cased, no repeats."""
    forms = [form for email in emails if email and email.strip()
             for form in (email.strip(), email.strip().lower())]
    return list(dict.fromkeys(forms))
