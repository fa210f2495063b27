"""The console's page of jobs waiting for their next attempt, and running them now.

A job waits on the retry ladder (LionDesk answered 503, timed out...) or for an operator
(LionDesk needs re-authorisation). Running it now makes it due at once; RQ's scheduler in a
running worker starts it within a second or two, and the attempt counts against its budget.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from bridge import defaults
from bridge.exceptions import JobNotFound
from bridge.ops import jobs as job_tools
from bridge.web import auth
from bridge.web.console import bp, confirm_page, redis_client, safe_next


@bp.get("/retrying")
def retrying():
    """Every job waiting for its next attempt, soonest first: lead jobs, then poll and contact jobs."""
    conn, size = redis_client(), defaults.CONSOLE_PAGE_SIZE
    leads = job_tools.list_retrying(conn, job_tools.JobFilter(kinds=job_tools.LEAD_JOBS), limit=size)
    others = job_tools.list_retrying(conn, job_tools.JobFilter(kinds=job_tools.NON_LEAD_JOBS), limit=size)
    return render_template("retrying.html", jobs=leads, total=len(job_tools.waiting_ids(conn, job_tools.LEAD_JOBS)),
                           others=others)


@bp.post("/retrying/run")
def run_now():
    """Run one waiting job now; for the selected ones, or all of a group, first show what will run and ask."""
    conn = redis_client()
    back = safe_next(request.form.get("next")) or url_for(".retrying")
    confirmed = bool(request.form.get("confirm"))
    one = request.form.get("one")
    scope = request.form.get("scope")
    if one:
        selected = [one]
    elif scope in ("all", "others") and not confirmed:
        kinds = job_tools.LEAD_JOBS if scope == "all" else job_tools.NON_LEAD_JOBS
        return confirm_page("run now", job_tools.waiting_briefly(conn, kinds), url_for(".run_now"), back)
    else:
        selected = request.form.getlist("job_id")
    if not selected:
        flash("Select at least one job to run now.", "error")
        return redirect(back)
    try:
        if len(selected) > 1 and not confirmed:
            return confirm_page("run now", job_tools.summaries(conn, selected), url_for(".run_now"), back)
        results = job_tools.retry_now(conn, selected, by=auth.current_user(), via=job_tools.CONSOLE,
                                      missing_ok=confirmed)
    except JobNotFound as exc:
        flash(f"Nothing run: {exc}.", "error")
        return redirect(back)
    due = sum(result.due_now for result in results)
    skipped = len(results) - due
    flash(f"{due} job{'s' if due != 1 else ''} due now: a running worker starts "
          f"{'them' if due != 1 else 'it'} within seconds; each attempt counts against its retry budget"
          + (f". {skipped} skipped (no longer waiting)." if skipped else "."), "ok")
    return redirect(back)
