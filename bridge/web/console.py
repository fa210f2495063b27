"""The support console under /admin: overview, failed jobs, rejected deliveries, lead search.

Server-rendered pages that work without JavaScript. Mounted only when ADMIN_USERNAME
and ADMIN_PASSWORD are set; otherwise every /admin URL is a 404. Every page but the
login needs a session, every form carries a CSRF token, and the work itself is done by
bridge.ops.jobs and bridge.ops.leads, the same functions behind the CLI. Waiting jobs
(web/retrying.py) and the deliveries log (web/deliveries.py) add their pages to this blueprint.
"""

from __future__ import annotations

import dataclasses
import logging

import redis

from flask import (Blueprint, abort, current_app, flash, make_response, redirect, render_template, request,
                   url_for)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from bridge import defaults
from bridge.exceptions import JobNotFailed, JobNotFound
from bridge.ops import leads, logs, present, status
from bridge.web import auth
from bridge.ops import jobs as job_tools
from bridge.storage import events, keys, kinds
from bridge.queue import event_job_id

bp = Blueprint("admin", __name__, url_prefix=auth.CONSOLE_PATH, template_folder="templates", static_folder="static")
log = logging.getLogger("bridge.admin")

PUBLIC_ENDPOINTS = frozenset({"admin.login", "admin.static"})
"""Console endpoints reachable without a session."""

FILTER_FIELDS = ("action", "error_class", "since", "until")
"""Query (and hidden form) fields that describe a failed-jobs filter."""

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # No script at all, styles from our one file, forms only back to us.
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
}


def init_app(app) -> None:
    """Mount the console on `app` when the settings enable it."""
    settings = app.config["BRIDGE_SETTINGS"]
    if not settings.admin_enabled:
        return
    if not settings.secret_key:
        log.warning("SECRET_KEY is not set: console sessions are signed with a key derived from "
                    "ADMIN_PASSWORD; set SECRET_KEY to rotate it independently")
    app.register_blueprint(bp)


@bp.app_template_filter("time")
def _time_filter(timestamp):
    """Jinja: a time (unix seconds, or ISO 8601 text as the OAuth state reports it) as a <time> element
    in BRIDGE_TIMEZONE, with UTC on hover; "-" when there is none."""
    if isinstance(timestamp, str):
        try:
            timestamp = present.parse_time(timestamp)
        except ValueError:
            return timestamp
    if present.iso_time(timestamp) is None:
        return "-"
    return Markup('<time datetime="{}" title="{} UTC">{}</time>').format(
        present.iso_time(timestamp), present.format_time(timestamp)[:-1], present.format_time(timestamp, zone()))


def zone():
    """The time zone the console shows times in (BRIDGE_TIMEZONE)."""
    return present.time_zone(current_app.config["BRIDGE_SETTINGS"].bridge_timezone)


bp.add_app_template_filter(present.iso_time, "iso")
bp.add_app_template_filter(present.format_age, "age")
# The console shows a link to each entry's job beside it, so the line need not name the event.
bp.add_app_template_filter(lambda entry: present.describe_entry(entry, with_event=False, zone=zone(), limit=None),
                           "describe_whole")


@bp.app_template_filter("line")
def _line(entry) -> tuple[str, bool]:
    """Jinja: a story entry as one line of at most CONSOLE_LINE_CHARACTERS, and whether it was cut."""
    whole = present.describe_entry(entry, with_event=False, zone=zone(), limit=None)
    return present.clip(whole, defaults.CONSOLE_LINE_CHARACTERS), len(whole) > defaults.CONSOLE_LINE_CHARACTERS
bp.add_app_template_filter(present.pretty_body, "pretty_body")
bp.add_app_template_filter(present.shown, "shown")
bp.add_app_template_filter(present.error_items, "error_items")
bp.add_app_template_filter(present.errors_sentence, "errors_sentence")
bp.add_app_template_filter(event_job_id, "job_of_event")
bp.add_app_template_filter(lambda event: leads.person_name(leads.event_payload(event)), "lead_name_of")
bp.add_app_template_global(kinds, "kinds")  # a global, not context: the imported macros see it too


@bp.app_template_filter("clipped")
def _clipped(value, limit: int = defaults.CONSOLE_PAYLOAD_PREVIEW_CHARACTERS) -> bool:
    """Jinja: whether a value shown at `limit` characters was cut (its page then shows it whole)."""
    return len(present.shown(value, None)) > limit


