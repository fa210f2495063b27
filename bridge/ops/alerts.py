"""Alerts: tell a person when leads stop flowing, before an agent notices.

Conditions, each with a console page that fixes it:
- a lead failed for good (a permanent error, or its retries spent): the failed jobs page;
- LionDesk refuses the bridge's grant or its app (needs re-authorisation): the overview;
- every LionDesk call failing for ALERT_LIONDESK_FAILING_MINUTES;
- the oldest waiting lead older than ALERT_BACKLOG_MINUTES;
- no worker seen for ALERT_NO_WORKER_MINUTES;
- Redis using more than ALERT_REDIS_MEMORY_PERCENT of its memory limit.

Every web and worker process runs an evaluator thread; one of them takes each period's
tick (storage/alerts.py), observes every condition and sends what changed: a problem alert
at most once per ALERT_WINDOW_MINUTES per condition, and a recovery when it clears. Sending
happens on that thread with short timeouts, so it never blocks or fails a job or a request.

Where alerts go: ALERT_WEBHOOK_URL, a Slack-compatible incoming webhook (JSON with `text`:
Slack, Mattermost, Discord's `/slack` endpoint; a Teams workflow gets the same text as an
Adaptive Card, the only format Teams workflows take), and e-mail over SMTP_URL to ALERT_EMAIL_TO.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Callable
from urllib.parse import unquote, urlparse

import redis
import requests
from rq.registry import FailedJobRegistry

from bridge import defaults
from bridge.ops import jobs as job_tools
from bridge.ops import present, status
from bridge.ops.metrics import Metrics
from bridge.storage import alerts as store
from bridge.storage.redis import text as as_text

log = logging.getLogger("bridge.alerts")

PROBLEM, REMINDER, RECOVERY, TEST = "problem", "reminder", "recovery", "test"
"""Kinds of alert message."""

APP_REFUSED_REASONS = ("invalid_client", "unauthorized_client")
"""Words in a recorded refusal that mean LionDesk refused the app itself, not only the grant."""

TEAMS_WORKFLOW_HOSTS = (".logic.azure.com", ".powerplatform.com", ".powerautomate.com")
"""Hosts of Teams workflow webhooks ("When a Teams webhook request is received"), which take Adaptive Cards only."""

DISCORD_HOSTS = ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com")
"""Hosts of Discord webhooks: their Slack-compatible endpoint is the webhook URL plus `/slack`."""


@dataclass
class Observation:
    """What one condition looks like right now."""

    holds: bool
    text: str = ""
    """The problem in a sentence or few (what, since when, what it means for leads)."""
    recovery: str = ""
    """The sentence saying it cleared."""
    hold_for: float = 0.0
    """How long (seconds) the condition must hold before it is announced."""
    news: bool | None = None
    """For a condition that counts things (failed leads): whether there is something not announced yet."""
    mark: float = 0.0
    announced: dict = field(default_factory=dict)
    """For a counting condition: the mark and facts to keep once this news is announced."""
    facts: dict = field(default_factory=dict)
    """What the observer keeps for its next look."""


@dataclass(frozen=True)
class Condition:
    """One thing worth telling a person about."""

    name: str
    title: str
    page: str
    """The console page that fixes it, below /admin."""
    observe: Callable[..., Observation]
    """(conn, settings, state, now) → Observation."""
    reminds: bool = True
    """Whether a problem still holding after the window is announced again."""


@dataclass(frozen=True)
class Message:
    """One alert to send."""

    kind: str
    condition: str
    title: str
    text: str
    page: str | None = None


# ---- the conditions -------------------------------------------------------------------------

def observe_lead_failed(conn, settings, state: store.AlertState, now: float) -> Observation:
    """Leads whose job failed for good: in RQ's failed registry of the event queue (poll and contact jobs aside)."""
    registry = FailedJobRegistry(defaults.EVENT_QUEUE, connection=conn)
    recovery = "No failed leads left: every one was replayed or dismissed."
    # Scored by expiry, in whole seconds: failed at + the same TTL, so newer failures score
    # higher, and those of one second tie (the ids announced at the mark tell them apart).
    scored = [(as_text(job_id), score) for job_id, score in
              conn.zrevrangebyscore(registry.key, "+inf", state.mark, withscores=True)
              if job_tools.job_kind(as_text(job_id)) == job_tools.LEAD]
    total = registry.count
    if not total:
        return Observation(False, recovery=recovery)
    told = set(state.facts.get("at_mark", ()))
    fresh = [job_id for job_id, score in scored if score > state.mark or job_id not in told]
    if not fresh:
        return Observation(True, news=False, mark=state.mark, facts=state.facts, recovery=recovery)
    mark = scored[0][1]
    announced = {"at_mark": [job_id for job_id, score in scored if score == mark]}
    lines = []
    for job_id in fresh[:defaults.ALERT_LEADS_LISTED]:
        detail = job_tools.job_detail(conn, job_id)
        job = detail.summary if detail else None
        if job is None:
            continue
        who = f"lead {job.lead_id}" + (f" ({_fact(job.lead_name, 80)})" if job.lead_name else "") if job.lead_id \
            else job_id
        lines.append(f"• {who}, {_fact(job.action or 'event', 40)}: {_fact(job.error_class or 'Error', 80)}: "
                     f"{_fact(job.error or '(no message)', 200)}")
    if len(fresh) > len(lines):
        lines.append(f"• and {len(fresh) - len(lines)} more")
    count = len(fresh)
    text = (f"{count} lead{'s' if count != 1 else ''} failed for good and did not reach LionDesk"
            f" ({total} failed job{'s' if total != 1 else ''} in all). Replay them once the cause is fixed.\n"
            + "\n".join(lines))
    return Observation(True, text=text, news=True, mark=mark, announced=announced, facts=state.facts,
                       recovery=recovery)


