"""The web process's gunicorn worker: gthread, except that a slow client cannot hold a thread.

gunicorn's gthread worker gives a connection to one of its threads as soon as the first
bytes arrive, and the thread then blocks reading the rest of the request. A handful of
clients sending a byte a second hold every thread, and /livez and the webhook wait behind
them (issue 14: eight such connections stalled the whole process).

This worker reads each request without blocking first: whatever has arrived is taken into
the parser's buffer, and while the request is incomplete the thread goes back to the pool
and the connection to gunicorn's poller (the path gunicorn itself uses for connections that
have sent nothing yet). Only a request complete in memory reaches gunicorn's parser and the
app, so no thread ever waits on a client's bytes. A request not complete within
WEB_REQUEST_READ_TIMEOUT_SECONDS of its first byte is answered 408 and closed.

Plain HTTP/1.1 only, which is what the platform router speaks to the dyno; TLS and HTTP/2
connections (not configured here) keep gunicorn's own handling.
"""

from __future__ import annotations

import socket
import time

from gunicorn.workers import gthread

from bridge import defaults

READ_SIZE = 64 * 1024
"""Bytes asked of the socket per non-blocking read."""

CHUNK_LINE_LIMIT = 1024
"""Longest chunk-size line (with extensions) waited for; a longer one is broken framing for the parser to refuse."""

CHUNKED_BUFFER_FACTOR = 6
"""A chunked body is buffered up to this many times the body limit (1-byte chunks cost 6 bytes each):
past it the app holds more than it reads and answers 413."""

_TIMEOUT_BODY = b'{"status":"error","error":"the request did not arrive in time"}'
_TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
                   b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY)

_DEFER = getattr(gthread, "_DEFER", None)
"""gthread's "park this connection on the poller" answer (gunicorn 23+); without it, gthread's own handling."""


def request_complete(data: bytes, *, body_limit: int, header_limit: int) -> tuple[bool, bool]:
    """Whether `data` holds one whole HTTP/1.x request (or enough for the parser or app to refuse it),
    and whether its client waits for "100 Continue" before sending the body (pure).

    Complete means: the header block ended, and then the body its framing announces
    (Content-Length, or chunked up to the last chunk and trailers). A header block past
    `header_limit`, a Content-Length over `body_limit` (the app answers 413 without reading),
    framing that does not parse or a chunked body past what the app reads also count as
    complete: they go to the parser and the app, which refuse them from what is in memory.
    """
    start = len(data) - len(data.lstrip(b"\r\n"))  # empty lines before a request are allowed
    head_end = data.find(b"\r\n\r\n", start)
    if head_end == -1:
        return len(data) - start > header_limit, False
    fields = {}
    for line in data[start:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    body = memoryview(data)[head_end + 4:]
    if b"chunked" in fields.get(b"transfer-encoding", b""):
        complete = _chunked_complete(bytes(body), body_limit)
    elif b"content-length" in fields:
        try:
            length = int(fields[b"content-length"])
        except ValueError:
            return True, False
        complete = length > body_limit or len(body) >= length
    else:
        complete = True
    return complete, not complete and fields.get(b"expect") == b"100-continue"


def _chunked_complete(body: bytes, body_limit: int) -> bool:
    """Whether a chunked body is all here (last chunk and trailers), or is past what the app will read."""
    if len(body) > CHUNKED_BUFFER_FACTOR * body_limit:
        return True
    position, total = 0, 0
    while True:
        line_end = body.find(b"\r\n", position)
        if line_end == -1:
            return len(body) - position > CHUNK_LINE_LIMIT
        try:
            size = int(body[position:line_end].split(b";", 1)[0].strip(), 16)
        except ValueError:
            return True
        if size == 0:  # the last chunk: then trailers, if any, and an empty line
            return body.startswith(b"\r\n", line_end + 2) or body.find(b"\r\n\r\n", line_end) != -1
        total += size
        position = line_end + 2 + size + 2
        if position > len(body):
            return False
        if total > body_limit:
            return True


class BufferedThreadWorker(gthread.ThreadWorker):
    """gunicorn's gthread worker, reading each request into memory without blocking before parsing it."""

    read_timeout = defaults.WEB_REQUEST_READ_TIMEOUT_SECONDS
    body_limit = defaults.WEBHOOK_MAX_BODY_BYTES

    def handle(self, conn):
        """Serve the connection's next request once it is all here; until then give the thread back."""
        if self.cfg.is_ssl or _DEFER is None:
            return super().handle(conn)
        try:
            conn.init()
        except Exception:  # what gunicorn's own handle does with a connection it cannot set up
            return super().handle(conn)
        if conn.is_http2:
            return super().handle(conn)
        outcome = self._take_what_arrived(conn)
        if outcome is None:
            return super().handle(conn)
        return outcome

    def _take_what_arrived(self, conn):
        """Move the bytes that arrived into the parser's buffer; None when the request is complete,
        gthread's "wait on the poller" marker while it is not, False to close the connection."""
        buffer = conn.parser.unreader.buf
        buffer.seek(0, 2)
        closed = False
        while True:
            try:
                piece = conn.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                return False
            if not piece:
                closed = True
                break
            buffer.write(piece)
            if len(piece) < READ_SIZE:
                # Less than asked: the socket held no more just now. Not asking again spares the
                # request a system call (and a GIL hand-over); whatever comes later makes the
                # socket readable again.
                break
        data = buffer.getvalue()
        if not data:
            # Nothing yet (a new or kept-alive connection): wait on the poller, or close if the client did.
            conn.read_started = None
            return False if closed or not self.alive else _DEFER
        complete, expects_continue = request_complete(data, body_limit=self.body_limit,
                                                      header_limit=self._header_limit())
        if complete:
            conn.read_started = conn.continued = None
            conn.data_ready = True
            return None
        now = time.monotonic()
        started = getattr(conn, "read_started", None) or now
        conn.read_started = started
        if closed or not self.alive:
            return False
        if now - started > self.read_timeout:
            self.log.info("closed a connection from %s: its request took over %s s to arrive",
                          conn.client, self.read_timeout)
            _send_quietly(conn.sock, _TIMEOUT_ANSWER)
            return False
        if expects_continue and not getattr(conn, "continued", None):
            # The client waits for this before sending the body; gunicorn would send it only
            # once the parser runs, which here is after the body arrived.
            _send_quietly(conn.sock, b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.continued = True
        return _DEFER

    def _header_limit(self) -> int:
        """The most header bytes gunicorn's parser accepts (request line and every field)."""
        cfg = self.cfg
        return cfg.limit_request_line + cfg.limit_request_fields * (cfg.limit_request_field_size + 2) + 4

    def finish_request(self, conn, fs):
        """As gthread, and a connection waiting for the rest of its request is closed at its read deadline."""
        super().finish_request(conn, fs)
        started = getattr(conn, "read_started", None)
        if started is not None and conn in self.pending_conns:
            conn.timeout = min(conn.timeout, started + self.read_timeout)


def _send_quietly(sock, data: bytes) -> None:
    """Send a short answer if the socket takes it now; a client that does not read it is not waited for."""
    try:
        sock.send(data, socket.MSG_DONTWAIT)
    except OSError:
        pass
