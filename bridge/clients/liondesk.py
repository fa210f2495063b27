"""LionDesk v2 REST client: authorised, rate-limited calls, pagination, and cached reference data.

Methods return the parsed JSON as LionDesk sent it (ids keep their types: addresses and
custom fields use string ids, the rest numbers). Query parameters may be a mapping or a
list of (key, value) pairs, so Feathers operators that repeat a key work:
`[("mobile_phone[$in]", a), ("mobile_phone[$in]", b)]`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
import requests

from bridge import defaults
from bridge.jsonlimits import parse
from bridge.clients.http import Observer, Params, Service, query_pairs
from bridge.clients import oauth
from bridge.clients.oauth import LionDeskAuth
from bridge.clients.ratelimit import RateLimiter
from bridge.config import Settings
from bridge.exceptions import (LionDeskAppConflict, UpstreamAuthError, UpstreamError, UpstreamRateLimited,
                               UpstreamRejected, UpstreamTimeout, UpstreamUnavailable)
from bridge.storage import keys
from bridge.storage.redis import text_hash
from bridge.translate.liondesk import (TASK_V20_DEFAULT_ACTION_TYPE, TASK_V21_UPDATE_STATUS_ONLY, SearchCriterion,
                                       best_match, criterion_params, or_search_params, search_groups, task_text,
                                       task_v20_body, task_v21_body, unasked)

log = logging.getLogger(__name__)

SERVICE = "liondesk"

REFERENCE_PATHS = {
    "lead-sources": "/lead-sources",
    "contact-sources": "/contact-sources",
    "lead-routes": "/lead-routes",
    "campaigns": "/campaigns",
    "users": "/users",
    "team-members": "/team-members",
    "sub-accounts": "/sub-accounts",
    "hotnesses": "/hotnesses",
    "custom-fields": "/custom-fields",
}
"""The reference lists the bridge looks things up in, by kind, and where LionDesk serves them."""

REFERENCE_PARAMS = {"team-members": {"request_status": "Accepted"}}
"""Filters a reference list is fetched with: only accepted team memberships count (§4.11)."""

OPTIONAL_REFERENCES = frozenset({"users", "team-members", "sub-accounts", "custom-fields"})
"""Lists a refusal of which is an answer, not a failure: /sub-accounts exists only for brokers,
and /users refuses an app registered under another account (§10). A refused list is cached
empty, like any other, so the refusal costs one call per cache period."""

TASKS_V21, TASKS_V20 = "v2.1", "v2.0"
"""The two task channels: Tasks v2.1 on its own base URL (preferred by LionDesk) and v2.0 `/tasks`."""

GONE_STATUSES = frozenset({404, 405, 410, 501})
"""Answers meaning a whole channel is not there (retired or never deployed), not that one call was wrong."""

FOREIGN_CLIENT_TEXT = "does not belong"
"""What LionDesk's 401 says when the oauth_client_id belongs to another account (endpoints/users:
"the oauth_client_id does not belong to the querying user"); the one place its wording is read."""


def liondesk_now(clock=time.time) -> str:
    """The current time the way LionDesk writes times ("2018-01-09T12:24:09.000Z")."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(clock()))


def scope_of(path: str) -> str:
    """The part of LionDesk a path belongs to, for app-conflict records: its first segment ("users")."""
    return path.strip("/").split("/", 1)[0] or "/"


def channels(conn: redis.Redis) -> dict:
    """The channel state for people: the task channel in use and how v1 last answered."""
    stored = text_hash(conn.hgetall(keys.liondesk_channels()))
    tasks = {"channel": stored.get("tasks") or TASKS_V21, "since": stored.get("tasks_since"),
             "reason": stored.get("tasks_reason")}
    v1 = {"state": stored.get("v1"), "checked_at": stored.get("v1_checked_at"), "reason": stored.get("v1_reason")}
    return {"tasks": tasks, "v1": v1}


def record_v1_answer(conn: redis.Redis, ok: bool, reason: str | None = None, now: float | None = None) -> None:
    """Remember how the v1 channel last answered (an Echo or a real call)."""
    mapping = {"v1": "ok" if ok else "failing", "v1_checked_at": now if now is not None else time.time(),
               "v1_reason": (reason or "")[:300]}
    conn.hset(keys.liondesk_channels(), mapping=mapping)


