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

from bridge.clients import liondesk as liondesk_channels
from bridge.exceptions import LeadNotYetSynced, LionDeskAppConflict, UpstreamError, UpstreamRejected
from bridge.storage import history, kinds, mappings
from bridge.sync import conflicts, references
from bridge.translate import activity as activities
from bridge.translate import phones
from bridge.translate.contact import contact_body, email_search_forms, phone_region
from bridge.translate.lead import campaign_name, lead_body, lead_source_name
from bridge.translate.liondesk import LEAD_REQUIRED_FIELDS, custom_field_values, with_numbers
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


PHONE_SEARCH_FIELDS = ("mobile_phone", "home_phone", "office_phone")
"""The contact phone fields LionDesk names as dedupe keys (§4.1, §10): all searched and matched alike."""


def search_params(field_name: str, values: list[str]) -> list[tuple[str, str]]:
    """Query pairs finding `field_name` equal to any of `values`: equality for one value, repeated `$in` keys for several.

    One value goes as plain equality: a Feathers parser may read a lone `field[$in]=x` as a
    string rather than a list (§10), and equality means the same thing.
    """
    if len(values) == 1:
        return [(field_name, values[0])]
    return [(f"{field_name}[$in]", value) for value in values]


def find_existing_contact(job: Job) -> tuple[dict | None, str | None]:
    """Find a LionDesk contact for the lead: by e-mail (case-insensitive), then by every phone form.

    Costs at most four searches: one for the e-mails, then one over every form of every
    phone on each of `mobile_phone`, `home_phone` and `office_phone`, stopping at the first
    that matches. Returns the contact and how it matched.
    """
    lead, client = job.lead, job.liondesk
    emails = [lead.get("email"), lead.get("second_email")]
    forms = email_search_forms(emails)
    if forms:
        wanted = {folded(form) for form in forms}
        found = [c for c in client.find_contacts(search_params("email", forms))
                 if folded(c.get("email")) in wanted]
        if found:
            return _oldest(found), "email"
    region = phone_region(job.rules)
    numbers = [lead.get("phone"), lead.get("phone2")]
    forms = phones.search_forms(numbers, region)
    wanted = {phones.normalize(n, region) for n in numbers if n} - {None}
    for field_name in PHONE_SEARCH_FIELDS:
        if not forms:
            break
        found = [c for c in client.find_contacts(search_params(field_name, forms))
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
        translation = contact_body(job.lead, job.rules, first_sync=True, existing_tags=contact.get("tags"), **ids)
        _add_custom_fields(job, translation)
        kept = theirs(contact, translation.body)
        job.relink(contact_id=contact_id, site_uuid=job.lead.get("site_uuid"),
                   received_id=job.lead.get("received_id"), applied_ns=job.received_ns,
                   contact_source_id=contact.get("source_id") or ids["source_id"])
        changed = {key: value for key, value in translation.body.items()
                   if contact.get(key) != value and key not in kept}
        if changed:
            client.update_contact(contact_id, changed)
        job.note(kinds.CONTACT_LINKED, contact_id=contact_id, matched_by=matched_by,
                 changed=sorted(changed) or None, kept=sorted(kept) or None, **translation.facts())
        job.did(f"linked contact {contact_id} by {matched_by}")
        _save_address(job, contact_id, translation.address, contact)
        agreed = merge_snapshot(snapshot_from_liondesk(contact, job.rules),
                                snapshot_from_realgeeks(job.lead, job.rules))
        mappings.save_snapshot(job.conn, job.lead_id, merge_snapshot(empty_snapshot(), agreed))
        return contact_id

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
    job.relink(liondesk_lead_id=created["id"], lead_source_id=source_id)
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

