"""Real Geeks → LionDesk: what each lead action means, done exactly once however often it arrives.

Every function here runs under the lead's lock (see handlers.py). The order of work is
chosen so that a crash at any point is repaired by the retry:
- the contact is looked up (stored link, then e-mail, then every phone form) before it
  is created, and the link is stored the moment LionDesk answers;
- the LionDesk lead, the campaign start and the lead offers are once-only effects
  recorded in Redis; a "pending" mark before each call tells a retry that the call may
  have happened already, so it checks instead of repeating it;
- each activity is marked delivered only after LionDesk took it.

A delivery for a lead the bridge has never linked that cannot create a contact (an
`activity_added`; a `created`, `unknown` or `updated` with no name, e-mail or phone) is
parked (`bridge.storage.parked`): the job succeeds, the story says it waits for Real
Geeks to send the lead's details, and `handlers.apply_parked` applies it, in order and
once, right after the first delivery that identifies the lead. No LionDesk contact is
ever created without a name, an e-mail or a phone.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from bridge.clients import liondesk as liondesk_channels
from bridge.exceptions import LionDeskAppConflict, UpstreamError, UpstreamRejected
from bridge.storage import history, kinds, mappings, parked
from bridge.sync import conflicts, references
from bridge.translate import activity as activities
from bridge.translate import phones
from bridge.translate.contact import CONTACT_FIELDS, contact_body, email_search_forms, phone_region
from bridge.translate.lead import campaign_name, details_changes, lead_body, lead_source_name, lead_text, text_fields
from bridge.translate.liondesk import (LEAD_REQUIRED_FIELDS, contact_criteria, custom_field_values,
                                       oldest_contact, with_numbers)
from bridge.translate.realgeeks import parse_instant
from bridge.translate.limits import fit_tags, split_tags
from bridge.translate.snapshot import (diff, empty_snapshot, liondesk_patch, merge_snapshot,
                                       snapshot_from_liondesk, snapshot_from_realgeeks, synced_tags)
from bridge.translate.text import folded

PENDING = "pending"
"""Value of a once-only effect whose call was sent but not confirmed."""


@dataclass
class Job:
    """One lead action in progress: the loaded lead, where it comes from, and what was done."""

    context: object
    lead: dict
    event_id: str
    received_ns: int
    done: list[str] = field(default_factory=list)
    parked: bool = False
    """Whether this delivery was parked to wait for the lead's details."""
    _link: mappings.LeadLink | None = field(default=None, repr=False)

    @property
    def link(self) -> mappings.LeadLink:
        """The lead's stored link, loaded once (the job holds the lead's lock; every write goes through it)."""
        if self._link is None:
            self._link = mappings.load_link(self.conn, self.lead_id)
        return self._link

    def relink(self, **changes) -> None:
        """Record link fields of the lead (`mappings.save_link`; `claim=False` keeps the contact's own link)."""
        mappings.save_link(self.conn, self.link, **changes)

    @property
    def lead_id(self) -> str:
        """The normalised Real Geeks lead id."""
        return self.lead["id"]

    @property
    def rules(self) -> dict:
        """The mapping rules in force."""
        return self.context.settings.rules

    @property
    def liondesk(self):
        """The LionDesk v2 client."""
        return self.context.clients.liondesk

    @property
    def conn(self):
        """The Redis client."""
        return self.context.redis

    def note(self, kind: str, **facts) -> None:
        """Write a fact into the lead's history, tagged with the event being processed."""
        history.append(self.conn, self.lead_id, kind, event_id=self.event_id, **facts)

    def did(self, what: str) -> None:
        """Remember one effect for the job's one-line summary."""
        self.done.append(what)


# -- the actions ---------------------------------------------------------------------------

IDENTITY_FIELDS = ("first_name", "last_name", "email", "phone", "phone2")
"""Lead fields of which one is needed to match or create a LionDesk contact."""


def identifies(lead: dict) -> bool:
    """Whether a delivery names the person: a name, an e-mail or a phone that is not empty."""
    return any(str(lead.get(name) or "").strip() for name in IDENTITY_FIELDS)


def park(job: Job, reason: str) -> None:
    """Keep the delivery until Real Geeks identifies the lead (not failed, not on the retry ladder)."""
    parked.park(job.conn, job.lead_id, job.event_id, time.time())
    job.parked = True
    job.note(kinds.PARKED, detail=parked.WAITING_FOR_DETAILS, reason=reason)
    job.did(parked.WAITING_FOR_DETAILS)


def expire_parked(context) -> None:
    """Drop parked deliveries older than BRIDGE_PARKED_EXPIRY_DAYS, with a story entry for each lead.

    Swept by every event job and, with the reverse sync on, every poll (each LIONDESK_POLL_SECONDS),
    so parked work expires even while no delivery comes.
    """
    days = context.settings.parked_expiry_days
    for lead_id, event_ids in parked.expire(context.redis, time.time() - days * 86400):
        history.append(context.redis, lead_id, kinds.PARKED_EXPIRED, event_ids=event_ids,
                       detail=f"Real Geeks sent no name, e-mail or phone for this lead within {days} days: "
                              f"{len(event_ids)} waiting delivery(ies) dropped")


