"""Real Geeks Incoming API client: create and update leads, add activities, list a site's users.

Clearing a field needs the v2 PATCH: the documented PATCH "does not allow unsetting" (the
2019 post, docs/vendors/realgeeks-api.md §7), so `update_lead` sets and `unset_fields`
clears. The post publishes the v2 path two ways (`/v2/rest/sites/{site}/leads/{id}` and
`/rest/sites/{site}/v2/leads/{id}`); `unset_fields` uses the form that answered last (kept
in Redis), tries the other on a 404 or 405, and remembers whichever answers.

Failures follow Real Geeks' own client (docs/vendors/realgeeks-api.md §4.5): 400, 401 and 422 are never
retried (a bad body or bad credentials stay bad), everything else is: other 4xx (a 404
can be a lead Real Geeks has not finished creating), 5xx, timeouts, connection errors.
"""

from __future__ import annotations

import json

import redis
import requests

from bridge import defaults
from bridge.clients.http import Observer, Service, encode_json
from bridge.config import Settings
from bridge.exceptions import UpstreamError, UpstreamRateLimited, UpstreamRejected, UpstreamUnavailable
from bridge.storage import keys
from bridge.storage.redis import text

SERVICE = "realgeeks"

PERMANENT_STATUSES = frozenset({400, 401, 422})
"""Answers Real Geeks' own client never retries."""

JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}

PREFIX_FORM, INFIX_FORM = "v2/rest", "rest/v2"
"""The two published paths of the v2 PATCH: `/v2/rest/sites/{site}/leads/{id}`, `/rest/sites/{site}/v2/leads/{id}`."""

NOT_THIS_FORM = frozenset({404, 405})
"""Answers that may mean "no such path" (or no such lead): the other form is tried."""


def v2_base_url(base_url: str) -> str:
    """The base of the `/v2/rest/...` form: the Incoming base with its `/rest` turned into `/v2/rest`."""
    base = base_url.rstrip("/")
    return base[: -len("/rest")] + "/v2/rest" if base.endswith("/rest") else base + "/v2"


def realgeeks_error_class(status: int) -> type[UpstreamError]:
    """Map a Real Geeks error status to its exception: 400/401/422 permanent, the rest retryable."""
    if status in PERMANENT_STATUSES:
        return UpstreamRejected
    if status == 429:
        return UpstreamRateLimited
    return UpstreamUnavailable


class RealGeeksClient:
    """Writes back to Real Geeks sites our API user has been granted."""

    def __init__(self, settings: Settings, conn: redis.Redis, *, session: requests.Session | None = None,
                 observer: Observer | None = None):
        self.conn = conn
        self.service = Service(SERVICE, settings.realgeeks_api_url, session or requests.Session(),
                               observer=observer, error_class=realgeeks_error_class)
        self.v2_service = Service(SERVICE, v2_base_url(settings.realgeeks_api_url), self.service.session,
                                  observer=observer, error_class=realgeeks_error_class)
        self.auth = (settings.realgeeks_api_username or "", settings.realgeeks_api_password or "")

    def _call(self, method: str, path: str, body=None, *, service: Service | None = None):
        """Send one call (JSON body, if any) and return the parsed answer."""
        data = None if body is None else encode_json(body)
        return (service or self.service).call(method, path, data=data, headers=JSON_HEADERS, auth=self.auth)

    def create_lead(self, site_uuid: str, body: dict) -> dict:
        """Create a lead on a site (Real Geeks may merge it into an existing one); answers `{}`."""
        return self._call("POST", f"/sites/{site_uuid}/leads", body) or {}

    def update_lead(self, site_uuid: str, lead_id: str, body: dict) -> dict:
        """Change only the given fields of a lead (the documented PATCH; it cannot unset)."""
        return self._call("PATCH", f"/sites/{site_uuid}/leads/{lead_id}", body) or {}

    def unset_fields(self, site_uuid: str, lead_id: str, body: dict) -> dict:
        """Clear the given fields of a lead ("" values) through the v2 PATCH, in the form that answers."""
        remembered = text(self.conn.get(keys.realgeeks_unset_form()))
        forms = [form for form in (remembered, PREFIX_FORM, INFIX_FORM) if form]
        refused = None
        for form in dict.fromkeys(forms):
            try:
                if form == PREFIX_FORM:
                    answer = self._call("PATCH", f"/sites/{site_uuid}/leads/{lead_id}", body, service=self.v2_service)
                else:
                    answer = self._call("PATCH", f"/sites/{site_uuid}/v2/leads/{lead_id}", body)
            except UpstreamError as exc:
                if exc.status not in NOT_THIS_FORM:
                    raise
                refused = refused or exc
                continue
            if form != remembered:
                self.conn.set(keys.realgeeks_unset_form(), form)
            return answer or {}
        raise refused

    def add_activities(self, site_uuid: str, lead_id: str, activities: list[dict]) -> dict:
        """Add activities to a lead; the body is a JSON array."""
        return self._call("POST", f"/sites/{site_uuid}/leads/{lead_id}/activities", list(activities)) or {}

    def list_users(self, site_uuid: str) -> list[dict]:
        """Return a site's users (agents and lenders), cached for REALGEEKS_USERS_TTL_SECONDS."""
        cached = self.conn.get(keys.realgeeks_users(site_uuid))
        if cached is not None:
            return json.loads(cached)
        users = self._call("GET", f"/sites/{site_uuid}/users") or []
        self.conn.set(keys.realgeeks_users(site_uuid), json.dumps(users, separators=(",", ":")),
                      ex=defaults.REALGEEKS_USERS_TTL_SECONDS)
        return users

    def find_user(self, site_uuid: str, user_id: str) -> dict | None:
        """A site's user by id from the cached list, listed afresh once when the cache lacks it (None: no such user)."""
        wanted = str(user_id).strip()
        for attempt in range(2):
            found = next((user for user in self.list_users(site_uuid)
                          if str(user.get("id") or "").strip() == wanted), None)
            if found is not None or attempt:
                return found
            self.invalidate_users(site_uuid)  # a user added since the list was cached
        return None

    def invalidate_users(self, site_uuid: str) -> None:
        """Forget a site's cached users (a `user_updated` webhook arrived, say)."""
        self.conn.delete(keys.realgeeks_users(site_uuid))
