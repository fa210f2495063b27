"""The sandbox as one Flask app on one port, and `serve()` to run it on a threaded server.

    /liondesk/...           LionDesk v2 (token endpoint: /liondesk/oauth2/token)
    /liondesk-v1            LionDesk v1 partner endpoint
    /realgeeks/rest/...     Real Geeks Incoming API
    /_sandbox/...           control API (never logged as calls, never faulted)
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import signal
import socket
import threading
import time
import traceback
from pathlib import Path

from flask import Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from bridge.sandbox import control, liondesk, liondesk_v1, oauth, realgeeks
from bridge.sandbox.errors import ApiError, error_response, json_body
from bridge.sandbox.faults import SERVICES, Fault
from bridge.sandbox.query import QueryError
from bridge.sandbox.seeds import DEFAULT_SITE_UUID
from bridge.sandbox.state import V1_API_KEY, V1_USER_KEY, SandboxState
from bridge.sandbox.tokens import CLIENT_ID, CLIENT_SECRET, DEFAULT_CODE, INITIAL_REFRESH_TOKEN

log = logging.getLogger(__name__)

_REPEATED_SLASHES = re.compile(r"/{2,}")
_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


class CollapseSlashes:
    """WSGI middleware: LionDesk's docs print every URL with `//`, and both forms work
    there, so repeated slashes collapse before routing (no redirect)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        environ["PATH_INFO"] = _REPEATED_SLASHES.sub("/", environ.get("PATH_INFO", ""))
        return self.app(environ, start_response)


def service_of(path: str) -> str:
    """Which simulated service a path belongs to: liondesk | liondesk_v1 | realgeeks | control."""
    first = path.lstrip("/").split("/", 1)[0]
    return {"liondesk": "liondesk", "liondesk-communications": "liondesk", "liondesk-v1": "liondesk_v1",
            "realgeeks": "realgeeks"}.get(first, "control")


