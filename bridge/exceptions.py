"""Named exceptions of the bridge: what failed, and whether trying again can help."""


class BridgeError(Exception):
    """Base class of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The environment or the mapping file holds an invalid or contradictory value."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class RetryableError(BridgeError):
    """A failure that may pass: the job is tried again later on the retry ladder."""

    retry_after: float | None = None


class PermanentError(BridgeError):
    """A failure that repeating cannot fix: the job goes to the failed store at once."""


class WaitingError(RetryableError):
    """The bridge cannot work right now for a reason an operator must fix (for
    example LionDesk needs re-authorisation); the job waits without spending its
    retry budget."""


class LockTimeout(RetryableError):
    """Another job held the per-lead lock for too long."""


class EventNotFound(PermanentError):
    """A job names an event that is no longer stored."""


class UpstreamError(BridgeError):
    """An HTTP call to LionDesk or Real Geeks failed; carries the service's answer."""

    fields: tuple[str, ...] = ()
    """The request fields the service's answer names as wrong (Feathers `errors`), if any."""

    def __init__(self, message: str, *, service: str, status: int | None = None,
                 method: str | None = None, path: str | None = None):
        super().__init__(message)
        self.service = service
        self.status = status
        self.method = method
        self.path = path


class UpstreamUnavailable(UpstreamError, RetryableError):
    """Connection refused or reset, DNS failure, or a 5xx answer."""


class UpstreamTimeout(UpstreamError, RetryableError):
    """The service did not answer within the timeout."""


class UpstreamRateLimited(UpstreamError, RetryableError):
    """The service answered 429; `retry_after` holds its Retry-After, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UpstreamRejected(UpstreamError, PermanentError):
    """The service refused the request (400/403/404/422): repeating it cannot help."""


class UpstreamAuthError(UpstreamError, RetryableError):
    """The service answered 401 even after a token refresh."""


class LionDeskAppConflict(UpstreamError, PermanentError):
    """LionDesk app registered under another account: LionDesk answered 401 right after a fresh
    token, or said the oauth_client_id does not belong to the querying user. Refreshing again
    cannot help; the part of the sync that needs the call is skipped (see clients/oauth.py)."""


class LionDeskNeedsReauthorization(WaitingError):
    """LionDesk refused our refresh token (invalid_grant): an operator must run
    `bridge liondesk authorize` again. Jobs wait instead of failing one by one."""


class LionDeskNotConfigured(WaitingError):
    """No LionDesk credentials are configured and no sandbox is in use."""


class TokenRefreshBusy(RetryableError):
    """Another process's LionDesk token refresh did not finish in time; try again shortly."""


class JobNotFound(BridgeError):
    """Support named job ids that RQ no longer stores (or never did)."""

    def __init__(self, job_ids: list[str]):
        super().__init__(f"no such job: {', '.join(job_ids)}")
        self.job_ids = job_ids


class JobNotFailed(BridgeError):
    """Support asked to dismiss a job that is not in the failed store."""

    def __init__(self, job_id: str, status: str):
        super().__init__(f"job {job_id} is not failed (status: {status})")
        self.job_id = job_id
        self.status = status


class TranslationError(PermanentError):
    """A body the translation layer built breaks LionDesk's documented shape (a bridge
    bug, not bad lead data): sending it again cannot help."""

    def __init__(self, what: str, errors: dict):
        super().__init__(f"{what} failed validation: {errors}")
        self.what = what
        self.errors = errors


class RealGeeksSiteUnknown(PermanentError):
    """A LionDesk change cannot be written back: the Real Geeks site of its lead is not
    known (no webhook named it and no `reverse.site_uuid` is configured)."""
