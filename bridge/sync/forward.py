"""Real Geeks → LionDesk: what each lead action means, done exactly once however often it arrives.

Every function here runs under the lead's lock (see handlers.py). The order of work is
chosen so that a crash at any point is repaired by the retry:
- the contact is looked up (stored link, then e-mail, then every phone form) before it
  is created, and the link is stored the moment LionDesk answers;
- the LionDesk lead, the campaign start and the lead offers are once-only effects
  recorded in Redis; a "pending" mark before each call tells a retry that the call may
  have happened already, so it checks instead of repeating it;
- each activity is marked delivered only after LionDesk took it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.exceptions import LeadNotYetSynced, UpstreamRejected
from bridge.storage import history, kinds, mappings
from bridge.sync import conflicts, references
from bridge.translate import activity as activities
from bridge.translate import phones
from bridge.translate.contact import contact_body, email_search_forms, phone_region
from bridge.translate.lead import campaign_name, lead_body, lead_source_name
from bridge.translate.realgeeks import parse_instant
from bridge.translate.snapshot import (diff, empty_snapshot, liondesk_patch, merge_snapshot,
                                       snapshot_from_liondesk, snapshot_from_realgeeks)
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
    _link: mappings.LeadLink | None = field(default=None, repr=False)

    @property
    def lead_id(self) -> str:
        """The normalised Real Geeks lead id."""
        return self.lead["id"]

    @property
    def link(self) -> mappings.LeadLink:
        """The lead's stored link, loaded once (the job holds the lead's lock; every write goes through it)."""
        if self._link is None:
            self._link = mappings.load_link(self.conn, self.lead_id)
        return self._link

    def relink(self, **changes) -> None:
        """Record link fields of the lead (`mappings.save_link`)."""
        mappings.save_link(self.conn, self.link, **changes)

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


def upsert(job: Job) -> None:
    """`created` / `unknown`: make sure the contact, the lead, its campaign, offers and activities exist."""
    link = job.link
    if link.linked:
        contact_id = link.contact_id
        apply_changes(job)
        if link.origin == mappings.LIONDESK_ORIGIN:  # the echo of a lead made from a LionDesk contact
            deliver_activities(job, contact_id, job.lead.get("activities") or [])
            return
    else:
        contact_id = link_or_create_contact(job)
    lead_id = ensure_lead(job, contact_id)
    start_campaign_and_offers(job, contact_id, lead_id)
    deliver_activities(job, contact_id, job.lead.get("activities") or [])


def update(job: Job) -> None:
    """`updated`: PATCH only the fields that changed since the last sync; unknown leads are created."""
    link = job.link
    if not link.linked:
        job.note(kinds.UPDATE_BEFORE_CREATE, detail="no LionDesk contact linked yet: handled as created")
        upsert(job)
        return
    apply_changes(job)
    deliver_activities(job, link.contact_id, job.lead.get("activities") or [])


def add_activities(job: Job) -> None:
    """`activity_added`: deliver each new activity once; the lead must have reached LionDesk first."""
    link = job.link
    if not link.linked:
        raise LeadNotYetSynced(f"lead {job.lead_id} has no LionDesk contact yet; its activities wait for it")
    deliver_activities(job, link.contact_id, job.lead.get("activities") or [])


# -- contact -------------------------------------------------------------------------------


def find_existing_contact(job: Job) -> tuple[dict | None, str | None]:
    """Find a LionDesk contact for the lead: by e-mail (case-insensitive), then by every phone form.

    Costs at most three searches: one for the e-mails, one `$in` over every form of every
    phone on `mobile_phone` and one on `home_phone` (where the bridge writes phones).
    Returns the contact and how it matched.
    """
    lead, client = job.lead, job.liondesk
    emails = [lead.get("email"), lead.get("second_email")]
    forms = email_search_forms(emails)
    if forms:
        wanted = {folded(form) for form in forms}
        found = [c for c in client.find_contacts([("email[$in]", form) for form in forms])
                 if folded(c.get("email")) in wanted]
        if found:
            return _oldest(found), "email"
    region = phone_region(job.rules)
    numbers = [lead.get("phone"), lead.get("phone2")]
    forms = phones.search_forms(numbers, region)
    wanted = {phones.normalize(n, region) for n in numbers if n} - {None}
    for field_name in ("mobile_phone", "home_phone"):
        if not forms:
            break
        found = [c for c in client.find_contacts([(f"{field_name}[$in]", form) for form in forms])
                 if phones.normalize(str(c.get(field_name) or ""), region) in wanted]
        if found:
            return _oldest(found), field_name
    return None, None


def _oldest(contacts: list[dict]) -> dict:
    """The earliest-created of several matching contacts (the one agents have worked longest)."""
    return min(contacts, key=lambda c: (str(c.get("created_at") or ""), int(c.get("id") or 0)))


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
    return (_oldest(found), "name after an interrupted attempt") if found else (None, None)


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
    client = job.liondesk
    contact, matched_by = find_existing_contact(job)
    ids = contact_ids(job)
    if contact is None and mappings.effect_state(job.conn, job.lead_id, "contact") == PENDING:
        contact, matched_by = _contact_of_a_dead_attempt(job, ids["source_id"])
    if contact is not None:
        contact_id = contact["id"]
        job.relink(contact_id=contact_id, site_uuid=job.lead.get("site_uuid"),
                   received_id=job.lead.get("received_id"), applied_ns=job.received_ns)
        translation = contact_body(job.lead, job.rules, first_sync=True, existing_tags=contact.get("tags"), **ids)
        changed = {key: value for key, value in translation.body.items() if contact.get(key) != value}
        if changed:
            client.update_contact(contact_id, changed)
        job.note(kinds.CONTACT_LINKED, contact_id=contact_id, matched_by=matched_by,
                 changed=sorted(changed) or None, **translation.facts())
        job.did(f"linked contact {contact_id} by {matched_by}")
        _save_address(job, contact_id, translation.address, contact)
        agreed = merge_snapshot(snapshot_from_liondesk(contact, job.rules),
                                snapshot_from_realgeeks(job.lead, job.rules))
        mappings.save_snapshot(job.conn, job.lead_id, merge_snapshot(empty_snapshot(), agreed))
        return contact_id

    translation = contact_body(job.lead, job.rules, first_sync=True, **ids)
    mappings.mark_effect(job.conn, job.lead_id, "contact", PENDING)
    created = client.create_contact(translation.body)
    contact_id = created["id"]
    job.relink(contact_id=contact_id, site_uuid=job.lead.get("site_uuid"),
               received_id=job.lead.get("received_id"), applied_ns=job.received_ns)
    mappings.mark_effect(job.conn, job.lead_id, "contact", "done")
    job.note(kinds.CONTACT_CREATED, contact_id=contact_id, **translation.facts())
    job.did(f"created contact {contact_id}")
    _save_address(job, contact_id, translation.address, None)
    mappings.save_snapshot(job.conn, job.lead_id,
                           merge_snapshot(empty_snapshot(), snapshot_from_realgeeks(job.lead, job.rules)))
    return contact_id


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
    if changed:
        client = job.liondesk
        ids = {}
        if "hotness" in changed:
            ids["hotness_ids"] = references.hotness_ids_by_name(client)
        if "agent_email" in changed:
            ids["user_ids"] = references.user_ids_by_email(client)
        translation = liondesk_patch(changed, job.rules, **ids)
        if translation.body:
            client.update_contact(link.contact_id, translation.body)
        _save_address(job, link.contact_id, translation.address, None)
        job.note(kinds.CONTACT_UPDATED, contact_id=link.contact_id, fields=sorted(changed), **translation.facts())
        job.did(f"updated {', '.join(sorted(changed))}")
    mappings.save_snapshot(job.conn, job.lead_id, merge_snapshot(old, changed))
    job.relink(applied_ns=job.received_ns)


def _without_overruled(job: Job, link: mappings.LeadLink, changed: dict, change_ns: int) -> dict:
    """Drop the fields the reverse sync wrote to Real Geeks after `change_ns`: Real Geeks holds that newer value."""
    overruled = conflicts.overruled_by_push(link, changed, change_ns)
    if overruled:
        job.note(kinds.CONFLICT_RESOLVED, fields=overruled, winner="liondesk", detail=conflicts.OVERRULED)
    return {name: value for name, value in changed.items() if name not in overruled}


# -- lead, campaign, offers ----------------------------------------------------------------


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
    created = client.create_lead(translation.body)
    job.relink(liondesk_lead_id=created["id"], lead_source_id=source_id)
    mappings.mark_effect(job.conn, job.lead_id, "lead", "done")
    job.note(kinds.LEAD_CREATED, liondesk_lead_id=created["id"], source_id=source_id, **translation.facts())
    job.did(f"created lead {created['id']}")
    return created["id"]


def _once(job: Job, effect: str, kind: str, call, describe: str) -> None:
    """Run a once-only LionDesk call for the lead, marking it pending first and done after.

    A retry that finds the mark still pending knows the call may have reached LionDesk:
    if LionDesk now refuses it (e.g. the contact is already in the campaign), it was.
    """
    state = mappings.effect_state(job.conn, job.lead_id, effect)
    if state is not None and state != PENDING:
        return
    mappings.mark_effect(job.conn, job.lead_id, effect, PENDING)
    try:
        call()
    except UpstreamRejected as exc:
        if state is None:
            raise
        job.note(kinds.EFFECT_ALREADY_DONE, effect=effect, detail=f"LionDesk refused a repeat: {exc}")
    mappings.mark_effect(job.conn, job.lead_id, effect, "done")
    job.note(kind, detail=describe)
    job.did(describe)


def start_campaign_and_offers(job: Job, contact_id, lead_id) -> None:
    """Start the campaign of the lead route (or the role's configured one) and make team-rollout offers."""
    client = job.liondesk
    contact_source = references.contact_source_id(client, job.rules["contact"]["source_name"])
    route = references.lead_route(client, job.link.lead_source_id, contact_source)
    campaign_id = references.route_campaign_id(route) if route else None
    if campaign_id is None:
        name = campaign_name(job.lead, job.rules)
        campaign_id = references.campaign_id_by_name(client, name) if name else None
        if name and campaign_id is None:
            job.note(kinds.NO_CAMPAIGN, detail=f"LionDesk has no campaign named {name!r}")
    if campaign_id is not None:
        _once(job, f"campaign:{campaign_id}", kinds.CAMPAIGN, lambda: client.start_campaign(campaign_id, contact_id),
              f"started campaign {campaign_id}")
    if route and references.is_team_rollout(route):
        _once(job, "offers", kinds.OFFERS, lambda: client.create_lead_offers(lead_id), f"created lead offers for lead {lead_id}")


# -- activities ----------------------------------------------------------------------------


def deliver_activities(job: Job, contact_id, items: list[dict]) -> None:
    """Bring each activity to LionDesk once: assignments set the agent, notes become comments, the rest the timeline."""
    for item in items:
        fingerprint = activities.fingerprint(job.lead_id, item)
        if mappings.activity_seen(job.conn, job.lead_id, fingerprint):
            continue
        kind = activities.classify_activity(item, job.rules)
        if kind in (activities.ASSIGN, activities.UNASSIGN):
            _assign(job, contact_id, item, kind)
        elif kind == activities.NOTE:
            _comment(job, contact_id, item)
        elif kind == activities.TIMELINE:
            _timeline(job, contact_id, item)
        mappings.mark_activity(job.conn, job.lead_id, fingerprint)


def _assign(job: Job, contact_id, item: dict, kind: str) -> None:
    """Set (or clear) the contact's assigned LionDesk user, unless the snapshot says it already is."""
    email = "" if kind == activities.UNASSIGN else (activities.liondesk_email_of(item.get("user") or {}, job.rules) or "")
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


def _comment(job: Job, contact_id, item: dict) -> None:
    """A note: a v1 comment when the v1 channel is on, else a completed task."""
    v1 = job.context.clients.liondesk_v1
    if v1 is None:
        _timeline(job, contact_id, item)
        return
    body = activities.v1_comment(item, lead_id=job.lead_id, contact_id=contact_id).body
    v1.call(body.pop("action"), **body)
    job.note(kinds.ACTIVITY_DELIVERED, type=item.get("type"), channel="v1 comment")


def _timeline(job: Job, contact_id, item: dict) -> None:
    """Anything else: a v1 activity when v1 knows the type, else a completed v2 task."""
    v1 = job.context.clients.liondesk_v1
    translation = activities.v1_activity(item, job.lead, job.rules, contact_id=contact_id) if v1 else None
    if translation is not None:
        body = translation.body
        v1.call(body.pop("action"), **body)
        channel = "v1 activity"
    else:
        job.liondesk.create_task(activities.task_body(item, job.lead, job.rules, contact_id=contact_id).body)
        channel = "v2 task"
    job.note(kinds.ACTIVITY_DELIVERED, type=item.get("type"), channel=channel)


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

