"""Legacy LionDesk v1 partner API client: one endpoint, a JSON body naming the `action`.

Used only as an optional channel for activities and comments (docs/vendors/liondesk-api.md §8); LionDesk
announced its shutdown in 2018, so `echo()` is there to check it still answers.

v1 reports failures inside a 200 answer: `{"error": <code>, "errorText": "..."}`, where 0
means success. No list of codes is published; the only one seen (10, "User Validation
Error": wrong USERKEY, or a contact the user neither owns nor is assigned) is about
credentials or ownership, which repeating cannot fix. So every non-zero code is permanent
(UpstreamRejected) unless listed in RETRYABLE_ERROR_CODES; outages, timeouts, 5xx and 429
stay retryable through the shared HTTP classification, and an answer that is not a v1
result at all (no integer `error`, e.g. a proxy page) is retryable too.
"""

from __future__ import annotations

import requests

from bridge.clients.http import Observer, Service, json_of
from bridge.config import Settings
from bridge.exceptions import UpstreamRejected, UpstreamUnavailable

SERVICE = "liondesk_v1"

RETRYABLE_ERROR_CODES: frozenset[int] = frozenset()
"""v1 error codes worth trying again; empty until LionDesk shows us a transient one."""


def check_result(response: requests.Response, action: str) -> None:
    """Raise the named error a v1 answer carries in its body (`error` other than 0)."""
    path = f"/{action}"
    body = json_of(response, service=SERVICE, method="POST", path=path)
    code = body.get("error") if isinstance(body, dict) else None
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        code = int(code)
    if not isinstance(code, int):
        raise UpstreamUnavailable(f"{SERVICE}: {action} answered without a v1 result",
                                  service=SERVICE, status=response.status_code, method="POST", path=path)
    if code == 0:
        return
    cls = UpstreamUnavailable if code in RETRYABLE_ERROR_CODES else UpstreamRejected
    text = str(body.get("errorText") or "no errorText")[:300]
    raise cls(f"{SERVICE}: {action} failed with error {code}: {text}",
              service=SERVICE, status=response.status_code, method="POST", path=path)


class LionDeskV1Client:
    """Calls the LionDesk v1 partner API for the user whose USERKEY is configured."""

    def __init__(self, settings: Settings, *, session: requests.Session | None = None,
                 observer: Observer | None = None):
        self.service = Service(SERVICE, settings.liondesk_v1_url, session or requests.Session(), observer=observer)
        self.auth = (settings.liondesk_v1_api_key or "", "")  # the partner APIKEY is the user name, no password
        self.headers = {"X-LionDesk-Id": settings.liondesk_v1_user_key or ""}

    def call(self, action: str, **fields) -> dict:
        """Run one v1 action with `fields` and return its result (error 0 checked)."""
        response = self.service.request(
            "POST", "", json_body={"action": action, **fields}, headers=self.headers, auth=self.auth,
            check=lambda r: check_result(r, action), observed_path=f"/{action}")
        return response.json()

    def echo(self, msg: str = "ping") -> dict:
        """Check the v1 API answers our credentials; changes nothing."""
        return self.call("Echo", msg=msg)