@bp.context_processor
def _template_globals():
    """Jinja: the logged-in user, the CSRF token for forms, how much of a payload a list shows,
    and what needs a person (the banner)."""
    user = auth.current_user()
    return {"user": user, "csrf_token": auth.csrf_token, "csrf_field": auth.CSRF_FIELD,
            "preview_limit": defaults.CONSOLE_PAYLOAD_PREVIEW_CHARACTERS,
            "notices": _notices() if user else [], "status_kinds": status,
            "zone_name": current_app.config["BRIDGE_SETTINGS"].bridge_timezone}


def _notices() -> list[status.Notice] | None:
    """What the banner shows; None when Redis cannot say (the page itself then says why)."""
    try:
        return status.attention(redis_client(), current_app.config["BRIDGE_SETTINGS"])
    except redis.RedisError:
        return None


@bp.before_request
def _guard():
    """Refuse anonymous requests (log in first) and forms without this session's CSRF token."""
    if request.endpoint not in PUBLIC_ENDPOINTS and auth.current_user() is None:
        if request.method in ("GET", "HEAD"):
            return redirect(url_for(".login", next=request.full_path.rstrip("?")))
        abort(401, "log in first")
    if request.method == "POST" and not auth.csrf_ok(request.form.get(auth.CSRF_FIELD)):
        abort(400, "The form was missing its security token or it was stale; reload the page and try again.")
    return None


@bp.after_request
def _headers(response):
    """Keep console pages out of caches and frames."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    """Answer console errors with a page, not JSON."""
    return render_template("error.html", code=exc.code, title=exc.name, message=exc.description), exc.code


@bp.errorhandler(redis.RedisError)
def _redis_error(exc: redis.RedisError):
    """Say plainly that storage is unavailable."""
    log.error("console: redis unavailable: %s", exc.__class__.__name__)
    return render_template("error.html", code=503, title="Storage unavailable",
                           message="Redis did not answer; try again in a moment."), 503


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form, or check the credentials and start a session."""
    if request.method == "GET":
        if auth.current_user():
            return redirect(url_for(".overview"))
        return render_template("login.html", next=safe_next(request.args.get("next")))
    username, password = request.form.get("username", ""), request.form.get("password", "")
    next_url = safe_next(request.form.get("next"))
    result = auth.attempt_login(redis_client(), current_app.config["BRIDGE_SETTINGS"], username, password,
                                auth.client_address(), request.cookies.get(auth.DEVICE_COOKIE))
    logs.event_line(log, "console_login", outcome=result.outcome, user=result.user)
    if not result.ok:
        response = make_response(render_template("login.html", next=next_url, error=result.message), result.status)
        if result.retry_after:
            response.headers["Retry-After"] = str(result.retry_after)
        return response
    auth.log_in(redis_client(), result)
    response = redirect(next_url or url_for(".overview"))
    auth.remember_device(response, result.user)
    return response


@bp.post("/logout")
def logout():
    """End the session."""
    auth.log_out(redis_client())
    flash("Logged out.", "info")
    return redirect(url_for(".login"))


@bp.get("/")
def overview():
    """Queues, recent outcomes (and a chart of the last day), LionDesk authorisation and the last poll."""
    conn = redis_client()
    hours = job_tools.hourly_outcomes(conn)
    return render_template("overview.html", stats=job_tools.stats(conn),
                           liondesk=status.liondesk_auth(conn, current_app.config["BRIDGE_SETTINGS"]),
                           poll=status.poll_status(conn), needs_reauthorization=status.NEEDS_REAUTHORIZATION,
                           chart=chart_of(hours))


CHART_HEIGHT, CHART_STEP = 120, 30
"""Height of the bars' area of the overview's chart, and the width of one hour, in SVG units."""


def chart_of(hours: list[dict]) -> dict:
    """Lay out the hourly outcomes as bars for the overview's inline SVG: delivered up, failed in red beside it."""
    peak = max([1, *(hour["processed"] for hour in hours), *(hour["failed"] for hour in hours)])
    bars = []
    for index, hour in enumerate(hours):
        delivered = round(hour["processed"] / peak * CHART_HEIGHT, 1)
        failed = round(hour["failed"] / peak * CHART_HEIGHT, 1)
        bars.append({**hour, "x": index * CHART_STEP, "delivered_height": delivered, "failed_height": failed,
                     "label": present.format_time(hour["start"], zone())[11:16]})
    return {"bars": bars, "peak": peak, "height": CHART_HEIGHT, "width": len(hours) * CHART_STEP,
            "delivered": sum(hour["processed"] for hour in hours), "failed": sum(hour["failed"] for hour in hours)}


