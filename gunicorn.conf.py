"""gunicorn settings for the web process (Procfile `web`). Every value says why."""

import multiprocessing
import os
import sys

# Heroku tells the dyno which port to listen on; 5000 for local runs.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# WEB_CONCURRENCY is set by Heroku per dyno size; locally, two processes per core.
# Without it, at most 4: in a container (Docker, Render, Fly) the CPU count is the host's,
# not the container's share, so 2 × cores could mean dozens of processes on a
# small-memory machine, each holding a copy of the app and its own Redis connections
# (hosted Redis plans cap connections). The work is waiting on Redis, which the threads
# below overlap; more processes would buy memory pressure, not throughput. Blank counts
# as unset (docker-compose passes unset variables through as blank).
MAX_DEFAULT_WORKERS = 4


def _cores() -> int:
    """CPUs this process may run on (a cpuset limits it); the machine's count otherwise."""
    try:
        return len(os.sched_getaffinity(0)) or multiprocessing.cpu_count()
    except (AttributeError, OSError):  # sched_getaffinity is Linux-only
        return multiprocessing.cpu_count()


workers = int(os.environ.get("WEB_CONCURRENCY", "").strip() or min(_cores() * 2, MAX_DEFAULT_WORKERS))

# The intake waits on Redis round trips, not the CPU: threads overlap that waiting,
# and gthread (unlike sync workers) keeps client connections alive between requests.
# The bridge's gthread reads each request into memory without blocking before a thread
# parses it, so clients trickling bytes cannot hold the threads (bridge/web/server.py).
worker_class = "bridge.web.server.BufferedThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))

# Heroku's router keeps idle connections open for 90 s; staying open longer means
# the router, not us, closes them, so it never sends a request down a dying socket.
keepalive = 95

# Heroku sends SIGTERM and kills the dyno 30 s later: finish in-flight requests in 25.
graceful_timeout = 25

# A request that takes longer than this is stuck (webhooks answer in milliseconds);
# recycle the worker rather than let it hold a slot forever.
timeout = 30

# Load the app once in the master: a configuration error stops the process before
# any worker starts, with one message, and workers share the loaded code.
preload_app = True

# The router terminates TLS and says so in X-Forwarded-Proto; trust it so that
# secure cookies and redirects use https.
forwarded_allow_ips = "*"

# The router already logs every request; the bridge writes one JSON line per webhook.
accesslog = None
errorlog = "-"

# gunicorn 25.1+ opens a control socket (for `gunicornc`) under $XDG_RUNTIME_DIR or
# $HOME/.gunicorn by default. Off: the platform, not a socket, sets the process count
# (WEB_CONCURRENCY, scaling); any process running as the same user could otherwise resize
# or stop the server through it; and the image's user has no home to put it in, which
# would log a warning at every start. (Older gunicorns ignore the unknown setting.)
control_socket_disable = True



def _stop_on_bad_configuration():
    """Validate the configuration before gunicorn loads the app; exit with one clear message.

    This runs when gunicorn reads this file, before the (preloaded) app is imported,
    so a wrong variable prints one line instead of a traceback.
    """
    from bridge.config import load_settings
    from bridge.exceptions import ConfigError

    try:
        load_settings()
    except ConfigError as exc:
        print(f"bridge: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


_stop_on_bad_configuration()


def post_worker_init(worker):
    """Start the alert evaluator in each web process as it starts, not only at its first request:
    with no worker running and no traffic, the web processes are the ones left to say so."""
    app = worker.wsgi  # the preloaded Flask app
    if hasattr(app, "extensions") and app.config["BRIDGE_SETTINGS"].alerts_enabled:
        from bridge.ops.alerts import ensure_alert_thread

        ensure_alert_thread(app.extensions["bridge.redis"], app.config["BRIDGE_SETTINGS"])