def upsert(job: Job) -> None:
    """`created` / `unknown`: make sure the contact, the lead, its campaign, offers and activities exist."""
    link = job.link
    if not link.linked and not identifies(job.lead):
        park(job, "the lead has no name, e-mail or phone yet: no LionDesk contact can be matched or created")
        return
    if link.linked:
        contact_id = link.contact_id
        apply_changes(job)
        sync_lead_details(job)
        if link.origin == mappings.LIONDESK_ORIGIN or link.shared_with:
            # The echo of a lead made from a LionDesk contact, or a second lead of another lead's
            # contact: that contact's own lead carries its enquiry, campaign and offers.
            deliver_activities(job, contact_id, job.lead.get("activities") or [])
            return
    else:
        contact_id = link_or_create_contact(job)
        if job.link.shared_with:
            deliver_activities(job, contact_id, job.lead.get("activities") or [])
            return
    lead_id = ensure_lead(job, contact_id)
    start_campaign_and_offers(job, contact_id, lead_id)
    deliver_activities(job, contact_id, job.lead.get("activities") or [])


def update(job: Job) -> None:
    """`updated`: PATCH only the fields that changed since the last sync; unknown leads are created."""
    link = job.link
    if not link.linked:
        if not identifies(job.lead):
            park(job, "an update of a lead the bridge has not seen, without name, e-mail or phone")
            return
        job.note(kinds.UPDATE_BEFORE_CREATE, detail="no LionDesk contact linked yet: handled as created")
        upsert(job)
        return
    apply_changes(job)
    sync_lead_details(job)
    deliver_activities(job, link.contact_id, job.lead.get("activities") or [])


def add_activities(job: Job) -> None:
    """`activity_added`: deliver each new activity once; a lead not in LionDesk yet is parked until it is."""
    link = job.link
    if not link.linked:
        park(job, "activities of a lead the bridge has not seen yet")
        return
    deliver_activities(job, link.contact_id, job.lead.get("activities") or [])


# -- contact -------------------------------------------------------------------------------


def find_existing_contact(job: Job) -> tuple[dict | None, str | None]:
    """Find a LionDesk contact for the lead: by e-mail (case-insensitive), then by every phone form
    on `mobile_phone`, `home_phone` and `office_phone`. Returns the contact and how it matched.

    The client searches (one `$or` query where LionDesk proves it honours it, else one query
    per field) and checks every contact it gets back against the criteria.
    """
    lead = job.lead
    criteria = contact_criteria(email_search_forms([lead.get("email"), lead.get("second_email")]),
                                [lead.get("phone"), lead.get("phone2")], phone_region(job.rules))
    return job.liondesk.find_matching_contact(criteria)


def _contact_of_a_dead_attempt(job: Job, source_id) -> tuple[dict | None, str | None]:
    """Find the contact an earlier attempt created but did not record, for a lead with no e-mail or phone.

    Only runs when that attempt left its "pending" mark: then a contact of our contact
    source with exactly this name, not linked to another lead, is the one it created.
    A lead with an e-mail or phone is never matched by name: the searches would have
    found its own contact, so a namesake is someone else (the create that failed never
    happened, e.g. a 5xx or 429 answered before LionDesk did anything).
    """
    lead = job.lead
    if email_search_forms([lead.get("email"), lead.get("second_email")]) or \
            phones.search_forms([lead.get("phone"), lead.get("phone2")], phone_region(job.rules)):
        return None, None
    names = [(key, lead[key]) for key in ("first_name", "last_name") if lead.get(key)]
    if not names:
        return None, None
    found = [c for c in job.liondesk.find_contacts([*names, ("source_id", source_id)])
             if mappings.lead_of_contact(job.conn, c["id"]) in (None, job.lead_id)]
    return (oldest_contact(found), "name after an interrupted attempt") if found else (None, None)


def contact_ids(job: Job) -> dict:
    """The reference ids a contact body needs: contact source, and hotness / user maps when the lead uses them."""
    client, lead = job.liondesk, job.lead
    ids = {"source_id": references.contact_source_id(client, job.rules["contact"]["source_name"])}
    if "urgency" in lead:
        ids["hotness_ids"] = references.hotness_ids_by_name(client)
    if activities.assigned_agent_email(lead, job.rules) is not None:
        ids["user_ids"] = references.user_ids_by_email(client)
    return ids


def link_or_create_contact(job: Job):
    """Link the lead to the LionDesk contact it matches, or create one; return the contact id."""
    contact, matched_by = find_existing_contact(job)
    ids = contact_ids(job)
    if contact is None and mappings.effect_state(job.conn, job.lead_id, "contact") == PENDING:
        contact, matched_by = _contact_of_a_dead_attempt(job, ids["source_id"])
    if contact is not None:
        return link_matched_contact(job, contact, matched_by, ids)
    return create_contact(job, ids)


# -- contacts that belong to someone already ----------------------------------------------

PERSON_FIELDS = tuple(field.name for field in CONTACT_FIELDS)
"""The person's own details (name, e-mail, phones, address): never overwritten on a contact the bridge did not
create for this lead, only filled where empty."""