@bp.get("/failed")
def failed():
    """Failed jobs, filtered by action, error class and time, with bulk replay; poll and contact jobs apart."""
    job_filter, values = _filter_from(request.args)
    conn = redis_client()
    everything = job_tools.failed_briefly(conn)  # counts and filters from each job's kept failure: no story read
    matching = [job for job in everything if job_filter.matches(job)]
    leads = [job for job in matching if job.kind == job_tools.LEAD]
    others = [job for job in everything if job.kind != job_tools.LEAD]
    size = defaults.CONSOLE_PAGE_SIZE
    shown = job_tools.summaries(conn, [job.id for job in leads[:size]], missing_ok=True)  # the page, in full
    return render_template(
        "failed.html", jobs=shown, matching=len(leads), total=sum(job.kind == job_tools.LEAD for job in everything),
        others=job_tools.summaries(conn, [job.id for job in others[:size]], missing_ok=True), values=values,
        actions=sorted({job.action for job in everything if job.action}),
        error_classes=sorted({job.error_class for job in everything if job.error_class}))


@bp.post("/failed/replay")
def replay():
    """Replay one job at once; for the selected jobs, or every failed job matching the filter, first show
    what will be replayed and ask (the confirmation posts back with `confirm`)."""
    who = auth.current_user()
    conn = redis_client()
    ladder = current_app.config["BRIDGE_SETTINGS"].retry_intervals
    job_filter, values = _filter_from(request.form)
    back = safe_next(request.form.get("next")) or url_for(".failed", **{k: v for k, v in values.items() if v})
    scope = request.form.get("scope")
    if scope in ("matching", "others") and not request.form.get("confirm"):
        kinds = job_tools.LEAD_JOBS if scope == "matching" else job_tools.NON_LEAD_JOBS
        found = job_tools.failed_briefly(conn, dataclasses.replace(job_filter, kinds=kinds))
        return confirm_page("replay", found, url_for(".replay"), back, values)
    selected = request.form.getlist("job_id")
    if not selected:
        flash("Select at least one job to replay.", "error")
        return redirect(back)
    try:
        if len(selected) > 1 and not request.form.get("confirm"):
            return confirm_page("replay", job_tools.summaries(conn, selected), url_for(".replay"), back, values)
        results = job_tools.replay(conn, selected, by=who, via=job_tools.CONSOLE, intervals=ladder,
                                   missing_ok=bool(request.form.get("confirm")))
    except JobNotFound as exc:
        flash(f"Nothing replayed: {exc}.", "error")
        return redirect(back)
    replayed = [result.job_id for result in results if result.replayed]
    skipped = len(results) - len(replayed)
    flash(f"Replayed {len(replayed)} job{'s' if len(replayed) != 1 else ''} with a fresh retry budget"
          + (f"; {skipped} skipped (no longer failed)." if skipped else "."), "ok")
    return redirect(back)


CONFIRM_VERBS = {
    "replay": ("Replay {n}?", "Yes, replay {n}", "with a fresh retry budget: each runs again from the first step "
               "of the retry ladder"),
    "run now": ("Run {n} now?", "Yes, run {n} now", "ahead of their next attempt; the attempt counts as one of "
                "each job's retries"),
}
"""The bulk actions the confirmation page asks about: its title, its button, and what the action does."""


def confirm_page(verb: str, found: list, action: str, back: str, values: dict | None = None):
    """Show what a bulk action will touch (counts by kind, action and error, and the jobs) and ask to confirm.

    The form posts the listed job ids back: confirming acts on exactly what was shown, not on
    whatever matches by the time the button is pressed.
    """
    if not found:
        flash(f"Nothing to {verb}: no job matches.", "error")
        return redirect(back)
    plan = job_tools.preview(found)
    listed = found[:defaults.CONSOLE_PAGE_SIZE]
    for summary in listed:  # a brief preview names no one: name the rows shown
        if summary.lead_name is None and summary.event_id:
            summary.lead_name = leads.name_of_event(redis_client(), summary.event_id)
    jobs = f"{plan.total} job{'s' if plan.total != 1 else ''}"
    title, button, meaning = (text.format(n=jobs) for text in CONFIRM_VERBS[verb])
    return render_template("confirm.html", verb=verb, title=title, button=button, meaning=meaning,
                           plan=plan, jobs=listed,
                           action=action, back=back, values=values or {})