def observe_liondesk_auth(conn, settings, state: store.AlertState, now: float) -> Observation:
    """LionDesk refusing the bridge's grant or its app (an app registered under another LionDesk
    account, as the OAuth client records it): nothing, or not everything, reaches LionDesk until
    a person reconnects it."""
    auth = status.liondesk_auth(conn, settings)
    recovery = "LionDesk authorisation works again; leads waiting for it go through."
    conflict = auth.get("app_conflict") if isinstance(auth.get("app_conflict"), dict) else None
    if auth.get("state") == status.NEEDS_REAUTHORIZATION:
        reason = _fact(auth.get("reason") or "no reason given", 200)
        since = f" since {auth['since']}" if auth.get("since") else ""  # ISO 8601 UTC, as the OAuth state reports it
        if any(word in reason for word in APP_REFUSED_REASONS):
            text = (f"LionDesk refuses the bridge's app ({reason}){since}: check LIONDESK_CLIENT_ID and "
                    "LIONDESK_CLIENT_SECRET, then connect LionDesk again. Leads wait, none is lost.")
        else:
            text = (f"LionDesk needs re-authorisation ({reason}){since}: connect LionDesk again from the console "
                    "or with `bridge liondesk authorize`. Leads wait, none is lost.")
    elif conflict:
        since = f" since {conflict['since']}" if conflict.get("since") else ""
        detail = "; ".join(_fact(part, 200) for part in (conflict.get("problem"), conflict.get("reason")) if part)
        text = (f"LionDesk refuses the bridge's app{since}: {detail}. Connect LionDesk with the account the app "
                "is registered under (or use that account's app credentials).")
    else:
        return Observation(False, recovery=recovery)
    return Observation(True, text=text, recovery=recovery)


def observe_liondesk_failing(conn, settings, state: store.AlertState, now: float) -> Observation:
    """Every LionDesk call failing (5xx, 429, timeouts, refused connections) with no success in between.

    Read from the call counters every process keeps in Redis: between two looks, failures
    and no success means failing, a success means not; no call at all changes nothing.
    """
    ok = failed = 0
    for name, count in Metrics(conn).counts("calls").items():
        service, _, outcome = name.partition("|")
        if service in status.LIONDESK_SERVICES:
            if outcome.isdigit() and int(outcome) < 500 and int(outcome) != 429:
                ok += count
            else:
                failed += count
    before = state.facts
    failing = bool(before.get("failing"))
    if "ok" in before and ok >= before["ok"] and failed >= before["failed"]:
        if ok > before["ok"]:
            failing = False
        elif failed > before["failed"]:
            failing = True
    facts = {"ok": ok, "failed": failed, "failing": failing}
    minutes = settings.alert_liondesk_failing_minutes
    since = f" since {present.format_time(state.since)}" if state.since else ""
    text = ""
    if failing:  # only then is the count worth its round trips
        waiting = status.waiting_jobs(conn)
        count = waiting["liondesk_failing"]
        leads = f"{count}{'+' if waiting['more'] else ''} " + ("lead waits" if count == 1 else "leads wait")
        text = (f"Every LionDesk call has failed for {present.format_age(minutes * 60)} or more{since}: {leads} "
                "on their retry ladder and go through when LionDesk answers again (or run them at once from "
                "the Retrying page).")
    return Observation(failing, hold_for=minutes * 60, facts=facts, text=text,
                       recovery="LionDesk answers again; waiting leads go through on their next attempt.")