_PERSON_KEYS = frozenset(field.liondesk for field in CONTACT_FIELDS if field.record == "contact")
_LABELS = {"first_name": "first name", "last_name": "last name", "email": "e-mail", "phone": "phone",
           "phone2": "second phone", "street_address": "street", "city": "city", "state": "state", "zip": "zip"}


def owner_of(job: Job, contact_id) -> str:
    """The Real Geeks lead a matched contact belongs to: its linked lead, else this one (claimed atomically).

    A reverse map whose lead links another contact is stale (that lead moved on) and is taken over.
    """
    owner = mappings.lead_of_contact(job.conn, contact_id)
    if owner not in (None, job.lead_id) and mappings.load_link(job.conn, owner).contact_id != str(contact_id):
        mappings.release_contact(job.conn, contact_id, owner)
        owner = None
    if owner is None and mappings.claim_contact(job.conn, contact_id, job.lead_id):
        return job.lead_id
    return owner or mappings.lead_of_contact(job.conn, contact_id) or job.lead_id


def withheld_fields(contact_snapshot: dict, lead_snapshot: dict) -> dict:
    """Person fields the contact holds (not empty) that the lead would change or clear: field → (contact's, lead's)."""
    return {name: (contact_snapshot[name], lead_snapshot[name]) for name in PERSON_FIELDS
            if contact_snapshot.get(name) and name in lead_snapshot and lead_snapshot[name] != contact_snapshot[name]}


def link_matched_contact(job: Job, contact: dict, matched_by: str, ids: dict):
    """Link the lead to a contact it matched without taking it over; return the contact id.

    The contact was not created by the bridge for this lead, so it is someone's: its
    populated name, e-mail, phones and address are never overwritten (empty ones are
    filled), the differing values go on its timeline for the agent, and a contact linked
    to another Real Geeks lead keeps that link (this lead shares it: `shared_with`).
    """
    client, contact_id = job.liondesk, contact["id"]
    owner = owner_of(job, contact_id)
    shared = owner != job.lead_id
    translation = contact_body(job.lead, job.rules, first_sync=not shared, existing_tags=contact.get("tags"), **ids)
    body = translation.body
    if shared:  # the other lead's sync owns its tags, hotness, agent and custom fields
        body = {key: value for key, value in body.items() if key in _PERSON_KEYS}
    else:
        _add_custom_fields(job, translation)
    kept = theirs(contact, body)  # its contact source and hotness stay its own
    job.relink(claim=not shared, contact_id=contact_id, site_uuid=job.lead.get("site_uuid"),
               received_id=job.lead.get("received_id"), applied_ns=job.received_ns, matched_by=matched_by,
               shared_with=owner if shared else None,
               contact_source_id=contact.get("source_id") or ids["source_id"])
    filled = {key: value for key, value in body.items()
              if key not in kept and (key not in _PERSON_KEYS or not contact.get(key)) and contact.get(key) != value}
    if filled:
        client.update_contact(contact_id, filled)
    contact_snapshot = snapshot_from_liondesk(contact, job.rules)
    lead_snapshot = snapshot_from_realgeeks(job.lead, job.rules)
    withheld = withheld_fields(contact_snapshot, lead_snapshot)
    job.note(kinds.CONTACT_LINKED, contact_id=contact_id, matched_by=matched_by, changed=sorted(filled) or None,
             kept=sorted(kept) or None, shared_with=owner if shared else None, withheld=sorted(withheld) or None,
             **translation.facts())
    job.did(f"linked contact {contact_id} by {matched_by}" + (f", shared with lead {owner}" if shared else ""))
    if shared:
        history.append(job.conn, owner, kinds.SECOND_LEAD_MATCHED, other_lead=job.lead_id, contact_id=contact_id,
                       matched_by=matched_by, detail="another Real Geeks lead matched this lead's contact; "
                                                     "the contact and its link were left as they are")
    if translation.address and not _has_address(contact, translation.address):
        _save_address(job, contact_id, translation.address, contact)
    tell_agent_of_withheld(job, contact_id, withheld, matched_by)
    agreed = merge_snapshot(merge_snapshot(contact_snapshot, lead_snapshot),
                            {name: contact_snapshot[name] for name in withheld})
    mappings.save_snapshot(job.conn, job.lead_id, merge_snapshot(empty_snapshot(), agreed))
    return contact_id


def _has_address(contact: dict, address: dict) -> bool:
    """Whether the contact has an address record of the type the bridge writes (then it is the person's)."""
    return any(str(record.get("type")) == address.get("type") for record in contact.get("addresses") or ())