@bp.post("/jobs/<job_id>/dismiss")
def dismiss(job_id: str):
    """Dismiss a failed job with the reason support gave."""
    reason = request.form.get("reason", "").strip()
    if not reason:
        flash("Give a reason to dismiss a job.", "error")
        return redirect(url_for(".job", job_id=job_id))
    try:
        done = job_tools.dismiss(redis_client(), job_id, reason[:500], by=auth.current_user(), via=job_tools.CONSOLE)
    except JobNotFound:
        abort(404, f"No job {job_id}.")
    except JobNotFailed as exc:
        flash(f"Not dismissed: {exc}.", "error")
        return redirect(url_for(".job", job_id=job_id))
    flash(f"Dismissed {job_id}." if done else f"{job_id} was already dismissed.", "ok")
    return redirect(url_for(".failed"))


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    """One job: its state, error, stored payload and the lead's history."""
    detail = job_tools.job_detail(redis_client(), job_id)
    if detail is None:
        abort(404, f"No job {job_id}: it never existed or has expired.")
    return render_template("job.html", detail=detail, summary=detail.summary)


@bp.get("/rejected")
def rejected():
    """Signed deliveries that failed validation, newest first, with their errors and payloads."""
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    size = defaults.CONSOLE_REJECTED_PAGE_SIZE  # each reads its whole body (up to 1 MiB) to show part of it
    conn = redis_client()
    found = events.list_rejected(conn, (page - 1) * size, size)
    total = conn.zcard(keys.rejected_events())
    return render_template("rejected.html", rejected=found, page=page, total=total,
                           has_next=page * size < total)


@bp.route("/leads", methods=["GET", "POST"])
def lead_search():
    """Find a lead by Real Geeks id, email, phone or name.

    The query goes in a POST body, not the URL: URLs end up in router logs, browser
    history and Referer headers, and emails and phone numbers have no business there.
    """
    if request.method == "GET":
        return render_template("leads.html", query="", results=None)
    query = request.form.get("q", "").strip()[:200]
    ids = leads.search(redis_client(), query) if query else []
    if len(ids) == 1:
        return redirect(url_for(".lead", lead_id=ids[0]), code=303)
    return render_template("leads.html", query=query, results=leads.lead_cards(redis_client(), ids))


@bp.get("/leads/<lead_id>")
def lead(lead_id: str):
    """A lead's page: the answer first (state, LionDesk contact, agent, campaign, route, what to do),
    then its story with the calls folded under the step they belong to."""
    conn = redis_client()
    story = leads.lead_story(conn, lead_id)
    if not story.known:
        abort(404, f"No record of lead {story.lead_id}.")
    summary = leads.lead_summary(conn, story, current_app.config["BRIDGE_SETTINGS"].liondesk_contact_url)
    return render_template("lead.html", story=story, summary=summary, steps=leads.story_steps(story.history))


@bp.get("/leads/<lead_id>/entries/<index>")
def lead_entry(lead_id: str, index: str):
    """One entry of a lead's story, whole: the page a list links to when it shows the entry cut short."""
    story = leads.lead_story(redis_client(), lead_id)
    position = int(index) if index.isdigit() else -1  # not <int:>: every console URL asks for a login first
    if not 0 <= position < len(story.history):
        abort(404, f"Lead {story.lead_id} has no story entry {index}.")
    return render_template("entry.html", story=story, index=position, entry=story.history[position])


def redis_client() -> redis.Redis:
    """The app's Redis client."""
    return current_app.extensions["bridge.redis"]


def _filter_from(values) -> tuple[job_tools.JobFilter, dict[str, str]]:
    """Build a failed-jobs filter from query or form fields; an unreadable time is flashed and ignored."""
    raw = {name: (values.get(name) or "").strip() for name in FILTER_FIELDS}
    times = form_times(raw)
    job_filter = job_tools.JobFilter(action=raw["action"] or None, error_class=raw["error_class"] or None,
                                     since=times.get("since"), until=times.get("until"))
    return job_filter, raw


def form_times(raw: dict[str, str]) -> dict[str, float]:
    """Read a filter's `since` and `until` fields, in BRIDGE_TIMEZONE when they give no offset (as the page
    shows times); an unreadable one is flashed, blanked in `raw` and ignored."""
    times = {}
    for name in ("since", "until"):
        if raw.get(name):
            try:
                times[name] = present.parse_time(raw[name], zone())
            except ValueError:
                flash(f"Ignored {name}: {raw[name]!r} is not a date and time.", "error")
                raw[name] = ""
    return times


def safe_next(target: str | None) -> str | None:
    """Return a redirect target only when it stays inside the console (no open redirect)."""
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return None


from bridge.web import deliveries, retrying  # noqa: E402,F401  (their pages join this blueprint)
