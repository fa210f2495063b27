"""Configuration from the environment, parsed and validated in one place.

A wrong value stops the process at start with one message that names the variable
(`ConfigError`), instead of a surprise at the first webhook.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge import defaults
from bridge.exceptions import ConfigError
from bridge.translate.rules import load_rules


@dataclass(frozen=True)
class Settings:
    """Everything the bridge reads from its environment, already validated."""

    redis_url: str | None = None
    redis_tls_verify: bool = True  # whether rediss:// verifies the server's certificate (see redis_tls)
    redis_tls_skip_reason: str | None = None  # why verification is skipped, for the log; None when it is not
    realgeeks_webhook_secret: str | None = None
    realgeeks_partner_id: str | None = None
    liondesk_api_url: str = defaults.LIONDESK_API_URL
    liondesk_client_id: str | None = None
    liondesk_client_secret: str | None = None
    liondesk_refresh_token: str | None = None
    liondesk_redirect_uri: str | None = None
    liondesk_v1_url: str = defaults.LIONDESK_V1_URL
    liondesk_communications_url: str = defaults.LIONDESK_COMMUNICATIONS_URL
    liondesk_v1_api_key: str | None = None
    liondesk_v1_user_key: str | None = None
    liondesk_max_requests_per_second: float = defaults.LIONDESK_MAX_REQUESTS_PER_SECOND
    realgeeks_api_url: str = defaults.REALGEEKS_API_URL
    realgeeks_api_username: str | None = None
    realgeeks_api_password: str | None = None
    liondesk_poll_seconds: int = defaults.LIONDESK_POLL_SECONDS
    admin_username: str | None = None
    admin_password: str | None = None
    metrics_token: str | None = None
    secret_key: str | None = None
    bridge_config: str | None = None
    port: int = defaults.PORT
    retry_intervals: tuple[int, ...] = defaults.RETRY_INTERVALS_SECONDS
    public_url: str | None = None  # BRIDGE_PUBLIC_URL: where people reach the bridge, for links in alerts
    alert_webhook_url: str | None = None
    smtp_url: str | None = None
    alert_email_to: tuple[str, ...] = ()
    alert_email_from: str | None = None
    alert_window_minutes: float = defaults.ALERT_WINDOW_MINUTES
    alert_liondesk_failing_minutes: float = defaults.ALERT_LIONDESK_FAILING_MINUTES
    alert_backlog_minutes: float = defaults.ALERT_BACKLOG_MINUTES
    alert_no_worker_minutes: float = defaults.ALERT_NO_WORKER_MINUTES
    alert_redis_memory_percent: int = defaults.ALERT_REDIS_MEMORY_PERCENT
    alert_check_seconds: float = defaults.ALERT_CHECK_SECONDS
    bridge_timezone: str = defaults.DISPLAY_TIMEZONE
    liondesk_contact_url: str | None = None
    rules: Mapping = field(default_factory=dict, compare=False, repr=False)

    @property
    def liondesk_configured(self) -> bool:
        """Whether OAuth app credentials for LionDesk v2 are present."""
        return bool(self.liondesk_client_id and self.liondesk_client_secret)

    @property
    def liondesk_v1_enabled(self) -> bool:
        """Whether activities go to the LionDesk timeline through the v1 partner API."""
        return bool(self.liondesk_v1_api_key and self.liondesk_v1_user_key)

    @property
    def reverse_sync_enabled(self) -> bool:
        """Whether LionDesk changes are pushed back through the Real Geeks Incoming API."""
        return bool(self.realgeeks_api_username and self.realgeeks_api_password)

    @property
    def alerts_enabled(self) -> bool:
        """Whether alerts have somewhere to go (a webhook, e-mail, or both)."""
        return bool(self.alert_webhook_url or self.alert_email_to)

    @property
    def admin_enabled(self) -> bool:
        """Whether the support console is switched on."""
        return bool(self.admin_username and self.admin_password)

    def __repr__(self) -> str:  # never print secrets, even by accident
        return f"Settings(redis={'set' if self.redis_url else 'embedded'}, liondesk={self.liondesk_api_url})"


def _text(env: Mapping[str, str], name: str) -> str | None:
    """Return a variable's stripped value, or None when unset or blank."""
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _url(env: Mapping[str, str], name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
    """Return a URL variable after checking its scheme and host; no trailing slash."""
    value = _text(env, name)
    if value is None:
        return default
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.path and parsed.scheme == "unix"):
        raise ConfigError(name, f"must be a {' or '.join(s + '://' for s in schemes)} URL, got {value!r}")
    return value.rstrip("/")


