"""Real Geeks Incoming API client: create and update leads, add activities, list a site's users.

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

SERVICE = "realgeeks"

PERMANENT_STATUSES = frozenset({400, 401, 422})
"""Answers Real Geeks' own client never retries."""

JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}


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
        self.auth = (settings.realgeeks_api_username or "", settings.realgeeks_api_password or "")

    def _call(self, method: str, path: str, body=None):
        """Send one call (JSON body, if any) and return the parsed answer."""
        data = None if body is None else encode_json(body)
        return self.service.call(method, path, data=data, headers=JSON_HEADERS, auth=self.auth)

    def create_lead(self, site_uuid: str, body: dict) -> dict:
        """Create a lead on a site (Real Geeks may merge it into an existing one); answers `{}`."""
        return self._call("POST", f"/sites/{site_uuid}/leads", body) or {}

    def update_lead(self, site_uuid: str, lead_id: str, body: dict) -> dict:
        """Change only the given fields of a lead (PATCH)."""
        return self._call("PATCH", f"/sites/{site_uuid}/leads/{lead_id}", body) or {}

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