def tell_agent_of_withheld(job: Job, contact_id, withheld: dict, why: str) -> None:
    """Put the values Real Geeks holds but the contact was not given on the contact's timeline, once per set."""
    if not withheld:
        return
    seen = hashlib.sha256(json.dumps(withheld, sort_keys=True).encode()).hexdigest()[:32]
    if job.link.withheld_seen == seen:
        return
    name = " ".join(str(job.lead.get(key) or "").strip() for key in ("first_name", "last_name")).strip()
    lines = [f"Real Geeks lead {job.lead.get('received_id') or job.lead_id}" + (f" ({name})" if name else "")
             + f" ({why}) holds other details; this contact was left as it is:"]
    lines += [f"- {_LABELS.get(field, field)}: {lead_value or '(cleared)'}"
              + (f" (here: {contact_value})" if contact_value else "")
              for field, (contact_value, lead_value) in sorted(withheld.items())]
    _comment(job, contact_id, {"type": "note", "source": "bridge", "description": "\n".join(lines)})
    job.relink(withheld_seen=seen)
    job.note(kinds.CONTACT_PROTECTED, contact_id=contact_id, fields=sorted(withheld),
             detail="values not written to a contact that is someone else's; put on its timeline instead")


def create_contact(job: Job, ids: dict):
    """Create the LionDesk contact of a lead that matched none; return its id."""
    client = job.liondesk
    translation = contact_body(job.lead, job.rules, first_sync=True, **ids)
    _add_custom_fields(job, translation)
    mappings.mark_effect(job.conn, job.lead_id, "contact", PENDING)
    created = client.create_contact(translation.body)
    contact_id = created["id"]
    job.relink(contact_id=contact_id, site_uuid=job.lead.get("site_uuid"),
               received_id=job.lead.get("received_id"), applied_ns=job.received_ns,
               contact_source_id=ids["source_id"])
    mappings.mark_effect(job.conn, job.lead_id, "contact", "done")
    job.note(kinds.CONTACT_CREATED, contact_id=contact_id, **translation.facts())
    job.did(f"created contact {contact_id}")
    _save_address(job, contact_id, translation.address, None)
    mappings.save_snapshot(job.conn, job.lead_id,
                           merge_snapshot(empty_snapshot(), snapshot_from_realgeeks(job.lead, job.rules)))
    return contact_id


def _add_custom_fields(job: Job, translation) -> None:
    """Put the rules' `[custom_fields]` values into a contact body (nothing, and no call, when none are mapped)."""
    if not any((job.rules.get("custom_fields") or {}).values()):
        return
    values, notes = custom_field_values(job.lead, job.rules, references.custom_field_ids_by_name(job.liondesk))
    translation.notes.extend(notes)
    if values:
        translation.body["custom_fields"] = values


KEPT_ON_LINK = ("source_id", "hotness_id")
"""What an existing contact keeps when a lead is linked to it: its contact source is its origin
(a Zillow or referral contact stays one, §10) and its hotness the agent's judgement."""


def theirs(contact: dict, body: dict) -> set[str]:
    """The fields of `body` an existing contact already has a value for that is not ours to replace."""
    return {key for key in KEPT_ON_LINK if key in body and contact.get(key) not in (None, 0, "")}


def _save_address(job: Job, contact_id, address: dict | None, contact: dict | None) -> None:
    """Write the lead's address record: PATCH the one we wrote before (or the contact's), else POST it."""
    if not address:
        return
    address_id = job.link.address_id
    if address_id is None and contact is not None:
        existing = [a for a in contact.get("addresses") or [] if str(a.get("type")) == address.get("type")]
        address_id = existing[0]["id"] if existing else None
    if address_id is not None:
        job.liondesk.update_address(contact_id, address_id, address)
    else:
        address_id = job.liondesk.create_address(contact_id, address)["id"]
    job.relink(address_id=address_id)


def apply_changes(job: Job) -> None:
    """PATCH the linked contact with the fields that changed since the last sync ("" clears them).

    An update older than the last one applied (by X-Lead-Router-Timestamp, else receipt
    time) is stale: applying it would undo a newer change, so its fields are skipped.
    """
    link = job.link
    if job.received_ns < link.applied_ns:
        job.note(kinds.STALE_UPDATE_SKIPPED, detail="an update newer than this one was already applied")
        return
    old = mappings.get_snapshot(job.conn, job.lead_id) or empty_snapshot()
    changed = _without_overruled(job, link, diff(old, snapshot_from_realgeeks(job.lead, job.rules)), job.received_ns)
    if link.shared_with:
        # Another lead's contact: this lead's changes are told to the agent, never written.
        withheld = {name: ("", value) for name, value in changed.items() if name in PERSON_FIELDS}
        tell_agent_of_withheld(job, link.contact_id, withheld, f"sharing the contact of lead {link.shared_with}")
        mappings.save_snapshot(job.conn, job.lead_id, merge_snapshot(old, changed))
        job.relink(applied_ns=job.received_ns)
        return
    withheld = {}
    if link.matched_by:
        withheld = {name: (old[name], changed[name]) for name in PERSON_FIELDS if name in changed and old.get(name)}
        tell_agent_of_withheld(job, link.contact_id, withheld, f"matched by {link.matched_by}")
        changed = {name: value for name, value in changed.items() if name not in withheld}
    if changed:
        client = job.liondesk
        ids = {}
        if "hotness" in changed:
            ids["hotness_ids"] = references.hotness_ids_by_name(client)
        if "agent_email" in changed:
            ids["user_ids"] = references.user_ids_by_email(client)
        translation = liondesk_patch(changed, job.rules, **ids)
        if "tags" in translation.body:
            translation.body["tags"] = _with_their_tags(job, link.contact_id, translation.body["tags"], old)
        if translation.body:
            client.update_contact(link.contact_id, translation.body)
        _save_address(job, link.contact_id, translation.address, None)
        job.note(kinds.CONTACT_UPDATED, contact_id=link.contact_id, fields=sorted(changed), **translation.facts())
        job.did(f"updated {', '.join(sorted(changed))}")
    mappings.save_snapshot(job.conn, job.lead_id, merge_snapshot(old, changed))
    job.relink(applied_ns=job.received_ns)