_KIND_WORDS = {int: "a whole number", float: "a number"}


def _number(env: Mapping[str, str], name: str, default, kind, minimum, maximum=None):
    """Return a numeric variable converted with `kind` (int or float), finite and within its bounds."""
    value = _text(env, name)
    if value is None:
        return default
    expected = _KIND_WORDS.get(kind, f"a {kind.__name__}")
    try:
        number = kind(value)
    except ValueError:
        raise ConfigError(name, f"must be {expected}, got {value!r}") from None
    if not math.isfinite(number):  # float("nan") compares False with every bound, so check first
        raise ConfigError(name, f"must be {expected}, got {value!r}")
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(name, f"must be {bounds}, got {value!r}")
    return number


def _pair(env: Mapping[str, str], first: str, second: str) -> tuple[str | None, str | None]:
    """Return two variables that only make sense together; one without the other is an error."""
    a, b = _text(env, first), _text(env, second)
    if bool(a) != bool(b):
        present, missing = (first, second) if a else (second, first)
        raise ConfigError(missing, f"must be set together with {present}")
    return a, b


_TRUE, _FALSE = ("1", "true"), ("0", "false")


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    """Return a 0/1 (or true/false) variable as a bool, or None when unset."""
    value = _text(env, name)
    if value is None:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(name, f"must be 1 or 0 (or true/false), got {value!r}")


_HEROKU_REDIS_ATTACHMENT = re.compile(r"HEROKU_REDIS_[A-Z0-9_]+_URL")


def heroku_redis_detected(env: Mapping[str, str], url: str | None) -> bool:
    """Whether `url` is a Heroku Redis add-on's TLS URL, seen from a Heroku dyno.

    The rule: DYNO is set (Heroku sets it in every dyno, release phase included), the
    URL is rediss://, and either its host is an EC2 public name (where Heroku Redis
    runs: ec2-….compute-1.amazonaws.com / ec2-….<region>.compute.amazonaws.com) or
    the same URL is also set as a HEROKU_REDIS_<COLOR>_URL attachment variable.
    """
    if not _text(env, "DYNO") or not url or not url.startswith("rediss://"):
        return False
    host = (urlparse(url).hostname or "").lower()
    if host.startswith("ec2-") and host.endswith(defaults.HEROKU_REDIS_HOST_SUFFIXES):
        return True
    return any(_HEROKU_REDIS_ATTACHMENT.fullmatch(name) and (value or "").strip().rstrip("/") == url
               for name, value in env.items())


def redis_tls(env: Mapping[str, str], url: str | None) -> tuple[bool, str | None]:
    """Decide whether a rediss:// connection to `url` verifies the server's certificate.

    Verified by default. Skipped only when REDIS_TLS_INSECURE=1, or when it is unset
    and Heroku Redis (self-signed certificates) is detected; REDIS_TLS_INSECURE=0
    verifies even there. Returns (verify, why it is skipped or None).
    """
    insecure = _flag(env, "REDIS_TLS_INSECURE")
    if not url or not url.startswith("rediss://") or insecure is False:
        return True, None
    if insecure:
        return False, "REDIS_TLS_INSECURE=1"
    if heroku_redis_detected(env, url):
        return False, "Heroku Redis detected: DYNO is set and REDIS_URL is a Heroku Redis rediss:// URL"
    return True, None