def v1_recently_failing(conn: redis.Redis, now: float | None = None) -> bool:
    """Whether v1 failed within LIONDESK_CHANNEL_RECHECK_SECONDS (activities then go straight to tasks)."""
    stored = text_hash(conn.hgetall(keys.liondesk_channels()))
    if stored.get("v1") != "failing" or not stored.get("v1_checked_at"):
        return False
    now = time.time() if now is None else now
    return now - float(stored["v1_checked_at"]) < defaults.LIONDESK_CHANNEL_RECHECK_SECONDS


OR_TRUSTED, OR_UNTRUSTED = "trusted", "untrusted"
"""How LionDesk last answered an `$or` contact search: as Feathers does (proven by its anchor), or not."""

OR_REFUSALS = frozenset({400, 413, 414, 431})
"""Answers refusing an `$or` search for its query: Feathers' BadRequest ("Invalid query parameter $or")
and a URL too long for a server or proxy on the way."""


def contact_search_state(conn: redis.Redis) -> dict:
    """How contacts are searched, for people: `or` (trusted / untrusted / None before the first try), since
    when and why, and the anchor contact (the bridge's latest, known to exist) that proves an `$or` answer."""
    stored = text_hash(conn.hgetall(keys.liondesk_contact_search()))
    return {"or": stored.get("or"), "since": stored.get("or_since"), "reason": stored.get("or_reason"),
            "anchor_id": stored.get("anchor_id")}


def inline_retry_pause(method: str, exc: UpstreamError, repeats_done: int, jitter: float = 0.0) -> float | None:
    """Seconds to wait before repeating a failed call within the job, or None to leave it to the retry ladder.

    Only what cannot do harm twice is repeated: any call LionDesk refused with 429 (it
    did nothing), and reads after a 5xx, a timeout or a lost connection. A write that
    failed otherwise may have happened, so it goes back to the job's retry, which checks
    before it writes again. Without this, every failed search costs a whole attempt
    (and repeats the searches before it): at a 20 % failure rate, leads ran out of retries.
    `jitter` (0 to 1) stretches the back-off by up to half, so workers do not retry in step.
    """
    if repeats_done >= defaults.LIONDESK_INLINE_RETRIES:
        return None
    if not isinstance(exc, UpstreamRateLimited) and (
            method.upper() != "GET" or not isinstance(exc, (UpstreamUnavailable, UpstreamTimeout))):
        return None
    if exc.retry_after is not None:
        wait = exc.retry_after
    else:
        wait = defaults.LIONDESK_INLINE_RETRY_BACKOFF_SECONDS * 2 ** repeats_done * (1 + jitter / 2)
    return wait if wait <= defaults.LIONDESK_INLINE_RETRY_MAX_WAIT_SECONDS else None