def _with_their_tags(job: Job, contact_id, tags: str, old: dict) -> str:
    """Our new `tags` string plus the contact's tags the bridge never synced (added in LionDesk), kept after ours.

    LionDesk holds tags as one string (§4.6), so writing Real Geeks' list alone would erase
    the tags agents added there; one read of the contact tells which those are.
    """
    current = synced_tags(job.liondesk.get_contact(contact_id).get("tags"), job.rules)
    known = {tag.casefold() for tag in old.get("tags") or ()} | {t.casefold() for t in split_tags(tags)}
    theirs_only = [tag for tag in current if tag.casefold() not in known]
    if not theirs_only:
        return tags
    merged, _, dropped = fit_tags([*split_tags(tags), *theirs_only])
    job.note(kinds.TAGS_KEPT, tags=theirs_only, dropped=dropped or None,
             detail="tags added in LionDesk kept beside Real Geeks' own")
    return merged


def _without_overruled(job: Job, link: mappings.LeadLink, changed: dict, change_ns: int) -> dict:
    """Drop the fields the reverse sync wrote to Real Geeks after `change_ns`: Real Geeks holds that newer value."""
    overruled = conflicts.overruled_by_push(link, changed, change_ns)
    if overruled:
        job.note(kinds.CONFLICT_RESOLVED, fields=overruled, winner="liondesk", detail=conflicts.OVERRULED)
    return {name: value for name, value in changed.items() if name not in overruled}


# -- lead, campaign, offers ----------------------------------------------------------------


def sync_lead_details(job: Job) -> None:
    """Rewrite the LionDesk lead's text when a detail only it holds changed (status, timeframe, notes...).

    Status, timeframe, notes, area, source details and the second e-mail have no home on
    a LionDesk contact, so they live in the lead's text: a change rewrites the text
    (PATCH /leads/{id}) and goes on the contact's timeline, so the agent sees it happen.
    """
    link = job.link
    if link.liondesk_lead_id is None or link.shared_with or job.received_ns < link.applied_ns:
        return  # no LionDesk lead of its own, or a stale delivery (a newer one was applied)
    try:
        old = json.loads(link.lead_text or "{}")
    except ValueError:
        old = {}
    new = {**old, **text_fields(job.lead)}
    changes = details_changes(old, new)
    if not changes:
        if new != old:  # other lines (the login link, the id as spelt) changed: remember them quietly
            job.relink(lead_text=json.dumps(new, sort_keys=True))
        return
    job.liondesk.update_lead(link.liondesk_lead_id, {"text_body": lead_text(new)})
    job.relink(lead_text=json.dumps(new, sort_keys=True))
    _comment(job, link.contact_id, {"type": "note", "source": "bridge",
                                    "description": "Real Geeks lead details changed:\n" + "\n".join(changes)})
    job.note(kinds.LEAD_DETAILS_UPDATED, liondesk_lead_id=link.liondesk_lead_id, changes=changes)
    job.did("updated lead details: " + ", ".join(line.split(":")[0] for line in changes))


def ensure_lead(job: Job, contact_id):
    """Create the one LionDesk lead of this Real Geeks lead unless it exists; return its id.

    A "pending" mark goes down before the POST: a retry that finds it (the worker died
    between LionDesk's answer and recording the id) looks the lead up by contact first.
    """
    if job.link.liondesk_lead_id is not None:
        return job.link.liondesk_lead_id
    client = job.liondesk
    if mappings.effect_state(job.conn, job.lead_id, "lead") == PENDING:
        found = client.find_leads([("contact_id", contact_id)])
        if found:
            lead_id = min(lead["id"] for lead in found)
            job.relink(liondesk_lead_id=lead_id)
            job.note(kinds.LEAD_RECOVERED, liondesk_lead_id=lead_id,
                     detail="created by an earlier attempt that stopped before recording it")
            return lead_id
    source_name = lead_source_name(job.lead, job.rules)
    source_id = references.lead_source_id(client, source_name)
    if source_name and source_id is None:
        job.note(kinds.NO_LEAD_SOURCE, detail=f"LionDesk has no lead source named {source_name!r}; "
                                          "the lead is sent without one (lead sources are read-only)")
    translation = lead_body(job.lead, job.rules, contact_id=contact_id, source_id=source_id)
    mappings.mark_effect(job.conn, job.lead_id, "lead", PENDING)
    created = _create_lead(job, with_numbers(translation.body))
    job.relink(liondesk_lead_id=created["id"], lead_source_id=source_id,
               lead_text=json.dumps(text_fields(job.lead), sort_keys=True))
    mappings.mark_effect(job.conn, job.lead_id, "lead", "done")
    job.note(kinds.LEAD_CREATED, liondesk_lead_id=created["id"], source_id=source_id, **translation.facts())
    job.did(f"created lead {created['id']}")
    return created["id"]


