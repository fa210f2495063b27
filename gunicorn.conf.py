"""gunicorn settings for the web process (Procfile `web`). Every value says why."""

import multiprocessing
import os
import sys

# Heroku tells the dyno which port to listen on; 5000 for local runs.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# WEB_CONCURRENCY is set by Heroku per dyno size; locally, two processes per core.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))

# The intake waits on Redis round trips, not the CPU: threads overlap that waiting,
# and gthread (unlike sync workers) keeps client connections alive between requests.
worker_class = "gthread"
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
