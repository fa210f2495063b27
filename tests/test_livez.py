"""GET /livez: 200 when the process and Redis answer, 503 otherwise; no auth, no LionDesk."""

import time

import pytest

from bridge.web import create_app


def test_livez_answers_ok_when_redis_answers(client):
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_livez_needs_no_login_even_with_the_console_on(make_settings, redis_conn):
    app = create_app(make_settings(admin_username="support", admin_password="a-long-password"))
    response = app.test_client().get("/livez")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_livez_answers_503_when_redis_is_down(make_settings):
    app = create_app(make_settings(redis_url="redis://127.0.0.1:1/0"))
    response = app.test_client().get("/livez")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable"}


def test_livez_never_calls_liondesk(sandbox, sandbox_settings, redis_conn):
    client = create_app(sandbox_settings).test_client()
    before = sandbox.last_seq()
    for _ in range(3):
        assert client.get("/livez").status_code == 200
    assert sandbox.last_seq() == before


# --- slow clients cannot stall the web (issue 14, item 6), with the real gunicorn ---------

def test_livez_answers_while_slow_clients_trickle_and_they_are_cut_off(tmp_path, redis_url, redis_conn):
    import socket
    import threading

    import requests

    from bridge import defaults
    from tests.support import Processes, start_web, wait_until

    processes = Processes(tmp_path)
    try:
        # One process of two threads: without a read limit, two trickling clients would do.
        base_url = start_web(processes, {"REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": "s",
                                         "GUNICORN_THREADS": "2"})
        host, port = base_url.removeprefix("http://").split(":")
        stop = threading.Event()
        answers: dict[int, bytes] = {}

        def trickle(number: int, opening: bytes, drip: bytes) -> None:
            """Send `opening`, then one byte of `drip` every 0.1 s until the server answers or closes."""
            with socket.create_connection((host, int(port)), timeout=60) as sock:
                sock.sendall(opening)
                sock.settimeout(0.1)
                received = b""
                for byte in drip:
                    if stop.is_set():
                        break
                    try:
                        sock.send(bytes([byte]))
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        received += chunk
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                answers[number] = received

        start = b"POST /webhooks/realgeeks HTTP/1.1\r\nHost: x\r\n"
        clients = [(start, b"X-Pad: " + b"a" * 10_000)] * 4  # headers, a byte at a time
        clients += [(start + b"Content-Length: 5000\r\n\r\n", b"{" * 5000)] * 4  # a body, a byte at a time
        idle = [socket.create_connection((host, int(port))) for _ in range(4)]  # connected, silent
        threads = [threading.Thread(target=trickle, args=(n, *client), daemon=True)
                   for n, client in enumerate(clients)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # every slow client has connected and started sending
        assert all(thread.is_alive() for thread in threads), answers

        for _ in range(5):
            response = requests.get(f"{base_url}/livez", timeout=5)
            assert response.status_code == 200 and response.json() == {"status": "ok"}

        # Past the read limit each slow client gets 408 and its connection is closed.
        wait_until(lambda: len(answers) == len(clients), timeout=defaults.WEB_REQUEST_READ_TIMEOUT_SECONDS + 30,
                   message="the server to cut the slow clients off")
        assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers.values()), answers
        assert requests.get(f"{base_url}/livez", timeout=5).status_code == 200
        for sock in idle:
            sock.close()
    finally:
        stop.set()
        processes.stop_all()


# --- what counts as a whole request (the pure check the worker uses) ----------------------

HEAD = b"POST /webhooks/realgeeks HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("data, complete, expects", [
    (b"", False, False),
    (HEAD, False, False),
    (b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n", True, False),
    (b"\r\n\r\nGET /livez HTTP/1.1\r\n\r\n", True, False),
    (HEAD + b"Content-Length: 4\r\n\r\n{}", False, False),
    (HEAD + b"Content-Length: 4\r\n\r\n{}{}", True, False),
    (HEAD + b"content-length: 4\r\n\r\n{}{}GET / HTTP/1.1\r\n", True, False),  # the next request may follow
    (HEAD + b"Content-Length: 999999999\r\n\r\n", True, False),  # over the limit: the app answers 413 unread
    (HEAD + b"Content-Length: nope\r\n\r\n", True, False),  # the parser refuses it
    (HEAD + b"Content-Length: 4\r\nExpect: 100-continue\r\n\r\n", False, True),
    (HEAD + b"Content-Length: 4\r\nExpect: 100-continue\r\n\r\n{}{}", True, False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", False, False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n", False, False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", True, False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2;ext=1\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n", True, False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", True, False),  # broken framing: the parser refuses it
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"10\r\n" + b"x" * 16 + b"\r\n" + b"1" * 10, False, False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"40\r\n" + b"x" * 64 + b"\r\n", True, False),  # past 50 bytes
    (HEAD + b"X-Pad: " + b"a" * 2000, True, False),  # headers past their limit: the parser refuses them
])
def test_request_complete(data, complete, expects):
    from bridge.web.server import request_complete

    assert request_complete(data, body_limit=50, header_limit=1000) == (complete, expects)


def test_a_client_expecting_100_continue_gets_it_and_is_served(tmp_path, redis_url, redis_conn):
    import json
    import socket

    from bridge.intake.signature import SIGNATURE_HEADER, sign
    from bridge.sandbox.sample import sample_lead
    from tests.support import Processes, start_web

    processes = Processes(tmp_path)
    try:
        base_url = start_web(processes, {"REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": "s"})
        host, port = base_url.removeprefix("http://").split(":")
        body = json.dumps(sample_lead()).encode()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(HEAD + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"
                                f"{SIGNATURE_HEADER}: {sign(body, 's')}\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(body)
            answer = b""
            while b'"status"' not in answer:
                piece = sock.recv(4096)
                assert piece, answer
                answer += piece
        final = answer[answer.index(b"HTTP/1.1 2"):]
        assert final.startswith(b"HTTP/1.1 200") and b'"status":"queued"' in final, answer
    finally:
        processes.stop_all()