def _create_lead(job: Job, body: dict) -> dict:
    """POST the lead; a 400 naming optional fields is retried once without them (recorded in the story).

    A property detail LionDesk will not take (an alphanumeric MLS number where it wants a
    number, §10) must not lose the lead: the text body still carries what Real Geeks sent.
    """
    try:
        return job.liondesk.create_lead(body)
    except UpstreamRejected as exc:
        dropped = sorted(set(exc.fields) & set(body) - LEAD_REQUIRED_FIELDS)
        if not dropped:
            raise
        job.note(kinds.LEAD_FIELDS_DROPPED, fields=dropped,
                 detail=f"LionDesk refused them ({exc}); the lead was sent without them")
        return job.liondesk.create_lead({key: value for key, value in body.items() if key not in dropped})


def _once(job: Job, effect: str, kind: str, call, describe: str, already_done=None) -> None:
    """Run a once-only LionDesk call for the lead, marking it pending first and done after.

    A retry that finds the mark still pending knows the call may have reached LionDesk, and
    LionDesk may accept a duplicate (a second drip, a second round of offers): so it asks
    `already_done()` first and repeats the call only when LionDesk shows no trace of it. A
    refusal is success when LionDesk then shows the effect ("already in this campaign").
    Without `already_done`, a refusal of a repeat counts as done.
    """
    state = mappings.effect_state(job.conn, job.lead_id, effect)
    if state is not None and state != PENDING:
        return
    if state == PENDING and already_done is not None:
        seen = _seen_in_liondesk(job, effect, already_done)
        if seen is not False:
            mappings.mark_effect(job.conn, job.lead_id, effect, "done")
            return
    mappings.mark_effect(job.conn, job.lead_id, effect, PENDING)
    try:
        call()
    except UpstreamRejected as exc:
        if already_done is not None:
            if _seen_in_liondesk(job, effect, already_done) is not True:
                raise
        elif state is None:
            raise
        job.note(kinds.EFFECT_ALREADY_DONE, effect=effect, detail=f"LionDesk refused a repeat: {exc}")
    mappings.mark_effect(job.conn, job.lead_id, effect, "done")
    job.note(kind, detail=describe)
    job.did(describe)


def _seen_in_liondesk(job: Job, effect: str, already_done) -> bool | None:
    """Ask LionDesk whether an effect happened: True, False, or None when it cannot tell (story entry each)."""
    try:
        seen = bool(already_done())
    except (UpstreamRejected, LionDeskAppConflict) as exc:
        job.note(kinds.EFFECT_UNVERIFIED, effect=effect,
                 detail=f"LionDesk could not say whether it happened ({exc}); not repeated, to avoid a duplicate")
        return None
    if seen:
        job.note(kinds.EFFECT_ALREADY_DONE, effect=effect, detail="LionDesk shows it happened before the crash")
    return seen


def start_campaign_and_offers(job: Job, contact_id, lead_id) -> None:
    """Start the campaign of the lead route (or the role's configured one) and make team-rollout offers.

    The route is the most specific one for the lead's lead source and its contact's source
    (references.route_specificity); with no route and no configured campaign the story says so.
    """
    client = job.liondesk
    contact_source = job.link.contact_source_id or references.contact_source_id(
        client, job.rules["contact"]["source_name"])
    route = references.lead_route(client, job.link.lead_source_id, contact_source)
    campaign_id = references.route_campaign_id(route) if route else None
    if campaign_id is None:
        name = campaign_name(job.lead, job.rules)
        campaign_id = references.campaign_id_by_name(client, name) if name else None
        if name and campaign_id is None:
            job.note(kinds.NO_CAMPAIGN, detail=f"LionDesk has no campaign named {name!r}")
        elif not name and route is None:
            job.note(kinds.NO_CAMPAIGN, detail="no LionDesk lead route matches this lead's lead source or contact "
                                           "source, and no campaign is configured for its role")
    if campaign_id is not None:
        _once(job, f"campaign:{campaign_id}", kinds.CAMPAIGN, lambda: client.start_campaign(campaign_id, contact_id),
              f"started campaign {campaign_id}", already_done=lambda: _in_campaign(client, contact_id, campaign_id))
    if route and references.is_team_rollout(route):
        _once(job, "offers", kinds.OFFERS, lambda: client.create_lead_offers(lead_id), f"created lead offers for lead {lead_id}",
              already_done=lambda: bool(client.list_lead_offers(lead_id)))


def _in_campaign(client, contact_id, campaign_id) -> bool:
    """Whether LionDesk lists communications of this campaign for the contact (the documented check, §4.13)."""
    name = references.campaign_name_of(client, campaign_id)
    for communication in client.campaign_communications(contact_id):
        if str(references.communication_campaign_id(communication)) == str(campaign_id):
            return True
        if name and folded(communication.get("campaign_name")) == name:
            return True
    return False


