"""GET /livez: 200 when the process and Redis answer, 503 otherwise; no auth, no LionDesk."""

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