def path_template(rule) -> str:
    """The matched route as a template (/liondesk/contacts/{contact_id}), or the raw path if none matched."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule.rule) if rule is not None else request.path


class StateFile:
    """The sandbox's records and tokens kept in a file, so a restarted sandbox is the same LionDesk.

    `bridge dev` keeps it beside the embedded Redis: the bridge's Redis holds the
    rotated LionDesk refresh token and the LionDesk ids of every lead, so the sandbox
    must come back knowing them. Written after every request that may change state,
    before the answer leaves (a token the bridge received is always on disk), via a
    temporary file and a rename (a crash leaves the previous whole file). The file is
    a pickle this process wrote itself, mode 0600 in the user's own state folder.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self, state: SandboxState) -> bool:
        """Restore `state` from the file; False (state untouched) when there is none."""
        try:
            data = pickle.loads(self.path.read_bytes())
        except FileNotFoundError:
            return False
        state.restore(data)
        return True

    def save(self, state: SandboxState) -> None:
        """Write `state`'s snapshot to the file, replacing it whole."""
        data = pickle.dumps(state.snapshot(), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
            os.replace(temporary, self.path)


def create_sandbox_app(state: SandboxState | None = None, latency_ms: float = 0.0,
                       state_file: StateFile | None = None) -> Flask:
    """Build the sandbox app over `state` (a fresh one by default), adding `latency_ms` to every API answer.

    With `state_file`, the state is loaded from it (when it exists) and saved to it
    after every request that is not a read.
    """
    app = Flask(__name__)
    app.json.sort_keys = False
    app.url_map.strict_slashes = False
    state = state or SandboxState()
    state.latency_ms = latency_ms
    app.extensions["sandbox"] = state
    app.wsgi_app = CollapseSlashes(app.wsgi_app)
    for blueprint in (oauth.bp, liondesk.bp, liondesk.communications_bp, liondesk_v1.bp, realgeeks.bp, control.bp):
        app.register_blueprint(blueprint)
    app.add_url_rule("/", "index", index)
    app.before_request(delay_and_inject_faults)
    app.after_request(log_call)
    app.after_request(lose_answer)  # after_request runs in reverse order: this one first, then the log
    if state_file is not None:
        state_file.load(state)
        app.extensions["sandbox_state_file"] = state_file
        app.after_request(save_state)
    app.register_error_handler(ApiError, lambda exc: answer_error(exc.status, exc.message, exc.errors, exc.headers))
    app.register_error_handler(QueryError, lambda exc: answer_error(400, str(exc)))
    app.register_error_handler(HTTPException, on_http_exception)
    app.register_error_handler(Exception, on_unexpected)
    return app


def answer_error(status: int, message: str, errors: dict | None = None, headers: dict | None = None):
    """An error in the shape of the service the request was for."""
    return error_response(service_of(request.path), status, message, errors, headers)


def on_http_exception(exc: HTTPException):
    """Unknown routes and methods, answered in the service's shape (Feathers NotFound for LionDesk)."""
    if exc.code == 404:
        message = f"Page not found: {request.path}"
    elif exc.code == 405:
        message = f"Method {request.method} is not allowed on {request.path}"
    else:
        message = exc.description or exc.name
    return answer_error(exc.code or 500, message)


def on_unexpected(exc: Exception):
    """A bug in the sandbox: log it and answer 500 in the service's shape."""
    log.error("sandbox error on %s %s\n%s", request.method, request.path, traceback.format_exc())
    return answer_error(500, f"Sandbox error: {type(exc).__name__}: {exc}")


def delay_and_inject_faults():
    """Before an API request: wait the configured latency, then maybe answer a fault instead."""
    g.started = time.perf_counter()
    service = service_of(request.path)
    if service not in SERVICES:
        return None
    state: SandboxState = current_app.extensions["sandbox"]
    latency_ms, fault = state.faults.draw(service)
    if state.latency_ms + latency_ms:
        time.sleep((state.latency_ms + latency_ms) / 1000)
    if fault is None:
        return None
    g.fault = fault
    if fault.kind == "drop":
        drop_connection()
    if fault.status == 429:
        return answer_error(429, "Too many requests", headers={"Retry-After": str(state.faults.retry_after(service))})
    return answer_error(fault.status, "Injected fault" if fault.kind == "error" else "Service unavailable")


def drop_connection() -> None:
    """Close the client's connection without an answer (werkzeug's server only; the test client gets the 503)."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def logged_body():
    """The request body for the call log: JSON, form fields, or text."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    if request.mimetype == "application/x-www-form-urlencoded":
        return request.form.to_dict()
    try:
        return json_body()
    except ApiError:
        return request.get_data(cache=True, as_text=True)[:2000]


def lose_answer(response):
    """After an API request that did its work: answer 502 instead when the `lose_next_answer` knob names it."""
    service = service_of(request.path)
    if service in SERVICES and response.status_code < 400:
        state: SandboxState = current_app.extensions["sandbox"]
        if state.faults.take_lost_answer(service, path_template(request.url_rule)):
            g.fault = Fault("lost_answer", 502)
            return answer_error(502, "Bad gateway")
    return response


def log_call(response):
    """After an API request: append it to the call log."""
    service = service_of(request.path)
    if service in SERVICES:
        state: SandboxState = current_app.extensions["sandbox"]
        fault = g.get("fault")
        state.calls.record(service=service, method=request.method, path=request.path,
                           template=path_template(request.url_rule), query=request.query_string.decode("latin-1"),
                           status=response.status_code, duration_ms=(time.perf_counter() - g.started) * 1000,
                           body=logged_body(), fault=fault.kind if fault else None)
    return response


def save_state(response):
    """After a request that may have changed the world: write it to the state file."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        current_app.extensions["sandbox_state_file"].save(current_app.extensions["sandbox"])
    return response


def index():
    """What this sandbox serves and the credentials it accepts."""
    base = request.host_url.rstrip("/")
    return jsonify({
        "sandbox": "LionDesk v2 / LionDesk v1 / Real Geeks Incoming simulator",
        "liondesk": {"url": f"{base}/liondesk", "token_url": f"{base}/liondesk/oauth2/token",
                     "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                     "refresh_token": INITIAL_REFRESH_TOKEN, "authorization_code": DEFAULT_CODE},
        "liondesk_v1": {"url": f"{base}/liondesk-v1", "api_key": V1_API_KEY, "user_key": V1_USER_KEY},
        "realgeeks": {"url": f"{base}/realgeeks/rest", "username": "sandbox", "password": "sandbox",
                      "site_uuid": DEFAULT_SITE_UUID},
        "control": f"{base}/_sandbox/state",
    })


def make_sandbox_server(host: str, port: int, latency_ms: float = 0.0,
                        state: SandboxState | None = None, state_file: StateFile | None = None) -> BaseWSGIServer:
    """A threaded werkzeug server (one thread per connection) for the sandbox app, not yet serving."""
    return make_server(host, port, create_sandbox_app(state, latency_ms, state_file), threaded=True)


def _interrupt(signum, frame):
    """SIGTERM stops the sandbox the way Ctrl-C does: quietly."""
    raise KeyboardInterrupt


def serve(host: str, port: int, latency_ms: float = 0.0, state_file: Path | str | None = None) -> None:
    """Run the sandbox on host:port until interrupted (Ctrl-C or SIGTERM).

    State lives in this process's memory, and also in `state_file` when one is given
    (loaded at start, saved after every change and at exit).
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the call log replaces per-request lines
    signal.signal(signal.SIGTERM, _interrupt)
    store = StateFile(state_file) if state_file else None
    server = make_sandbox_server(host, port, latency_ms, state_file=store)
    restored = " (state restored from its file)" if store and store.path.exists() else ""
    print(f"sandbox: LionDesk v2, v1 and Real Geeks on http://{host}:{port} (control: /_sandbox/state)"
          f"{restored}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if store is not None:
            store.save(server.app.extensions["sandbox"])