def observe_backlog(conn, settings, state: store.AlertState, now: float) -> Observation:
    """The oldest lead waiting to be worked on, accepted but not yet relayed or queued but not yet run:
    waiting too long means workers are too few, stuck or gone."""
    intake = status.intake_backlog(conn, now)
    ages = [age for age in (status.oldest_waiting_age(conn, now), intake["oldest_age_seconds"]) if age is not None]
    age = max(ages) if ages else None
    limit = settings.alert_backlog_minutes * 60
    waiting = status.queue_depths(conn)["events"] + intake["entries"]
    return Observation(age is not None and age >= limit,
                       text=(f"The oldest waiting lead has waited {present.format_age(age)} to be worked on "
                             f"({waiting} waiting): workers are too few, stuck or not running."),
                       recovery="The backlog is worked off: no lead waits longer than "
                                f"{present.format_age(limit)}.")


def observe_no_worker(conn, settings, state: store.AlertState, now: float) -> Observation:
    """No worker process beating (storage/beats.py): deliveries are stored but nothing sends them on."""
    minutes = settings.alert_no_worker_minutes
    workers = status.worker_status(conn, now)
    since = f" (last seen {present.format_time(workers.last_seen)})" if workers.last_seen else ""
    return Observation(workers.live == 0, hold_for=minutes * 60,
                       text=(f"No worker has been seen for {present.format_age(minutes * 60)} or more{since}: "
                             "deliveries are accepted and stored, but no lead reaches LionDesk. Start (or scale "
                             "up) the worker process, on the same Redis as the web process."),
                       recovery="A worker is running again; stored deliveries are being worked off.")


def observe_redis_memory(conn, settings, state: store.AlertState, now: float) -> Observation:
    """Redis memory in use against its limit: a full Redis refuses new deliveries."""
    memory = status.redis_memory(conn, settings)  # the level /healthz and the console show, from the same threshold
    limit, share, threshold = memory["maxmemory_bytes"], memory["percent"] or 0.0, settings.alert_redis_memory_percent
    return Observation(memory["warning"],
                       text=(f"Redis uses {share:.0f} % of its {limit / 2**20:.0f} MiB limit (alert at {threshold} %): "
                             "when full it refuses new deliveries. Move to a larger Redis plan or clear old records."),
                       recovery=f"Redis memory is below {threshold} % of its limit again.")


CONDITIONS = (
    Condition("lead_failed", "Leads failed", "/failed", observe_lead_failed, reminds=False),
    Condition("liondesk_auth", "LionDesk refuses the bridge", "/", observe_liondesk_auth),
    Condition("liondesk_failing", "LionDesk failing", "/retrying", observe_liondesk_failing),
    Condition("backlog", "Leads waiting", "/", observe_backlog),
    Condition("no_worker", "No worker", "/", observe_no_worker),
    Condition("redis_memory", "Redis memory", "/", observe_redis_memory),
)


# ---- deciding (pure) ------------------------------------------------------------------------

def decide(condition: Condition, state: store.AlertState, seen: Observation, now: float,
           window_seconds: float) -> tuple[Message | None, store.AlertState]:
    """What to send for one condition given what was said before and what is seen now, and the state after."""
    after = copy.deepcopy(state)
    after.facts = seen.facts
    if not seen.holds:
        after.since, after.mark = None, 0.0
        if not state.active:
            return None, after
        after.active = False
        return Message(RECOVERY, condition.name, condition.title, seen.recovery, condition.page), after
    after.since = state.since if state.since is not None else now
    if now - after.since < seen.hold_for:
        return None, after
    due = state.sent_at is None or now - state.sent_at >= window_seconds
    if not due:
        return None, after
    if seen.news is not None:  # a counting condition: only news is worth a message
        if not seen.news:
            return None, after
        after.mark, after.facts = seen.mark, seen.announced
        kind = PROBLEM
    elif not state.active:
        kind = PROBLEM
    elif condition.reminds:
        kind = REMINDER
    else:
        return None, after
    after.active, after.sent_at = True, now
    return Message(kind, condition.name, condition.title, seen.text, condition.page), after


# ---- one tick -------------------------------------------------------------------------------

