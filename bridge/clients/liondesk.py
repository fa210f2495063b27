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
from bridge.clients.oauth import LionDeskAuth
from bridge.clients.ratelimit import RateLimiter
from bridge.config import Settings
from bridge.exceptions import (UpstreamAuthError, UpstreamError, UpstreamRateLimited, UpstreamTimeout,
                               UpstreamUnavailable)
from bridge.storage import keys

log = logging.getLogger(__name__)

SERVICE = "liondesk"

REFERENCE_PATHS = {
    "lead-sources": "/lead-sources",
    "contact-sources": "/contact-sources",
    "lead-routes": "/lead-routes",
    "campaigns": "/campaigns",
    "users": "/users",
    "hotnesses": "/hotnesses",
}
"""The reference lists the bridge looks things up in, by kind, and where LionDesk serves them."""


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
        self.service = Service(SERVICE, settings.liondesk_api_url, session or requests.Session(),
                               observer=observer, before_send=self.limiter.acquire)
        self.auth = LionDeskAuth(settings, conn, self.service, clock=clock)

    # -- transport -------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Params = None, body: Any = None) -> Any:
        """Send one authorised call and return its JSON; a 401 refreshes the token once and retries once."""
        token = self.auth.access_token()
        try:
            return self._send(method, path, token, params, body)
        except UpstreamAuthError:
            log.info("liondesk answered 401 to %s %s: refreshing the token once", method, path)
            token = self.auth.refresh(rejected=token)
        return self._send(method, path, token, params, body)  # a second 401 is raised as UpstreamAuthError

    def _send(self, method: str, path: str, token: str, params: Params, body: Any) -> Any:
        """Send one call with `token` and return its JSON, repeating it after a pause when that is safe."""
        repeats = 0
        while True:
            try:
                return self.service.call(method, path, params=params, json_body=body,
                                         headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
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

    def get_contact(self, contact_id: int | str) -> dict:
        """Return one contact."""
        return self.request("GET", f"/contacts/{contact_id}")

    def create_contact(self, body: dict) -> dict:
        """Create a contact and return it (with its new `id`)."""
        return self.request("POST", "/contacts", body=body)

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

    def find_leads(self, params: Params) -> list[dict]:
        """Return the first page of leads matching `params` (e.g. contact_id)."""
        return self.first_page("/leads", params)

    def create_lead_offers(self, lead_id: int | str) -> list[dict]:
        """Ask LionDesk to offer a lead to a team through its lead route (POST without a body)."""
        return self.request("POST", f"/leads/{lead_id}/offers")

    def start_campaign(self, campaign_id: int | str, contact_id: int | str) -> dict:
        """Start a campaign (drip) for a contact."""
        return self.request("POST", f"/campaigns/{campaign_id}/contacts", body={"contact_id": contact_id})

    def create_task(self, body: dict) -> dict:
        """Create a task and return it."""
        return self.request("POST", "/tasks", body=body)

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
        """Fetch a reference list from LionDesk now, cache it for REFERENCE_CACHE_TTL_SECONDS and return it."""
        params = {"oauth_client_id": self.settings.liondesk_client_id} if kind == "users" else None
        records = list(self.iter_pages(REFERENCE_PATHS[kind], params))
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
