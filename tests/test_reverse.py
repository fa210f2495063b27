"""LionDesk → Real Geeks: the poll, its echoes both ways, conflicts, failures, the trigger and the tools.

The bridge's web app runs on a real port in a thread, the sandbox sends Real Geeks'
webhooks to it (our own Incoming writes come back as `updated` / `activity_added`),
and polls and jobs run in this process like a worker would run them.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from rq.job import Job
from rq.registry import FailedJobRegistry
from werkzeug.serving import make_server

from bridge.config import load_settings
from bridge.exceptions import UpstreamUnavailable
from bridge.sandbox.sample import sample_lead
from bridge.storage import history, keys, mappings, pending
from bridge.sync import reverse
from workers import poll_trigger
from tests.support import link_bulk_contacts, signed_post
from bridge.context import Context
from bridge.queue import contact_job_id, poll_job_id, poll_queue
from workers.relay import Relay
from workers.worker import run

WRITES = ("POST", "PATCH", "PUT", "DELETE")
SITE = "5ead6dd1-2cb9-4f80-80fc-5716b05c90ba"
CASEY_RG_ID = "14188"


class Bridge:
    """The bridge (web app on a port, a worker context) wired to the sandbox, driven like its users would."""

    def __init__(self, sandbox, settings, conn, secret):
        from bridge.web import create_app

        self.sandbox, self.settings, self.conn, self.secret = sandbox, settings, conn, secret
        self.app = create_app(settings)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.context = Context(settings=settings, redis=conn)
        sandbox.control("POST", "realgeeks/destination", url=f"http://127.0.0.1:{self.server.server_port}"
                        "/webhooks/realgeeks", secret=secret)

    def stop(self):
        """Stop serving."""
        self.server.shutdown()

    # -- Real Geeks and LionDesk users ---------------------------------------------------------

    def website_lead(self, **overrides) -> tuple[dict, dict]:
        """A lead signs up on the website; the bridge syncs it; return the payload and its LionDesk contact."""
        payload = sample_lead(**overrides)
        self.sandbox.control("POST", "realgeeks/leads", **payload)
        self.settle()
        link = mappings.load_link(self.conn, payload["id"])
        assert link.linked, history.read(self.conn, payload["id"])
        return payload, self.contact(link.contact_id)

    def agent_edits(self, contact_id, **fields) -> dict:
        """An agent changes a contact in LionDesk."""
        return self.sandbox.control("PATCH", f"liondesk/contacts/{contact_id}", **fields)

    def contact(self, contact_id) -> dict:
        """A LionDesk contact as LionDesk holds it."""
        return self.sandbox.control("GET", f"liondesk/contacts/{contact_id}")

    def deliver(self, payload: dict, timestamp: str | None = None):
        """Deliver a webhook as Real Geeks would, optionally stamped with X-Lead-Router-Timestamp."""
        headers = {"X-Lead-Router-Timestamp": timestamp} if timestamp else None
        response = signed_post(self.app.test_client(), "/webhooks/realgeeks", payload, self.secret, headers=headers)
        assert response.status_code == 200, response.json

    # -- the bridge's processes ----------------------------------------------------------------

    def work(self):
        """Relay and run every queued job, like `bridge worker --burst`."""
        run(self.context, burst=True)

    def settle(self):
        """Wait until the sandbox sent every webhook, then run the jobs they made (repeatedly, for echoes)."""
        for _ in range(3):
            assert self.sandbox.control("GET", "realgeeks/deliveries?wait=1")["idle"]
            self.work()

    def poll(self, **kwargs) -> reverse.PollReport:
        """Run one poll in this process."""
        return reverse.poll(self.context, **kwargs)

    # -- what happened -------------------------------------------------------------------------

    def mark(self) -> tuple[int, int]:
        """Where the call log and the Real Geeks write log stand now."""
        requests_now = self.sandbox.control("GET", "realgeeks/requests")["data"]
        return self.sandbox.last_seq(), (requests_now[-1]["id"] if requests_now else 0)

    def liondesk_calls(self, mark) -> list[dict]:
        """LionDesk v2 API calls since `mark` (token requests left out)."""
        return [c for c in self.sandbox.calls(mark[0], service="liondesk") if "oauth2" not in c["path"]]

    def liondesk_writes(self, mark) -> list[tuple[str, str]]:
        """LionDesk writes since `mark`."""
        return [(c["method"], c["template"]) for c in self.liondesk_calls(mark) if c["method"] in WRITES]

    def realgeeks_calls(self, mark) -> list[dict]:
        """Real Geeks Incoming API calls since `mark` (reads included)."""
        return self.sandbox.calls(mark[0], service="realgeeks")

    def realgeeks_writes(self, mark) -> list[dict]:
        """Real Geeks Incoming writes since `mark`, with their bodies."""
        return [r for r in self.sandbox.control("GET", f"realgeeks/requests?since={mark[1]}")["data"]]

    def kinds(self, lead_id) -> list[str]:
        """The kinds of a lead's history entries, oldest first."""
        return [entry["kind"] for entry in history.read(self.conn, lead_id)]