def tick(conn, settings, *, now: float | None = None, owner: str | None = None) -> list[Message]:
    """Evaluate every condition once (unless another process has this period) and send what changed."""
    now = time.time() if now is None else now
    if not store.claim_tick(conn, settings.alert_check_seconds, f"{owner or _process()}@{now:.3f}"):
        return []
    sent = []
    for condition in CONDITIONS:
        state = store.load(conn, condition.name)
        try:
            seen = condition.observe(conn, settings, state, now)
        except redis.RedisError:
            raise
        except Exception:  # noqa: BLE001 - one broken observer must not silence the others
            log.exception("alert condition %s could not be observed", condition.name)
            continue
        message, after = decide(condition, state, seen, now, settings.alert_window_minutes * 60)
        if message is not None:
            problems = deliver(settings, message)
            if problems and len(problems) == len(destinations(settings)):
                # Nowhere took it: keep the state it had, so the next tick tries again.
                state.facts, state.since = after.facts, after.since
                after = state
            else:
                sent.append(message)
            after.last_error = "; ".join(problems) or None
        store.save(conn, condition.name, after)
    return sent


# ---- sending --------------------------------------------------------------------------------

def destinations(settings) -> list[str]:
    """Where alerts go: `webhook`, `email`, both or none."""
    return [name for name, on in (("webhook", settings.alert_webhook_url), ("email", settings.alert_email_to)) if on]


def deliver(settings, message: Message) -> list[str]:
    """Send one message everywhere alerts go; return a sentence per destination that failed (none: all took it)."""
    text = render(settings, message)
    problems = []
    if settings.alert_webhook_url:
        try:
            post_webhook(settings.alert_webhook_url, text)
        except AlertNotSent as exc:
            problems.append(f"webhook: {exc}")
    if settings.alert_email_to:
        try:
            send_email(settings, subject_of(settings, message), text)
        except AlertNotSent as exc:
            problems.append(f"e-mail: {exc}")
    for problem in problems:
        log.warning("alert %s (%s) not sent: %s", message.condition, message.kind, problem)
    return problems


class AlertNotSent(Exception):
    """A destination did not take an alert (the sentence says why, never the URL or a password)."""


_ICONS = {PROBLEM: "🔴", REMINDER: "🔴", RECOVERY: "✅", TEST: "🔔"}


def render(settings, message: Message) -> str:
    """The alert as text for people: what, the details, and the console page that fixes it."""
    where = f" ({urlparse(settings.public_url).hostname})" if settings.public_url else ""
    label = {REMINDER: f"Still: {message.title}", RECOVERY: f"Resolved: {message.title}"}.get(message.kind,
                                                                                             message.title)
    lines = [f"{_ICONS[message.kind]} Real Geeks → LionDesk bridge{where}: {label}", message.text]
    if message.page is not None and message.kind != RECOVERY:
        page = f"/admin{message.page}" if message.page != "/" else "/admin/"
        lines.append(f"Fix it: {settings.public_url}{page}" if settings.public_url
                     else f"Fix it on the console page {page} (set BRIDGE_PUBLIC_URL for a link)")
    return "\n".join(lines)


def subject_of(settings, message: Message) -> str:
    """The e-mail subject of an alert."""
    label = {REMINDER: "still", RECOVERY: "resolved", TEST: "test"}.get(message.kind, "alert")
    return f"[bridge {label}] {message.title}"