# -- activities ----------------------------------------------------------------------------


def deliver_activities(job: Job, contact_id, items: list[dict]) -> None:
    """Bring each activity to LionDesk once: assignments set the agent, notes become comments, the rest the timeline.

    A lead sharing another lead's contact never reassigns it: its assignments go on the timeline.
    """
    shared = bool(job.link.shared_with)
    for item in items:
        fingerprint = activities.fingerprint(job.lead_id, item)
        if mappings.activity_seen(job.conn, job.lead_id, fingerprint):
            continue
        kind = activities.classify_activity(item, job.rules)
        if shared and kind in (activities.ASSIGN, activities.UNASSIGN):
            kind = activities.TIMELINE
        if kind in (activities.ASSIGN, activities.UNASSIGN):
            _assign(job, contact_id, item, kind)
        elif kind in (activities.FOLLOWUP, activities.FOLLOWUP_DONE):
            _followup(job, contact_id, item, done=kind == activities.FOLLOWUP_DONE)
        elif kind == activities.NOTE:
            _comment(job, contact_id, item)
        elif kind == activities.TIMELINE:
            _timeline(job, contact_id, item)
        mappings.mark_activity(job.conn, job.lead_id, fingerprint)


def _assign(job: Job, contact_id, item: dict, kind: str) -> None:
    """Set (or clear) the contact's assigned LionDesk user, unless the snapshot says it already is.

    A user named by id only is looked up in the site's Real Geeks users; one that cannot be
    found leaves the assignment as it is (never un-assigns), with a story entry.
    """
    email = ""
    if kind == activities.ASSIGN:
        email = activities.liondesk_email_of(realgeeks_user(job, item.get("user") or {}), job.rules) or ""
        if not email:
            job.note(kinds.ASSIGNMENT_UNRESOLVED, user_id=(item.get("user") or {}).get("id"),
                     detail="Real Geeks named the agent by an id the bridge could not resolve to an e-mail "
                            "(Users API); the LionDesk assignment is left unchanged")
            return
    snapshot = mappings.get_snapshot(job.conn, job.lead_id) or empty_snapshot()
    if snapshot.get("agent_email", "") == folded(email):
        return  # already applied, e.g. folded into the contact we just created
    if not _without_overruled(job, job.link, {"agent_email": email}, activities.created_ns(item) or job.received_ns):
        return
    user_id = None
    if email:
        user_id = references.user_ids_by_email(job.liondesk).get(folded(email))
        if user_id is None:
            job.note(kinds.AGENT_NOT_FOUND, detail=f"no LionDesk user with e-mail {email}: assignment left unchanged")
            return
    job.liondesk.update_contact(contact_id, {"assigned_user_id": user_id})
    mappings.save_snapshot(job.conn, job.lead_id, {**snapshot, "agent_email": folded(email)})
    job.note(kinds.ASSIGNED if user_id else kinds.UNASSIGNED, contact_id=contact_id, user_id=user_id)
    job.did(f"assigned user {user_id}" if user_id else "unassigned")


def realgeeks_user(job: Job, user: dict) -> dict:
    """An activity's user, completed from the site's Users API list when it carries only its id.

    Without Incoming API credentials, or a site, or when Real Geeks refuses the listing, the
    user stays as sent (the caller notes it unresolved). The list is cached and listed
    afresh once on a miss (`RealGeeksClient.find_user`); `user_updated` drops the cache.
    """
    client = job.context.clients.realgeeks
    if user.get("email") or not user.get("id") or client is None:
        return user
    site_uuid = job.lead.get("site_uuid") or job.link.site_uuid \
        or str(job.rules["reverse"].get("site_uuid") or "").strip()
    if not site_uuid:
        return user
    try:
        found = client.find_user(site_uuid, str(user["id"]))
    except UpstreamError as exc:
        if exc.status is None or exc.status >= 500 or exc.status == 429:
            raise  # Real Geeks is away or busy: the job retries on its ladder
        # A refusal (bad credentials, a site not granted to us) will not pass by retrying the lead.
        job.note(kinds.REALGEEKS_USERS_REFUSED, site_uuid=site_uuid, error=str(exc)[:300])
        return user
    return {**user, **found} if found else user