class LionDeskClient:
    """Calls the LionDesk v2 API on behalf of the one authorised LionDesk account."""

    def __init__(self, settings: Settings, conn: redis.Redis, *, session: requests.Session | None = None,
                 observer: Observer | None = None, limiter: RateLimiter | None = None, clock=time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.conn = conn
        self.sleep = sleep
        self.limiter = limiter or RateLimiter(conn, keys.liondesk_rate_limiter(),
                                              settings.liondesk_max_requests_per_second, service=SERVICE)
        session = session or requests.Session()
        self.clock = clock
        self.service = Service(SERVICE, settings.liondesk_api_url, session,
                               observer=observer, before_send=self.limiter.acquire)
        # Tasks v2.1 lives on its own host but takes the same OAuth token (endpoints/tasks-v21).
        self.communications = Service(SERVICE, settings.liondesk_communications_url, session,
                                      observer=observer, before_send=self.limiter.acquire)
        self.auth = LionDeskAuth(settings, conn, self.service, clock=clock)

    # -- transport -------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Params = None, body: Any = None,
                service: Service | None = None) -> Any:
        """Send one authorised call and return its JSON; a 401 refreshes the token once and retries once.

        A 401 that is not expiry (LionDesk says the client id belongs to another account, or it
        refuses here the token it has just issued while /me accepts it) raises LionDeskAppConflict and is recorded
        for the path's scope: later calls of that scope fail at once, without a call or a
        refresh, until LIONDESK_APP_CONFLICT_RECHECK_SECONDS have passed.
        """
        service = service or self.service
        # Tasks v2.1 is another host: a refusal there must not stop v2.0 /tasks, its fallback.
        scope = ("communications/" if service is self.communications else "") + scope_of(path)
        refused_at = oauth.app_conflict_checked_at(self.conn, scope)
        if refused_at is not None and self.clock() - refused_at < defaults.LIONDESK_APP_CONFLICT_RECHECK_SECONDS:
            raise LionDeskAppConflict(f"{oauth.APP_CONFLICT}: {method} {path} skipped (LionDesk refused it)",
                                      service=SERVICE, status=401, method=method, path=path)
        token = self.auth.access_token()
        try:
            answer = self._send(service, method, path, token, params, body)
        except UpstreamAuthError as exc:
            if FOREIGN_CLIENT_TEXT in str(exc).casefold():
                raise self._app_conflict(scope, exc) from exc
            log.info("liondesk answered 401 to %s %s: refreshing the token once", method, path)
            token = self.auth.refresh(rejected=token)
            try:
                answer = self._send(service, method, path, token, params, body)
            except UpstreamAuthError as again:
                if scope != "me" and self._token_works(token):
                    raise self._app_conflict(scope, again) from again
                raise  # the fresh token is refused everywhere: expired or revoked again, the retry ladder decides
        if refused_at is not None:
            oauth.clear_app_conflict(self.conn, scope)
        return answer

    def _token_works(self, token: str) -> bool:
        """Whether LionDesk accepts `token` for GET /me: then a 401 elsewhere refuses that part, not the token.

        Asked only after a fresh token was refused (rare): a token expired or revoked in between
        (as the sandbox's expiry storms do) is not mistaken for an app of another account.
        """
        try:
            self._send(self.service, "GET", "/me", token, None, None)
        except UpstreamAuthError:
            return False
        return True

    def _app_conflict(self, scope: str, exc: UpstreamAuthError) -> LionDeskAppConflict:
        """Record a 401 that is not expiry for `scope` and return the named error to raise."""
        oauth.record_app_conflict(self.conn, scope, str(exc), self.clock())
        log.error("%s: LionDesk refused %s %s with a fresh token (%s)", oauth.APP_CONFLICT, exc.method, exc.path, exc)
        return LionDeskAppConflict(f"{oauth.APP_CONFLICT}: {exc}", service=SERVICE, status=401,
                                   method=exc.method, path=exc.path)

    def _send(self, service: Service, method: str, path: str, token: str, params: Params, body: Any) -> Any:
        """Send one call with `token` and return its JSON, repeating it after a pause when that is safe."""
        repeats = 0
        # Content-Type on every request, GETs included, as LionDesk's docs and both production plugins do (§1).
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                   "Content-Type": "application/json"}
        while True:
            try:
                return service.call(method, path, params=params, json_body=body, headers=headers)
            except (UpstreamRateLimited, UpstreamUnavailable, UpstreamTimeout) as exc:
                pause = inline_retry_pause(method, exc, repeats, jitter=random.random())
                if pause is None:
                    raise
                log.info("liondesk %s %s failed (%s): repeating it in %.2f s", method, path, exc, pause)
                self.sleep(pause)
                repeats += 1

    def iter_pages(self, path: str, params: Params = None) -> Iterator[dict]:
        """Yield every record of a paginated list ({total, limit, skip, data}), fetching pages as needed.

        An endpoint answering a plain JSON array (not documented for any list, but cheap to
        accept) is yielded as a single page; without `total`, a short page is the last.
        """
        base = [(k, v) for k, v in query_pairs(params) if k not in ("$limit", "$skip")]
        skip = 0
        while True:
            page = self.request("GET", path, params=[*base, ("$limit", defaults.LIONDESK_PAGE_SIZE), ("$skip", skip)])
            if isinstance(page, list):
                yield from page
                return
            data = (page or {}).get("data") or []
            yield from data
            skip += len(data)  # not page["limit"]: the server may cap the page below what we asked
            total = (page or {}).get("total")
            if not data or (skip >= total if isinstance(total, int) else len(data) < defaults.LIONDESK_PAGE_SIZE):
                return

    def first_page(self, path: str, params: Params = None) -> list[dict]:
        """Return the records of the first page of a list (up to LIONDESK_PAGE_SIZE), for searches."""
        pairs = query_pairs(params)
        if not any(k == "$limit" for k, _ in pairs):
            pairs.append(("$limit", defaults.LIONDESK_PAGE_SIZE))
        page = self.request("GET", path, params=pairs)
        return page if isinstance(page, list) else (page or {}).get("data") or []

    # -- endpoints -------------------------------------------------------------------------

    def get_me(self) -> dict:
        """Return the user the token belongs to (GET /me)."""
        return self.request("GET", "/me")

    def find_contacts(self, params: Params) -> list[dict]:
        """Return the first page of contacts matching `params` (a search: e-mail, phones, ...)."""
        return self.first_page("/contacts", params)

    def find_matching_contact(self, criteria: tuple[SearchCriterion, ...]) -> tuple[dict | None, str | None]:
        """Find the lead's contact by `criteria` (in precedence order); return it and the field it matched by.

        LionDesk documents no way to search several fields at once; Feathers, which it is
        built on, has `$or`. So consecutive criteria share one `$or` search (as many as fit in
        LIONDESK_SEARCH_QUERY_MAX_CHARS), with an anchor clause asking for a contact known
        to exist, and its answer is trusted only when it proves itself: the anchor is in it,
        nothing in it was asked for by no clause, and it fits in one page. Otherwise (or when
        LionDesk refuses the query) the answer is dropped, that group's criteria are searched
        one by one as before, and the next LIONDESK_OR_SEARCH_RECHECK_SECONDS search that way
        straight away. Every contact returned is checked against the criteria here either
        way, so an answer can cost calls but never link the wrong contact or miss the right one.
        """
        state = contact_search_state(self.conn)
        anchor = self._or_anchor(state)
        for group in search_groups(criteria, anchor, defaults.LIONDESK_SEARCH_QUERY_MAX_CHARS):
            answer = None
            if len(group) > 1 and anchor is not None:
                answer, trusted = self._search_with_or(group, anchor, trusted=state["or"] == OR_TRUSTED)
                if not trusted:
                    anchor = None  # not this time: the later groups go one by one too
            contact, matched_by = answer if answer is not None else self._search_one_by_one(group)
            if contact is not None:
                if str(contact.get("id")) != state["anchor_id"]:
                    self._remember_anchor(contact.get("id"))
                return contact, matched_by
        return None, None

    def _search_one_by_one(self, criteria: tuple[SearchCriterion, ...]) -> tuple[dict | None, str | None]:
        """One search per criterion, in order, stopping at the first that finds the lead's contact."""
        for criterion in criteria:
            contact, matched_by = best_match((criterion,), self.find_contacts(criterion_params(criterion)))
            if contact is not None:
                return contact, matched_by
        return None, None

    def _or_anchor(self, state: dict) -> str | None:
        """The anchor of `$or` searches, or None when there is none yet (no contact made or linked) or when
        LionDesk refused, ignored or could not prove `$or` within LIONDESK_OR_SEARCH_RECHECK_SECONDS."""
        if state["or"] == OR_UNTRUSTED and state["since"] and \
                self.clock() - float(state["since"]) < defaults.LIONDESK_OR_SEARCH_RECHECK_SECONDS:
            return None
        return state["anchor_id"] or None

    def _search_with_or(self, criteria: tuple[SearchCriterion, ...], anchor: str,
                        trusted: bool) -> tuple[tuple[dict | None, str | None] | None, bool]:
        """One `$or` search by every criterion: its answer (the best match or no match; None when it has
        to be searched one by one) and whether the `$or` answered as it should.

        An empty answer would prove nothing (a server that misreads `$or` can answer nothing as
        well as everything), hence the anchor clause: the contact the bridge created or linked
        last, which LionDesk must return when it honours the query. `trusted`: how the last
        `$or` search was judged (only a change is recorded).
        """
        params = [*or_search_params(criteria, anchor), ("$limit", defaults.LIONDESK_PAGE_SIZE)]
        try:
            page = self.request("GET", "/contacts", params=params)
        except UpstreamRejected as exc:
            if exc.status not in OR_REFUSALS:
                raise  # a refusal that is not about the query (403 ...): the searches one by one would get it too
            self._record_or(OR_UNTRUSTED, f"LionDesk refused an $or contact search ({exc})")
            return None, False
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            # An outage fails the searches one by one as well (and the job retries); a LionDesk
            # that fails only on `$or` (a query it cannot run) must not fail every lead.
            answer = self._search_one_by_one(criteria)
            self._record_or(OR_UNTRUSTED, f"an $or contact search failed ({exc}) where field-by-field "
                                          "searches answered")
            return answer, False
        records = page if isinstance(page, list) else (page or {}).get("data") or []
        total = None if isinstance(page, list) else (page or {}).get("total")
        if not any(str(record.get("id")) == anchor for record in records):
            # The anchor may have been deleted since: forget it (the next contact made or linked replaces it).
            self.conn.hdel(keys.liondesk_contact_search(), "anchor_id")
            self._record_or(OR_UNTRUSTED, f"an $or contact search did not return contact {anchor}, which it asked for")
            return None, False
        stray = unasked(criteria, records, anchor)
        if stray:
            self._record_or(OR_UNTRUSTED, f"an $or contact search returned contact {stray[0].get('id')}, which "
                                          "no clause asked for (LionDesk ignored the $or)")
            return None, False
        if isinstance(total, int) and total > len(records):
            log.info("an $or contact search found %s contacts, more than one page: searching field by field", total)
            return None, True
        if not trusted:
            self._record_or(OR_TRUSTED, "LionDesk answered an $or contact search with its anchor and nothing unasked")
        return best_match(criteria, records), True

    def _record_or(self, verdict: str, reason: str) -> None:
        """Remember how LionDesk answered an `$or` contact search (a distrusted one is not sent again for a while)."""
        if verdict == OR_UNTRUSTED:
            log.warning("liondesk contact search: %s; searching field by field for %d s", reason,
                        defaults.LIONDESK_OR_SEARCH_RECHECK_SECONDS)
        self.conn.hset(keys.liondesk_contact_search(), mapping={"or": verdict, "or_since": self.clock(),
                                                                "or_reason": reason[:300]})

    def _remember_anchor(self, contact_id) -> None:
        """Keep `contact_id` (a contact LionDesk has just shown or made for our token) as the `$or` searches' anchor."""
        if contact_id is not None:
            self.conn.hset(keys.liondesk_contact_search(), "anchor_id", str(contact_id))

    def get_contact(self, contact_id: int | str) -> dict:
        """Return one contact."""
        return self.request("GET", f"/contacts/{contact_id}")

    def create_contact(self, body: dict) -> dict:
        """Create a contact and return it (with its new `id`, kept as the anchor of `$or` searches)."""
        created = self.request("POST", "/contacts", body=body)
        self._remember_anchor((created or {}).get("id"))
        return created

    def update_contact(self, contact_id: int | str, body: dict) -> dict:
        """Change only the given fields of a contact (PATCH) and return it."""
        return self.request("PATCH", f"/contacts/{contact_id}", body=body)

    def create_address(self, contact_id: int | str, body: dict) -> dict:
        """Add an address to a contact and return it."""
        return self.request("POST", f"/contacts/{contact_id}/addresses", body=body)

    def update_address(self, contact_id: int | str, address_id: int | str, body: dict) -> dict:
        """Change only the given fields of one address of a contact (PATCH) and return it."""
        return self.request("PATCH", f"/contacts/{contact_id}/addresses/{address_id}", body=body)

    def create_lead(self, body: dict) -> dict:
        """Create a lead (an enquiry of a contact) and return it."""
        return self.request("POST", "/leads", body=body)

    def update_lead(self, lead_id: int | str, body: dict) -> dict:
        """Change only the given fields of a lead (PATCH) and return it."""
        return self.request("PATCH", f"/leads/{lead_id}", body=body)

    def find_leads(self, params: Params) -> list[dict]:
        """Return the first page of leads matching `params` (e.g. contact_id)."""
        return self.first_page("/leads", params)

    def create_lead_offers(self, lead_id: int | str) -> list[dict]:
        """Ask LionDesk to offer a lead to a team through its lead route (`{}` as the body, as Bit sends it)."""
        return self.request("POST", f"/leads/{lead_id}/offers", body={})

    def list_lead_offers(self, lead_id: int | str) -> list[dict]:
        """The offers LionDesk made for a lead (GET /leads/{id}/offers; inferred from the POST)."""
        return list(self.iter_pages(f"/leads/{lead_id}/offers"))

    def start_campaign(self, campaign_id: int | str, contact_id: int | str) -> dict:
        """Start a campaign (drip) for a contact."""
        return self.request("POST", f"/campaigns/{campaign_id}/contacts", body={"contact_id": contact_id})

    def campaign_communications(self, contact_id: int | str) -> list[dict]:
        """The campaign communications scheduled for a contact: the documented way to see its campaigns (§4.13)."""
        return list(self.iter_pages(f"/contacts/{contact_id}/campaign-communications"))

    # -- tasks -------------------------------------------------------------------------------

    def create_task(self, contact_id: int | str, *, title: str, description: str | None = None,
                    due_at: str | None = None, assigned_user_id: int | str | None = None,
                    completed: bool = False) -> str:
        """Create a task on a contact and return its id (opaque text, e.g. "v2.1:17", for `complete_task`).

        Tasks v2.1 first (it requires an assignee and a due time: the account's own user and
        now stand in when not given); when v2.1 refuses, v2.0 `/tasks` takes it. A v2.1 that
        is gone (404/405/410/501, or a 401 that is not expiry) is remembered, so the next
        tasks go straight to v2.0 until LIONDESK_CHANNEL_RECHECK_SECONDS have passed.
        `completed` files a done task: what a timeline entry is.
        """
        text, due_at = task_text(title, description), due_at or liondesk_now(self.clock)
        if self.tasks_channel() == TASKS_V21:
            owner = assigned_user_id if assigned_user_id is not None else self.account_user_id()
            body = task_v21_body(contact_id, text=text, due_at=due_at, assigned_user_id=owner, completed=completed)
            try:
                created = self.request("POST", "/tasks", body=body, service=self.communications)
                if channels(self.conn)["tasks"]["channel"] != TASKS_V21:  # back after a recheck
                    self._record_tasks_channel(TASKS_V21, "Tasks v2.1 answered again")
                return f"{TASKS_V21}:{created['id']}"
            except (UpstreamRejected, LionDeskAppConflict) as exc:
                gone = isinstance(exc, LionDeskAppConflict) or exc.status in GONE_STATUSES
                if gone:
                    self._record_tasks_channel(TASKS_V20, f"Tasks v2.1 refused: {exc}")
                log.warning("liondesk Tasks v2.1 refused a task (%s): using v2.0 /tasks%s", exc,
                            " from now on" if gone else " for this one")
        body = task_v20_body(contact_id, text=text, due_at=due_at, assigned_user_id=assigned_user_id,
                             completed=completed, action_type=self._task_action_type())
        created = self.request("POST", "/tasks", body=body)
        return f"{TASKS_V20}:{created['id']}"

    def _task_action_type(self) -> str:
        """The v2.0 `action_type` of the bridge's tasks: the rules' `activities.task_action_type`."""
        configured = (self.settings.rules.get("activities") or {}).get("task_action_type")
        return configured or TASK_V20_DEFAULT_ACTION_TYPE

    def complete_task(self, task_id: int | str) -> None:
        """Mark a task done, on the channel that created it (a bare id: the channel in use)."""
        channel, _, number = str(task_id).rpartition(":")
        channel = channel or self.tasks_channel()
        if channel == TASKS_V21:
            self.request("PATCH", f"/tasks/{number}", service=self.communications,
                         body={"status": "complete", "update_type": TASK_V21_UPDATE_STATUS_ONLY})
        else:
            self.request("PATCH", f"/tasks/{number}", body={"status": "complete"})

    def tasks_channel(self) -> str:
        """The task channel to use now: v2.1 unless it was found gone within the recheck period."""
        stored = channels(self.conn)["tasks"]
        if stored["channel"] == TASKS_V20 and stored["since"] and \
                self.clock() - float(stored["since"]) < defaults.LIONDESK_CHANNEL_RECHECK_SECONDS:
            return TASKS_V20
        return TASKS_V21

    def _record_tasks_channel(self, channel: str, reason: str) -> None:
        """Remember the task channel in use, since when and why (shown by /healthz and the console)."""
        self.conn.hset(keys.liondesk_channels(), mapping={"tasks": channel, "tasks_since": self.clock(),
                                                          "tasks_reason": reason[:300]})

    def account_user_id(self):
        """The id of the LionDesk user who authorised the app (GET /me), cached like reference data."""
        cached = self.conn.get(keys.liondesk_reference("me"))
        if cached is not None:
            return json.loads(cached)["id"]
        me = self.get_me()
        self.conn.set(keys.liondesk_reference("me"), json.dumps({"id": me["id"], "email": me.get("email")}),
                      ex=defaults.REFERENCE_CACHE_TTL_SECONDS)
        return me["id"]

    def create_contact_source(self, name: str) -> dict:
        """Create a contact source and return it; the cached contact-source list is dropped."""
        created = self.request("POST", "/contact-sources", body={"name": name})
        self.invalidate_reference("contact-sources")
        return created

    def find_campaigns_like(self, name: str) -> list[dict]:
        """Return every campaign whose name contains `name` (Feathers `$like`)."""
        return list(self.iter_pages("/campaigns", [("name[$like]", f"%{name}%")]))

    # -- reference data --------------------------------------------------------------------

    def reference(self, kind: str) -> list[dict]:
        """Return a reference list (lead-sources, contact-sources, lead-routes, campaigns, users,
        hotnesses) from the Redis cache, fetching it from LionDesk when absent or expired."""
        cached = self._cached_reference(kind)
        return cached if cached is not None else self.refresh_reference(kind)

    def refresh_reference(self, kind: str) -> list[dict]:
        """Fetch a reference list from LionDesk now, cache it for REFERENCE_CACHE_TTL_SECONDS and return it.

        An optional list LionDesk refuses (OPTIONAL_REFERENCES) is cached as empty.
        """
        params = REFERENCE_PARAMS.get(kind)
        if kind == "users":
            params = {"oauth_client_id": self.settings.liondesk_client_id}
        try:
            records = list(self.iter_pages(REFERENCE_PATHS[kind], params))
        except (UpstreamRejected, LionDeskAppConflict) as exc:
            if kind not in OPTIONAL_REFERENCES:
                raise
            log.info("liondesk refused the %s list (%s): taken as empty", kind, exc)
            records = []
        with self.conn.pipeline() as pipe:
            pipe.set(keys.liondesk_reference(kind), json.dumps(records, separators=(",", ":")),
                     ex=defaults.REFERENCE_CACHE_TTL_SECONDS)
            pipe.set(keys.liondesk_reference_fresh(kind), 1, ex=defaults.REFERENCE_MISS_REFRESH_SECONDS)
            pipe.execute()
        return records

    def invalidate_reference(self, kind: str) -> None:
        """Forget a cached reference list, so the next lookup fetches it again."""
        self.conn.delete(keys.liondesk_reference(kind), keys.liondesk_reference_fresh(kind))

    def find_reference(self, kind: str, predicate: Callable[[dict], bool]) -> dict | None:
        """Return the first record of `kind` matching `predicate`; a miss in a cached list fetches
        the list once more (it may have changed since it was cached) before answering None.

        A list fetched within REFERENCE_MISS_REFRESH_SECONDS is not fetched again for a
        miss: a lead source that does not exist would otherwise cost a call per lead.
        """
        cached = self._cached_reference(kind)
        records = cached if cached is not None else self.refresh_reference(kind)
        match = next((r for r in records if predicate(r)), None)
        if match is None and cached is not None and not self.conn.exists(keys.liondesk_reference_fresh(kind)):
            match = next((r for r in self.refresh_reference(kind) if predicate(r)), None)
        return match

    def _cached_reference(self, kind: str) -> list[dict] | None:
        """Return a cached reference list, or None when it is not cached."""
        return cached_reference(self.conn, kind)


def cached_reference(conn: redis.Redis, kind: str) -> list[dict] | None:
    """Return a reference list as cached in Redis, or None when it is not cached (never calls LionDesk:
    the console names agents and campaigns from it)."""
    if kind not in REFERENCE_PATHS:
        raise ValueError(f"unknown LionDesk reference kind {kind!r}")
    cached = conn.get(keys.liondesk_reference(kind))
    if cached is None:
        return None
    records = parse(cached).value  # within the JSON limits: a broken cache must not break a page
    return [record for record in records if isinstance(record, dict)] if isinstance(records, list) else None