def webhook_payload(url: str, text: str) -> tuple[str, dict]:
    """The URL to post to and the JSON body for a chat webhook (pure).

    Slack, Mattermost and Discord's Slack endpoint take `{"text": ...}`; a Discord webhook
    URL pasted as Discord shows it gets `/slack` added; a Teams workflow gets an Adaptive Card.
    """
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if host.endswith(TEAMS_WORKFLOW_HOSTS):
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                "version": "1.4", "body": [{"type": "TextBlock", "text": text, "wrap": True}]}
        return url, {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
    if host in DISCORD_HOSTS and parsed.path.startswith("/api/webhooks/") and not parsed.path.endswith(
            ("/slack", "/github")):
        url = parsed._replace(path=parsed.path.rstrip("/") + "/slack").geturl()
    return url, {"text": chat_safe(text)}


def _fact(value, limit: int) -> str:
    """A fact from a lead or a vendor (a name, an error) fit for one line of an alert: control
    characters escaped (a newline would forge a line of the alert), cut at `limit`."""
    return present.terminal_safe(present.clip(str(value), limit))


_MENTION = re.compile(r"@(?=\w)")


def chat_safe(text: str) -> str:
    """Text for a Slack-compatible webhook that formats nothing a lead or vendor wrote: `&`, `<`, `>`
    escaped as Slack asks (no `<!channel>`, no disguised links), and every `@` before a word
    followed by a word joiner, so `@everyone` or `@channel` in a lead's name pings nobody."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@\u2060", escaped)


def post_webhook(url: str, text: str) -> None:
    """POST an alert to a chat webhook; raise AlertNotSent unless it answers 2xx in time."""
    target, body = webhook_payload(url, text)
    try:
        response = requests.post(target, json=body, timeout=defaults.ALERT_WEBHOOK_TIMEOUT_SECONDS,
                                 allow_redirects=False, headers={"User-Agent": "realgeeks-liondesk-bridge"})
    except requests.RequestException as exc:  # its text holds the URL, which is the webhook's secret
        raise AlertNotSent(f"no answer ({exc.__class__.__name__})") from None
    if not 200 <= response.status_code < 300:
        raise AlertNotSent(f"answered {response.status_code}: {present.clip(response.text.strip(), 200)}")


def send_email(settings, subject: str, text: str) -> None:
    """Send an alert by e-mail over SMTP_URL; raise AlertNotSent when the server does not take it.

    smtps:// speaks TLS from the start (port 465 by default); smtp:// (port 587 by default)
    upgrades with STARTTLS, and refuses to send a password or an alert in clear unless the
    server is on this machine (a local relay).
    """
    url = urlparse(settings.smtp_url)
    host, secure = url.hostname or "localhost", url.scheme == "smtps"
    port = url.port or (465 if secure else 587)
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, settings.alert_email_from, ", ".join(
        settings.alert_email_to)
    message["Date"], message["Message-ID"] = formatdate(localtime=False), make_msgid(domain="bridge.invalid")
    message.set_content(text)
    context = ssl.create_default_context()
    timeout = defaults.ALERT_SMTP_TIMEOUT_SECONDS
    try:
        server = (smtplib.SMTP_SSL(host, port, timeout=timeout, context=context) if secure
                  else smtplib.SMTP(host, port, timeout=timeout))
        with server:
            server.ehlo()
            if not secure:
                if server.has_extn("starttls"):
                    server.starttls(context=context)
                    server.ehlo()
                elif not _loopback(host):
                    raise AlertNotSent(f"{host} offers no STARTTLS; use smtps:// or a server that does")
            if url.username:
                server.login(unquote(url.username), unquote(url.password or ""))
            server.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:  # OSError: refused, unreachable, timed out, TLS failed
        raise AlertNotSent(f"{host}:{port}: {exc.__class__.__name__}: {present.clip(str(exc), 200)}") from None


def _loopback(host: str) -> bool:
    """Whether `host` is this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def test_message() -> Message:
    """The message `bridge alerts test` sends."""
    return Message(TEST, "test", "Test alert", "This is a test: alerts from the bridge reach this place. "
                   "Nothing is wrong.", None)


# ---- the evaluator thread -------------------------------------------------------------------

def run_alerts(conn, settings, stop: threading.Event) -> None:
    """Evaluate the alerts every ALERT_CHECK_SECONDS until `stop` is set; Redis trouble is waited out."""
    owner = _process()
    while True:
        try:
            tick(conn, settings, owner=owner)
        except redis.RedisError as exc:
            log.warning("alerts not evaluated: Redis unavailable (%s)", exc.__class__.__name__)
        except Exception:  # noqa: BLE001 - the evaluator outlives its own bugs
            log.exception("alerts not evaluated")
        if stop.wait(settings.alert_check_seconds):
            return


def start_alert_thread(conn, settings) -> tuple[threading.Thread | None, threading.Event]:
    """Start the evaluator thread (only when alerts have somewhere to go); set the returned event to stop it."""
    stop = threading.Event()
    if not settings.alerts_enabled:
        return None, stop
    thread = threading.Thread(target=run_alerts, args=(conn, settings, stop), name="alerts", daemon=True)
    thread.start()
    return thread, stop


_STARTED: dict[int, threading.Thread] = {}
_STARTING = threading.Lock()


def ensure_alert_thread(conn, settings) -> None:
    """Start this process's evaluator thread unless it runs (a forked web process starts its own)."""
    thread = _STARTED.get(os.getpid())
    if thread is not None and thread.is_alive():
        return
    with _STARTING:  # two requests arriving together start one thread
        thread = _STARTED.get(os.getpid())
        if thread is None or not thread.is_alive():
            started, _ = start_alert_thread(conn, settings)
            if started is not None:
                _STARTED[os.getpid()] = started


def _process() -> str:
    """This process, as the owner of a tick."""
    return f"{socket.gethostname()}.{os.getpid()}"

