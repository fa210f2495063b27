"""`bridge check-config`: refuse a configuration that would lose leads, warn about one that does less.

The release phase runs it before a deploy goes live. Problems (exit 2) are what would
lose leads in production: an invalid variable, no REDIS_URL on a hosting platform
(the embedded Redis is per machine and gone at the next restart), a Redis that does
not answer. Warnings (exit 0) are what leaves part of the bridge switched off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis

from bridge import defaults
from bridge.config import Settings, load_settings, redis_tls
from bridge.exceptions import ConfigError
from bridge.storage.redis import connect


@dataclass
class Report:
    """What check-config found: problems refuse the release, warnings do not."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    settings: Settings | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def platform(env: Mapping[str, str]) -> str | None:
    """Name of the hosting platform this process runs on, from the variables it sets; None locally."""
    for variable, name in defaults.PLATFORM_ENVIRONMENT_MARKERS.items():
        if (env.get(variable) or "").strip():
            return name
    return None


def _config_errors(env: Mapping[str, str]) -> tuple[Settings | None, list[ConfigError]]:
    """Load settings; on an error, set its variables aside and load again, to list every error.

    Set aside: the variable named, and those its message names (the present half of a pair).
    """
    env, errors = dict(env), []
    while True:
        try:
            settings = load_settings(env)
            return (None if errors else settings), errors
        except ConfigError as exc:
            errors.append(exc)
            named = [exc.variable, *re.findall(r"\b[A-Z][A-Z0-9_]+\b", exc.problem)]
            present = [name for name in named if (env.get(name) or "").strip()]
            if not present:
                return None, errors  # nothing left to set aside
            env.update(dict.fromkeys(present, ""))  # blank counts as unset: look past them


def _redis_problem(url: str, verify: bool) -> str | None:
    """Connect to `url` and PING it within the preflight timeout; a message when it does not answer."""

    timeout = defaults.PREFLIGHT_REDIS_TIMEOUT_SECONDS
    try:
        conn = connect(url, verify=verify, timeout=timeout)
        try:
            conn.ping()
        finally:
            conn.close()
    except redis.RedisError as exc:
        text = str(exc)
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            hint = (" The server's TLS certificate could not be verified: name a CA bundle in the URL"
                    " (?ssl_ca_certs=/path/ca.pem) or, for a self-signed certificate, set REDIS_TLS_INSECURE=1.")
        return (f"REDIS_URL: Redis did not answer a PING (waited up to {timeout:g} seconds): "
                f"{exc.__class__.__name__}: {_without_credentials(text, url).rstrip('.')}.{hint}")
    return None


def _without_credentials(text: str, url: str) -> str:
    """`text` with the URL's password, if any, masked."""
    from urllib.parse import urlparse

    password = urlparse(url).password
    return text.replace(password, "***") if password else text


def v1_echo_problem(settings: Settings) -> str | None:
    """Send v1 `Echo` (it changes nothing); a warning when v1 does not answer it.

    A warning, not a problem: LionDesk announced v1's shutdown in 2018 (§8), and without
    it activities still reach LionDesk, as tasks.
    """
    from bridge.clients.liondesk_v1 import LionDeskV1Client
    from bridge.exceptions import UpstreamError

    client = LionDeskV1Client(settings)
    client.service.timeout = (defaults.HTTP_CONNECT_TIMEOUT_SECONDS, defaults.V1_ECHO_TIMEOUT_SECONDS)
    try:
        client.echo()
    except UpstreamError as exc:
        return (f"LIONDESK_V1_API_KEY/LIONDESK_V1_USER_KEY: the LionDesk v1 channel did not answer Echo ({exc}); "
                "activities will be filed as LionDesk tasks instead.")
    return None


def _unset(env: Mapping[str, str], *names: str) -> bool:
    return not any((env.get(name) or "").strip() for name in names)


def check(env: Mapping[str, str]) -> Report:
    """Check the configuration in `env` as the release phase needs it; never starts the embedded Redis."""
    settings, errors = _config_errors(env)
    report = Report(problems=[str(error) for error in errors], settings=settings)
    broken = {error.variable for error in errors}

    where = platform(env)
    url = (env.get("REDIS_URL") or "").strip()
    if not url:
        if where:
            report.problems.append(
                f"REDIS_URL: not set, on {where}. Without it each process would start its own embedded "
                "Redis, lost at the next restart or deploy, and leads with it: attach a Redis add-on "
                "(or set REDIS_URL).")
        else:
            report.warnings.append("REDIS_URL is not set: the processes will start an embedded Redis "
                                   "(for local use only; not checked here).")
    elif not broken & {"REDIS_URL", "REDIS_TLS_INSECURE"}:
        verify = settings.redis_tls_verify if settings else redis_tls(env, url.rstrip("/"))[0]
        problem = _redis_problem(url, verify)
        if problem:
            report.problems.append(problem)

    if _unset(env, "REALGEEKS_WEBHOOK_SECRET"):
        report.warnings.append("REALGEEKS_WEBHOOK_SECRET is not set: the webhook will answer 503 to every "
                               "delivery (Real Geeks keeps retrying) until it is.")
    if _unset(env, "LIONDESK_CLIENT_ID", "LIONDESK_CLIENT_SECRET"):
        report.warnings.append("LIONDESK_CLIENT_ID and LIONDESK_CLIENT_SECRET are not set: leads are accepted "
                               "and stored, but their jobs wait and nothing reaches LionDesk until they are.")
    if settings is not None and settings.liondesk_v1_enabled:
        problem = v1_echo_problem(settings)
        if problem:
            report.warnings.append(problem)
    if _unset(env, "ADMIN_USERNAME", "ADMIN_PASSWORD"):
        report.warnings.append("ADMIN_USERNAME and ADMIN_PASSWORD are not set: the support console is off "
                               "(/admin answers 404).")
    return report


def summary(settings: Settings) -> str:
    """The one-line summary printed when the configuration passes."""
    return ("configuration ok: "
            f"redis={'REDIS_URL' if settings.redis_url else 'embedded (local only)'}, "
            f"liondesk={'configured' if settings.liondesk_configured else 'not configured'}, "
            f"reverse sync={'on' if settings.reverse_sync_enabled else 'off'}, "
            f"console={'on' if settings.admin_enabled else 'off'}")