@pytest.fixture
def make_bridge(sandbox, redis_url, redis_conn, webhook_secret, tmp_path):
    """Build the bridge against the sandbox; `rules` is TOML merged over the shipped mapping rules."""
    made = []

    def make(rules: str = "") -> Bridge:
        env = {**sandbox.environment(), "REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": webhook_secret,
               "LIONDESK_MAX_REQUESTS_PER_SECOND": "1000"}
        if rules:
            (tmp_path / "rules.toml").write_text(rules)
            env["BRIDGE_CONFIG"] = str(tmp_path / "rules.toml")
        made.append(Bridge(sandbox, load_settings(env), redis_conn, webhook_secret))
        return made[-1]

    yield make
    for bridge in made:
        bridge.stop()


@pytest.fixture
def bridge(make_bridge):
    """The bridge with the shipped mapping rules."""
    return make_bridge()


def liondesk_time(moment: datetime) -> str:
    """A time as LionDesk and Real Geeks headers write it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


ASSIGNED_TO_ALEX = {"type": "was_assigned", "source": "LeadManager", "description": "Lead was assigned to Alex",
                    "created": "2026-01-05T10:00:00.000000001Z",
                    "user": {"id": "14187", "role": "Agent", "name": "Alex Agent", "email": "agent@example.com"}}


# -- echoes and the calls a poll costs --------------------------------------------------------


def test_a_contact_the_bridge_wrote_is_not_sent_back(bridge):
    payload, contact = bridge.website_lead()
    mark = bridge.mark()
    report = bridge.poll()
    assert report.outcome == reverse.OK and report.counts[reverse.UNCHANGED] == 1
    assert [(c["method"], c["template"]) for c in bridge.liondesk_calls(mark)] == [("GET", "/liondesk/contacts")]
    assert bridge.realgeeks_calls(mark) == []
    assert bridge.poll().counts[reverse.UNCHANGED] == 1  # read again in the overlap: still nothing to do


def test_a_phone_edited_in_liondesk_reaches_realgeeks_as_one_patch_and_its_echo_costs_no_call(bridge, redis_conn):
    payload, contact = bridge.website_lead()
    bridge.poll()
    bridge.agent_edits(contact["id"], mobile_phone="808-555-0123")
    mark = bridge.mark()
    report = bridge.poll()
    assert report.counts[reverse.PUSHED] == 1
    (write,) = bridge.realgeeks_writes(mark)
    assert (write["method"], write["kind"], write["status"]) == ("PATCH", "update_lead", 200)
    assert write["body"] == {"phone": "(808) 555-0123"} and write["lead_id"] == payload["id"]
    assert len(bridge.realgeeks_calls(mark)) == 1
    assert mappings.get_snapshot(redis_conn, payload["id"])["phone"] == "+18085550123"
    # The echo's `received` entry is written at intake, whenever its webhook lands: before, between
    # or after the two entries of the poll's work. The rest of the story is in order.
    story = [entry for entry in history.read(redis_conn, payload["id"]) if entry["kind"] != "received"]
    assert story[-1]["kind"] == "reverse_sync" and story[-1]["fields"] == ["phone"]
    assert (story[-2]["kind"], story[-2]["service"], story[-2]["method"]) == ("call", "realgeeks", "PATCH")

    bridge.settle()  # Real Geeks announces our PATCH as `updated`; the forward sync finds nothing new
    assert bridge.kinds(payload["id"]).count("received") == 2
    assert bridge.kinds(payload["id"])[-1] == "processed"
    assert bridge.liondesk_writes(mark) == []
    again = bridge.mark()
    assert bridge.poll().counts[reverse.PUSHED] == 0
    assert bridge.realgeeks_calls(again) == []


def test_idle_polls_cost_one_liondesk_request_and_no_realgeeks_request(bridge):
    _, contact = bridge.website_lead()
    bridge.agent_edits(contact["id"], last_name="Changed")
    bridge.poll()
    bridge.settle()
    for _ in range(3):
        mark = bridge.mark()
        report = bridge.poll()
        assert report.counts[reverse.PUSHED] == 0
        assert len(bridge.liondesk_calls(mark)) == 1 and bridge.realgeeks_calls(mark) == []


def test_a_cleared_field_is_sent_as_empty_and_the_echo_clears_nothing_else(bridge):
    payload, contact = bridge.website_lead(phone2="808-555-0199")
    assert contact["home_phone"]
    bridge.agent_edits(contact["id"], home_phone="")
    mark = bridge.mark()
    bridge.poll()
    (write,) = bridge.realgeeks_writes(mark)
    assert write["body"] == {"phone2": ""}
    bridge.settle()
    assert bridge.liondesk_writes(mark) == []
    assert bridge.contact(contact["id"])["mobile_phone"] == contact["mobile_phone"]


def test_a_reassignment_becomes_one_was_assigned_and_later_echoes_never_undo_it(bridge):
    payload, contact = bridge.website_lead(activities=[ASSIGNED_TO_ALEX])
    assert contact["assigned_user_id"] == 1
    bridge.poll()
    bridge.agent_edits(contact["id"], assigned_user_id=2)  # Casey
    mark = bridge.mark()
    bridge.poll()
    (write,) = bridge.realgeeks_writes(mark)
    assert write["kind"] == "add_activities"
    (activity,) = write["body"]
    assert activity["type"] == "was_assigned" and activity["user"] == {"id": CASEY_RG_ID}
    assert activity["source"] == "LionDesk"
    bridge.settle()  # `activity_added` with our own activity: ignored
    assert bridge.liondesk_writes(mark) == []

    # The next write's echo is `updated` with every activity, Alex's assignment among them:
    # the lead's agent is still the latest assignment, ours.
    bridge.agent_edits(contact["id"], first_name="Renamed")
    bridge.poll()
    bridge.settle()
    assert bridge.liondesk_writes(mark) == []
    assert bridge.contact(contact["id"])["assigned_user_id"] == 2


def test_an_unassignment_becomes_was_unassigned(bridge):
    _, contact = bridge.website_lead(activities=[ASSIGNED_TO_ALEX])
    bridge.poll()
    bridge.agent_edits(contact["id"], assigned_user_id=None)
    mark = bridge.mark()
    bridge.poll()
    (write,) = bridge.realgeeks_writes(mark)
    assert [activity["type"] for activity in write["body"]] == ["was_unassigned"]
    bridge.settle()
    assert bridge.liondesk_writes(mark) == []


def test_a_hotness_with_no_urgency_is_not_sent_and_the_history_says_so(make_bridge):
    bridge = make_bridge('[hotness.by_urgency]\nCold = ""\n')
    payload, contact = bridge.website_lead(urgency="Hot")
    bridge.agent_edits(contact["id"], hotness_id=3)  # Cold, which no urgency maps to now
    mark = bridge.mark()
    bridge.poll()
    assert bridge.realgeeks_writes(mark) == []
    (entry,) = [e for e in history.read(bridge.conn, payload["id"]) if e["kind"] == "not_synced_back"]
    assert entry["fields"] == ["hotness"]
    assert bridge.poll().counts[reverse.SEEN] == 1  # read again in the overlap: handled already, no second note
    assert bridge.kinds(payload["id"]).count("not_synced_back") == 1
    bridge.agent_edits(contact["id"], hotness_id=2)  # Warm
    bridge.poll()
    (write,) = bridge.realgeeks_writes(mark)
    assert write["body"] == {"urgency": "Warm"}


# -- conflicts --------------------------------------------------------------------------------


def pending_update(bridge, payload, when: datetime, **fields):
    """A Real Geeks `updated` webhook received (stored, relayed) but whose job has not run yet."""
    bridge.deliver({**payload, "action": "updated", "activities": [], **fields}, timestamp=liondesk_time(when))
    Relay(bridge.conn, "test-relay").drain()


def test_a_later_liondesk_change_wins_over_a_real_geeks_change_not_yet_applied(bridge):
    payload, contact = bridge.website_lead()
    bridge.poll()
    applied = mappings.load_link(bridge.conn, payload["id"]).applied_ns / 1e9
    changed_in_realgeeks = datetime.fromtimestamp(applied + 0.001, timezone.utc)
    pending_update(bridge, payload, changed_in_realgeeks, phone="808-555-0001")
    time.sleep(max(int(applied) + 1.05 - time.time(), 0))  # LionDesk stamps seconds: edit in the next one
    bridge.agent_edits(contact["id"], mobile_phone="808-555-0002")
    mark = bridge.mark()
    report = bridge.poll()
    assert report.conflicts == 1
    (write,) = bridge.realgeeks_writes(mark)
    assert write["body"] == {"phone": "(808) 555-0002"}
    (resolved,) = [e for e in history.read(bridge.conn, payload["id"]) if e["kind"] == "conflict_resolved"]
    assert resolved["winner"] == "liondesk" and resolved["field"] == "phone"
    bridge.settle()  # the older Real Geeks change, then our PATCH's echo: neither touches LionDesk
    assert bridge.liondesk_writes(mark) == []
    assert bridge.contact(contact["id"])["mobile_phone"] == "808-555-0002"
    forward_side = [e for e in history.read(bridge.conn, payload["id"]) if e["kind"] == "conflict_resolved"][1:]
    assert [(e["fields"], e["winner"]) for e in forward_side] == [(["phone"], "liondesk")]


def test_a_later_real_geeks_change_wins_over_a_liondesk_change(bridge):
    payload, contact = bridge.website_lead()
    bridge.poll()
    bridge.agent_edits(contact["id"], mobile_phone="808-555-0002", last_name="Agentname")
    pending_update(bridge, payload, datetime.now(timezone.utc) + timedelta(minutes=5), phone="808-555-0001")
    mark = bridge.mark()
    bridge.poll()
    (write,) = bridge.realgeeks_writes(mark)
    assert write["body"] == {"last_name": "Agentname"}  # the phone is Real Geeks' to give
    resolved = [e for e in history.read(bridge.conn, payload["id"]) if e["kind"] == "conflict_resolved"]
    assert [(e["field"], e["winner"]) for e in resolved] == [("phone", "realgeeks")]
    bridge.work()
    assert bridge.contact(contact["id"])["mobile_phone"] == "(808) 555-0001"
    again = bridge.mark()
    bridge.poll()
    assert bridge.realgeeks_writes(again) == []


def test_waiting_forward_work_is_read_from_its_record_not_from_the_story(bridge):
    payload, contact = bridge.website_lead()
    bridge.poll()
    bridge.agent_edits(contact["id"], mobile_phone="808-555-0002")
    pending_update(bridge, payload, datetime.now(timezone.utc) + timedelta(minutes=5), phone="808-555-0001")
    assert len(pending.waiting(bridge.conn, payload["id"])) == 1
    bridge.conn.delete(keys.lead_history(payload["id"]))  # the story no longer tells of the delivery
    mark = bridge.mark()
    assert bridge.poll().conflicts == 1
    assert bridge.realgeeks_writes(mark) == []  # Real Geeks' later phone wins: left to its waiting job


def test_a_delivery_no_longer_waiting_is_no_conflict(bridge):
    payload, contact = bridge.website_lead()
    bridge.poll()
    bridge.agent_edits(contact["id"], mobile_phone="808-555-0002")
    pending_update(bridge, payload, datetime.now(timezone.utc) + timedelta(minutes=5), phone="808-555-0001")
    (event_id,) = pending.waiting(bridge.conn, payload["id"])
    pending.remove(bridge.conn, payload["id"], event_id)  # as when its job failed for good
    mark = bridge.mark()
    assert bridge.poll().conflicts == 0
    (write,) = bridge.realgeeks_writes(mark)
    assert write["body"] == {"phone": "(808) 555-0002"}


def test_a_real_geeks_change_older_than_our_push_is_not_applied_even_if_it_arrives_after(bridge):
    payload, contact = bridge.website_lead()
    bridge.poll()
    bridge.agent_edits(contact["id"], mobile_phone="808-555-0002")
    bridge.poll()
    bridge.settle()
    mark = bridge.mark()
    # A delivery Real Geeks sent before our PATCH reached it, arriving late with its old phone
    pending_update(bridge, payload, datetime.now(timezone.utc) - timedelta(seconds=30), phone="808-555-0001",
                   first_name="Newfirst")
    bridge.work()
    assert bridge.contact(contact["id"])["mobile_phone"] == "808-555-0002"
    assert bridge.liondesk_writes(mark) == []  # stale as a whole: a newer delivery (our echo) was applied


# -- failures ---------------------------------------------------------------------------------


def test_a_realgeeks_outage_stops_the_poll_before_the_contact_and_the_next_poll_sends_it(bridge, redis_conn):
    payload, contact = bridge.website_lead()
    first = bridge.poll()
    bridge.agent_edits(contact["id"], first_name="Outage")
    bridge.sandbox.control("POST", "faults", service="realgeeks", outage=True)
    with pytest.raises(UpstreamUnavailable):
        bridge.poll()
    state = {k.decode(): v.decode() for k, v in redis_conn.hgetall(keys.poll_state()).items()}
    assert state["outcome"] == "failed: UpstreamUnavailable" and state["cursor"] == first.cursor
    assert mappings.get_snapshot(redis_conn, payload["id"])["first_name"] != "Outage"
    bridge.sandbox.control("POST", "faults", clear=True)
    mark = bridge.mark()
    assert bridge.poll().counts[reverse.PUSHED] == 1
    (write,) = bridge.realgeeks_writes(mark)
    assert write["body"] == {"first_name": "Outage"}


def test_a_contact_real_geeks_refuses_gets_a_job_of_its_own_and_the_poll_goes_on(bridge, redis_conn):
    _, refused = bridge.website_lead()
    payload, fine = bridge.website_lead()
    bridge.poll()
    bridge.agent_edits(refused["id"], email="not an e-mail")
    time.sleep(1.01)  # the second edit in a later second: it comes after the refused one
    bridge.agent_edits(fine["id"], last_name="Fine")
    mark = bridge.mark()
    report = bridge.poll()
    assert (report.counts[reverse.DEFERRED], report.counts[reverse.PUSHED]) == (1, 1)
    assert report.cursor == bridge.contact(fine["id"])["modified_at"]
    job_id = contact_job_id(refused["id"])
    assert poll_queue(redis_conn).get_job_ids() == [job_id]

    bridge.work()  # the contact's job: Real Geeks refuses it again, for good
    assert job_id in FailedJobRegistry(queue=poll_queue(redis_conn)).get_job_ids()
    assert "not a valid email" in Job.fetch(job_id, connection=redis_conn).latest_result().exc_string
    from bridge.ops import jobs as job_tools

    (failed,) = [job for job in job_tools.list_failed(redis_conn) if job.id == job_id]
    assert failed.error and "UpstreamRejected" in failed.error

    bridge.agent_edits(refused["id"], email="fixed@example.com")  # support fixes it in LionDesk and replays
    job_tools.replay(redis_conn, [job_id], by="test", via="cli")
    bridge.work()
    assert job_id not in FailedJobRegistry(queue=poll_queue(redis_conn)).get_job_ids()
    writes = [w["body"] for w in bridge.realgeeks_writes(mark) if w["status"] < 300]
    assert {"email": "fixed@example.com"} in writes and {"last_name": "Fine"} in writes


def test_a_poll_while_another_runs_does_nothing(bridge, redis_conn):
    bridge.website_lead()
    lock = redis_conn.lock(keys.poll_lock(), timeout=10)
    assert lock.acquire(blocking=False)
    mark = bridge.mark()
    try:
        assert bridge.poll().outcome == reverse.SKIPPED
    finally:
        lock.release()
    assert bridge.liondesk_calls(mark) == []


# -- reading -----------------------------------------------------------------------------------


def test_pages_read_every_contact_of_a_crowded_second_once(bridge, redis_conn):
    bulk = bridge.sandbox.control("POST", "liondesk/bulk-contacts", count=250, linked=True)
    contacts = bridge.sandbox.control("GET", "liondesk/contacts")["data"]
    link_bulk_contacts(redis_conn, bridge.settings.rules, bulk["links"], contacts)
    mark = bridge.mark()
    report = bridge.poll(since=liondesk_time(datetime.now(timezone.utc) - timedelta(minutes=1)))
    assert report.counts[reverse.UNCHANGED] == 250 and report.read == 250
    pages = [c for c in bridge.liondesk_calls(mark) if c["template"] == "/liondesk/contacts"]
    assert len(pages) == 3
    changed = [bulk["first_id"] + 7, bulk["last_id"]]
    for contact_id in changed:
        bridge.agent_edits(contact_id, last_name=f"Edited {contact_id}")
    mark = bridge.mark()
    report = bridge.poll()
    assert report.counts[reverse.PUSHED] == 2
    assert sorted(w["body"]["last_name"] for w in bridge.realgeeks_writes(mark)) == sorted(
        f"Edited {contact_id}" for contact_id in changed)


def test_pages_are_keyed_by_time_and_skip_only_within_a_second():
    class Client:
        def __init__(self, records):
            self.records, self.asked = records, []

        def request(self, method, path, params):
            self.asked.append(params)
            query = dict(params)
            bound = next(v for k, v in params if k.startswith("modified_at"))
            op = "$gt" if "modified_at[$gt]" in query else "$gte"
            found = [r for r in self.records
                     if (r["modified_at"] > bound if op == "$gt" else r["modified_at"] >= bound)]
            skip, limit = query["$skip"], query["$limit"]
            return {"total": len(found), "data": found[skip:skip + limit]}

    times = ["2026-01-01T00:00:01.000Z"] * 3 + ["2026-01-01T00:00:02.000Z"] * 4 + ["2026-01-01T00:00:03.000Z"]
    client = Client([{"id": n, "modified_at": t} for n, t in enumerate(times)])
    pages = list(reverse.changed_pages(client, "2026-01-01T00:00:00.000Z", page_size=2))
    assert [[r["id"] for r in page] for page in pages] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [(p[0][0], p[0][1], dict(p)["$skip"]) for p in client.asked] == [
        ("modified_at[$gt]", "2026-01-01T00:00:00.000Z", 0),
        ("modified_at[$gte]", "2026-01-01T00:00:01.000Z", 2),
        ("modified_at[$gte]", "2026-01-01T00:00:02.000Z", 1),
        ("modified_at[$gte]", "2026-01-01T00:00:02.000Z", 3),
    ]


# -- contacts created in LionDesk --------------------------------------------------------------


def test_a_contact_created_in_liondesk_stays_there_by_default(bridge):
    bridge.sandbox.control("POST", "liondesk/contacts", first_name="Walk", last_name="In", email="walkin@example.com")
    mark = bridge.mark()
    assert bridge.poll().counts[reverse.UNLINKED] == 1
    assert bridge.realgeeks_calls(mark) == []


def test_a_contact_created_in_liondesk_becomes_one_real_geeks_lead_when_enabled(make_bridge, redis_conn):
    bridge = make_bridge(f'[reverse]\ncreate_leads_from_liondesk = true\nsite_uuid = "{SITE}"\n')
    bridge.website_lead()  # a contact that came from Real Geeks is never sent back as new
    contact = bridge.sandbox.control("POST", "liondesk/contacts", first_name="Walk", last_name="In",
                                     email="walkin@example.com", mobile_phone="808-555-0177", assigned_user_id=2)
    mark = bridge.mark()
    report = bridge.poll()
    assert report.counts[reverse.CREATED] == 1
    (write,) = bridge.realgeeks_writes(mark)
    assert write["kind"] == "create_lead" and write["site_uuid"] == SITE and write["status"] == 201
    body = write["body"]
    assert body["source"] == "LionDesk" and body["email"] == "walkin@example.com" and body["phone"] == "(808) 555-0177"
    assert [(a["type"], a["user"]["id"]) for a in body["activities"]] == [("was_assigned", CASEY_RG_ID)]
    lead_id = mappings.lead_of_contact(redis_conn, contact["id"])
    assert lead_id == body["id"].replace("-", "")
    assert mappings.load_link(redis_conn, lead_id).origin == "liondesk"

    bridge.settle()  # Real Geeks announces the new lead as `created`: no LionDesk lead, no call
    assert bridge.liondesk_writes(mark) == []
    assert bridge.kinds(lead_id)[-1] == "processed"
    again = bridge.mark()
    bridge.poll()
    assert bridge.realgeeks_calls(again) == []


# -- the trigger, the job, the tools -----------------------------------------------------------


def test_one_poll_job_per_slot_however_many_triggers(redis_conn, make_settings):
    settings = make_settings(liondesk_poll_seconds=60)
    assert poll_trigger.trigger_once(redis_conn, settings, now=120.5) == poll_job_id(120)
    assert poll_trigger.trigger_once(redis_conn, settings, now=179.9) is None  # same slot, another process
    assert poll_trigger.trigger_once(redis_conn, settings, now=180.0) == poll_job_id(180)
    assert poll_queue(redis_conn).get_job_ids() == [poll_job_id(120), poll_job_id(180)]
    assert poll_trigger.superseded(redis_conn, 120) and not poll_trigger.superseded(redis_conn, 180)


def test_a_poll_that_failed_for_good_holds_new_polls_until_support_acts(redis_conn, make_settings):
    settings = make_settings(liondesk_poll_seconds=60)
    job_id = poll_trigger.trigger_once(redis_conn, settings, now=60)
    job = Job.fetch(job_id, connection=redis_conn)
    registry = FailedJobRegistry(queue=poll_queue(redis_conn))
    registry.add(job, exc_string="UpstreamRejected: 403")
    poll_trigger.mark_failed(redis_conn, job_id)
    assert poll_trigger.trigger_once(redis_conn, settings, now=120) is None
    registry.remove(job)  # replayed or dismissed
    assert poll_trigger.trigger_once(redis_conn, settings, now=180) == poll_job_id(180)


def test_the_poll_job_runs_on_the_worker_and_later_slots_supersede_its_retries(bridge, redis_conn):
    from bridge.queue import enqueue_poll

    bridge.website_lead()
    start = int(time.time())
    enqueue_poll(poll_queue(redis_conn), start)
    bridge.work()
    job = Job.fetch(poll_job_id(start), connection=redis_conn)
    assert job.return_value().startswith("ok: read 1 contact")
    redis_conn.hset(keys.poll_state(), "last_slot", start + 60)
    enqueue_poll(poll_queue(redis_conn), start - 60)
    bridge.work()
    assert Job.fetch(poll_job_id(start - 60), connection=redis_conn).return_value().startswith("superseded")


def test_bridge_poll_once_runs_one_poll_and_reports_it(bridge, monkeypatch):
    from click.testing import CliRunner

    from bridge.cli import main

    _, contact = bridge.website_lead()
    bridge.agent_edits(contact["id"], last_name="ByHand")
    for name, value in {**bridge.sandbox.environment(), "REDIS_URL": bridge.settings.redis_url,
                        "REALGEEKS_WEBHOOK_SECRET": bridge.secret}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["poll", "--once"])
    assert result.exit_code == 0, result.output
    assert "ok: read 1 contact(s) (1 pushed)" in result.output
    assert CliRunner().invoke(main, ["poll"]).exit_code == 2


def test_healthz_shows_the_last_poll(bridge):
    bridge.website_lead()
    report = bridge.poll()
    poll = bridge.app.test_client().get("/healthz").json["poll"]
    assert poll == {"last_run": pytest.approx(report.finished_at, abs=0.01), "cursor": report.cursor, "outcome": "ok"}


def test_the_console_overview_shows_the_last_poll(bridge):
    from dataclasses import replace

    from bridge.web import create_app
    from tests.ops_support import ADMIN_PASSWORD, ADMIN_USER, log_in

    bridge.website_lead()
    report = bridge.poll()
    settings = replace(bridge.settings, admin_username=ADMIN_USER, admin_password=ADMIN_PASSWORD)
    client = create_app(settings).test_client()
    assert log_in(client).status_code == 302
    text = client.get("/admin/").get_data(as_text=True)
    assert f'<dd id="poll-cursor">{report.cursor}</dd>' in text and '<dd id="poll-outcome">ok</dd>' in text


def test_our_own_assignment_is_the_lead_s_latest_one_not_an_older_real_geeks_one():
    from bridge.translate.activity import assigned_agent_email
    from bridge.translate.rules import load_rules

    ours = {"type": "was_assigned", "source": "LionDesk", "created": "2026-02-01T00:00:00Z", "user": {"id": "14188"}}
    rules = load_rules()
    assert assigned_agent_email({"activities": [ASSIGNED_TO_ALEX]}, rules) == "agent@example.com"
    assert assigned_agent_email({"activities": [ASSIGNED_TO_ALEX, ours]}, rules) is None  # ours: no e-mail to read
    unassigned = {"type": "was_unassigned", "source": "LionDesk", "created": "2026-02-01T00:00:00Z"}
    assert assigned_agent_email({"activities": [ASSIGNED_TO_ALEX, unassigned]}, rules) == ""


def test_a_poll_job_refused_for_good_waits_in_the_failed_store_and_a_replay_runs_it(bridge, redis_conn):
    from bridge.ops import jobs as job_tools
    from bridge.queue import enqueue_poll

    _, contact = bridge.website_lead()
    bridge.poll()
    bridge.agent_edits(contact["id"], last_name="Replayed")
    bridge.sandbox.control("POST", "faults", service="liondesk", fail_next=1, fail_next_status=400)
    start = int(time.time())
    enqueue_poll(poll_queue(redis_conn), start)
    bridge.work()
    job_id = poll_job_id(start)
    assert job_id in FailedJobRegistry(queue=poll_queue(redis_conn)).get_job_ids()  # LionDesk refused the read
    assert poll_trigger.blocking_job(redis_conn) == job_id
    assert poll_trigger.trigger_once(redis_conn, bridge.settings, now=start + 3600) is None

    mark = bridge.mark()
    job_tools.replay(redis_conn, [job_id], by="test", via="cli")
    bridge.work()
    (write,) = bridge.realgeeks_writes(mark)
    assert write["body"] == {"last_name": "Replayed"}
    assert poll_trigger.blocking_job(redis_conn) is None