def _followup(job: Job, contact_id, item: dict, *, done: bool) -> None:
    """A Real Geeks follow-up: an open LionDesk task when created, completed when Real Geeks completes it.

    The task id is kept per follow-up event (`followup:<event id>` in the lead's effects);
    a completion whose creation the bridge never saw (before go-live) files a done task.
    """
    task = activities.followup_task(item)
    effect = f"followup:{task['event_id']}"
    state = mappings.effect_state(job.conn, job.lead_id, effect)
    if state is not None and state.startswith(COMPLETED_PREFIX):
        return  # completed already
    # "pending": an attempt died between LionDesk's answer and recording the task id; LionDesk
    # offers no lookup of tasks by follow-up, so the task is made again (rather twice than never).
    task_id = state if state not in (None, PENDING) else None
    if task_id is not None:
        if done:
            _complete_task(job, task_id)
            mappings.mark_effect(job.conn, job.lead_id, effect, COMPLETED_PREFIX + task_id)
            job.note(kinds.FOLLOWUP_COMPLETED, task_id=task_id, title=task["title"])
            job.did(f"completed follow-up task {task_id}")
        return  # a repeat of the creation: the task exists
    user = realgeeks_user(job, item.get("user") or {})
    email = activities.liondesk_email_of(user, job.rules) if user.get("email") else None
    assignee = references.user_ids_by_email(job.liondesk).get(folded(email)) if email else None
    mappings.mark_effect(job.conn, job.lead_id, effect, PENDING)
    task_id = _open_task(job, contact_id, task, completed=done, assigned_user_id=assignee)
    mappings.mark_effect(job.conn, job.lead_id, effect, COMPLETED_PREFIX + task_id if done else task_id)
    job.note(kinds.FOLLOWUP_COMPLETED if done else kinds.FOLLOWUP_CREATED, task_id=task_id, title=task["title"],
             due_at=task["due_at"], assigned_user_id=assignee)
    job.did(f"{'filed done' if done else 'opened'} follow-up task {task_id}")


COMPLETED_PREFIX = "completed:"
"""Effect value of a follow-up whose LionDesk task is complete (followed by the task id)."""


def _open_task(job: Job, contact_id, task: dict, *, completed: bool, assigned_user_id=None) -> str:
    """Create the LionDesk task of a follow-up (Tasks v2.1, else v2.0) and return its id as text."""
    return job.liondesk.create_task(contact_id, title=task["title"], description=task["description"],
                                    due_at=task["due_at"], assigned_user_id=assigned_user_id, completed=completed)


def _complete_task(job: Job, task_id: str) -> None:
    """Mark a follow-up's LionDesk task complete, on the channel that created it."""
    job.liondesk.complete_task(task_id)


def _comment(job: Job, contact_id, item: dict) -> None:
    """A note: a v1 comment when the v1 channel is on and answering, else a completed task."""
    if _v1_usable(job):
        body = activities.v1_comment(item, lead_id=job.lead_id, contact_id=contact_id).body
        if _sent_through_v1(job, item, body, "v1 comment"):
            return
    _timeline_task(job, contact_id, item)


def _timeline(job: Job, contact_id, item: dict) -> None:
    """Anything else: a v1 activity when v1 knows the type and answers, else a completed task."""
    translation = activities.v1_activity(item, job.lead, job.rules, contact_id=contact_id) if _v1_usable(job) else None
    if translation is None or not _sent_through_v1(job, item, translation.body, "v1 activity"):
        _timeline_task(job, contact_id, item)


def _v1_usable(job: Job) -> bool:
    """Whether to try v1 for an activity: it is configured and did not fail within the recheck period."""
    return job.context.clients.liondesk_v1 is not None and not liondesk_channels.v1_recently_failing(job.conn)


def _sent_through_v1(job: Job, item: dict, body: dict, channel: str) -> bool:
    """Send one v1 call; on any failure record v1 as failing and return False, so a v2 task carries it.

    v1 was announced as shutting down in 2018 (§8): a dead v1 must not fail activities. A v1
    call that timed out may still have landed, so the task can duplicate it: better twice than never.
    """
    body = dict(body)
    try:
        job.context.clients.liondesk_v1.call(body.pop("action"), **body)
    except UpstreamError as exc:
        liondesk_channels.record_v1_answer(job.conn, False, str(exc))
        job.note(kinds.V1_FAILED, type=item.get("type"), detail=f"{exc}; sent as a LionDesk task instead")
        return False
    job.note(kinds.ACTIVITY_DELIVERED, type=item.get("type"), channel=channel)
    return True


def _timeline_task(job: Job, contact_id, item: dict) -> None:
    """File the activity as a completed LionDesk task (Tasks v2.1, else v2.0).

    When both task channels refuse it, the story says so and the lead carries on: no activity
    fails a lead because of its timeline channel. Retryable failures still retry the job.
    """
    entry = activities.task_body(item, job.lead, job.rules, contact_id=contact_id).body
    title, _, details = entry["description"].partition("\n")
    details = "\n".join(part for part in (details, entry.get("notes")) if part)
    try:
        task_id = job.liondesk.create_task(contact_id, title=title, description=details, due_at=entry.get("due_at"),
                                           completed=True)
    except (UpstreamRejected, LionDeskAppConflict) as exc:
        job.note(kinds.ACTIVITY_NOT_DELIVERED, type=item.get("type"), detail=f"LionDesk refused the task: {exc}")
        return
    job.note(kinds.ACTIVITY_DELIVERED, type=item.get("type"), channel=f"{task_id.split(':')[0]} task")


def received_ns(event) -> int:
    """When the change happened, as the intake decided (bridge/intake/identity.py: the timestamp
    header within its tolerance, else receipt); for events stored before it decided, the header, else receipt."""
    if event.order_ns is not None:
        return event.order_ns
    stamp = event.headers.get("X-Lead-Router-Timestamp")
    if stamp:
        try:
            return parse_instant(stamp).ns
        except ValueError:
            pass
    return int(event.received_at * 1_000_000_000)