def _intervals(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """Return a comma-separated list of whole seconds, each at least 1."""
    value = _text(env, name)
    if value is None:
        return default
    try:
        intervals = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise ConfigError(name, f"must be comma-separated whole seconds, got {value!r}") from None
    if not intervals or min(intervals) < 1:
        raise ConfigError(name, f"needs at least one interval, each at least 1 second, got {value!r}")
    return intervals


_ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+")


def _addresses(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Return a comma-separated list of e-mail addresses."""
    value = _text(env, name)
    if value is None:
        return ()
    found = tuple(part.strip() for part in value.split(",") if part.strip())
    wrong = [part for part in found if not _ADDRESS.fullmatch(part)]
    if wrong or not found:
        raise ConfigError(name, f"must be e-mail addresses separated by commas, got {value!r}")
    return found


def _email_alerts(env: Mapping[str, str]) -> tuple[str | None, tuple[str, ...], str | None]:
    """Return SMTP_URL, ALERT_EMAIL_TO and the sender: e-mail alerts need all of them, or none."""
    smtp_url = _url(env, "SMTP_URL", None, ("smtp", "smtps"))
    recipients = _addresses(env, "ALERT_EMAIL_TO")
    if bool(smtp_url) != bool(recipients):
        present, missing = ("SMTP_URL", "ALERT_EMAIL_TO") if smtp_url else ("ALERT_EMAIL_TO", "SMTP_URL")
        raise ConfigError(missing, f"must be set together with {present}")
    sender = _addresses(env, "ALERT_EMAIL_FROM")
    if smtp_url and not sender:
        user = unquote(urlparse(smtp_url).username or "")
        if not _ADDRESS.fullmatch(user):
            raise ConfigError("ALERT_EMAIL_FROM", "must be set when the SMTP_URL user is not an e-mail address")
        sender = (user,)
    return smtp_url, recipients, sender[0] if sender else None


def _minutes(env: Mapping[str, str], name: str, default: float) -> float:
    """Return a number of minutes (fractions allowed) between 0 and a week."""
    return _number(env, name, default, float, 0, 7 * 24 * 60)
def _timezone(env: Mapping[str, str], name: str) -> str:
    """Return an IANA time zone name that this system's tz database knows."""
    value = _text(env, name) or defaults.DISPLAY_TIMEZONE
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(name, f"must be an IANA time zone such as America/Los_Angeles, got {value!r}") from None
    return value


def _contact_url(env: Mapping[str, str], name: str) -> str | None:
    """Return a URL template naming `{contact_id}`, where the LionDesk web app shows one contact."""
    value = _url(env, name, None, ("http", "https"))
    if value is not None and "{contact_id}" not in value:
        raise ConfigError(name, f"must contain {{contact_id}} where the contact's id goes, got {value!r}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the bridge's settings from `env` (default: os.environ)."""

    env = os.environ if env is None else env
    client_id, client_secret = _pair(env, "LIONDESK_CLIENT_ID", "LIONDESK_CLIENT_SECRET")
    refresh_token = _text(env, "LIONDESK_REFRESH_TOKEN")
    if refresh_token and not client_id:
        raise ConfigError("LIONDESK_REFRESH_TOKEN", "needs LIONDESK_CLIENT_ID and LIONDESK_CLIENT_SECRET")
    v1_key, v1_user = _pair(env, "LIONDESK_V1_API_KEY", "LIONDESK_V1_USER_KEY")
    rg_user, rg_password = _pair(env, "REALGEEKS_API_USERNAME", "REALGEEKS_API_PASSWORD")
    admin_user, admin_password = _pair(env, "ADMIN_USERNAME", "ADMIN_PASSWORD")
    bridge_config = _text(env, "BRIDGE_CONFIG")
    redis_url = _url(env, "REDIS_URL", None, ("redis", "rediss", "unix"))
    tls_verify, tls_skip_reason = redis_tls(env, redis_url)
    smtp_url, alert_email_to, alert_email_from = _email_alerts(env)
    return Settings(
        redis_url=redis_url,
        redis_tls_verify=tls_verify,
        redis_tls_skip_reason=tls_skip_reason,
        realgeeks_webhook_secret=_text(env, "REALGEEKS_WEBHOOK_SECRET"),
        realgeeks_partner_id=_text(env, "REALGEEKS_PARTNER_ID"),
        liondesk_api_url=_url(env, "LIONDESK_API_URL", defaults.LIONDESK_API_URL, ("http", "https")),
        liondesk_client_id=client_id,
        liondesk_client_secret=client_secret,
        liondesk_refresh_token=refresh_token,
        liondesk_redirect_uri=_url(env, "LIONDESK_REDIRECT_URI", None, ("http", "https")),
        liondesk_v1_url=_url(env, "LIONDESK_V1_URL", defaults.LIONDESK_V1_URL, ("http", "https")),
        liondesk_communications_url=_url(env, "LIONDESK_COMMUNICATIONS_URL", defaults.LIONDESK_COMMUNICATIONS_URL,
                                         ("http", "https")),
        liondesk_v1_api_key=v1_key,
        liondesk_v1_user_key=v1_user,
        liondesk_max_requests_per_second=_number(
            env, "LIONDESK_MAX_REQUESTS_PER_SECOND", defaults.LIONDESK_MAX_REQUESTS_PER_SECOND, float, 0.1, 1000),
        realgeeks_api_url=_url(env, "REALGEEKS_API_URL", defaults.REALGEEKS_API_URL, ("http", "https")),
        realgeeks_api_username=rg_user,
        realgeeks_api_password=rg_password,
        liondesk_poll_seconds=_number(env, "LIONDESK_POLL_SECONDS", defaults.LIONDESK_POLL_SECONDS, int, 1, 86400),
        admin_username=admin_user,
        admin_password=admin_password,
        metrics_token=_text(env, "METRICS_TOKEN"),
        secret_key=_text(env, "SECRET_KEY"),
        bridge_config=bridge_config,
        port=_number(env, "PORT", defaults.PORT, int, 1, 65535),
        retry_intervals=_intervals(env, "BRIDGE_RETRY_INTERVALS", defaults.RETRY_INTERVALS_SECONDS),
        public_url=_url(env, "BRIDGE_PUBLIC_URL", None, ("http", "https")),
        alert_webhook_url=_url(env, "ALERT_WEBHOOK_URL", None, ("http", "https")),
        smtp_url=smtp_url,
        alert_email_to=alert_email_to,
        alert_email_from=alert_email_from,
        alert_window_minutes=_minutes(env, "ALERT_WINDOW_MINUTES", defaults.ALERT_WINDOW_MINUTES),
        alert_liondesk_failing_minutes=_minutes(env, "ALERT_LIONDESK_FAILING_MINUTES",
                                                defaults.ALERT_LIONDESK_FAILING_MINUTES),
        alert_backlog_minutes=_minutes(env, "ALERT_BACKLOG_MINUTES", defaults.ALERT_BACKLOG_MINUTES),
        alert_no_worker_minutes=_minutes(env, "ALERT_NO_WORKER_MINUTES", defaults.ALERT_NO_WORKER_MINUTES),
        alert_redis_memory_percent=_number(env, "ALERT_REDIS_MEMORY_PERCENT", defaults.ALERT_REDIS_MEMORY_PERCENT,
                                           int, 1, 100),
        alert_check_seconds=_number(env, "ALERT_CHECK_SECONDS", defaults.ALERT_CHECK_SECONDS, float, 0.2, 3600),
        bridge_timezone=_timezone(env, "BRIDGE_TIMEZONE"),
        liondesk_contact_url=_contact_url(env, "LIONDESK_CONTACT_URL"),
        rules=load_rules(bridge_config),
    )
