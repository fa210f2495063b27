"""Configuration: validated once, one clear message naming the variable; Redis connections."""

import subprocess
import sys

import pytest

from bridge.config import load_settings
from bridge.exceptions import ConfigError
from bridge.storage.redis import connect
from tests.support import ROOT


def test_empty_environment_gives_documented_defaults():
    settings = load_settings({})
    assert settings.redis_url is None
    assert settings.liondesk_api_url == "https://api-v2.liondesk.com"
    assert settings.liondesk_v1_url == "https://api.liondesk.com"
    assert settings.realgeeks_api_url == "https://receivers.leadrouter.realgeeks.com/rest"
    assert settings.liondesk_poll_seconds == 60
    assert settings.port == 5000
    assert not settings.liondesk_configured and not settings.admin_enabled
    assert not settings.reverse_sync_enabled and not settings.liondesk_v1_enabled
    assert settings.rules["contact"]["source_name"] == "Real Geeks"


@pytest.mark.parametrize("env, variable", [
    ({"PORT": "http"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"LIONDESK_POLL_SECONDS": "0"}, "LIONDESK_POLL_SECONDS"),
    ({"LIONDESK_POLL_SECONDS": "1.5"}, "LIONDESK_POLL_SECONDS"),
    ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
    ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
    ({"LIONDESK_API_URL": "api-v2.liondesk.com"}, "LIONDESK_API_URL"),
    ({"REALGEEKS_API_URL": "ftp://x"}, "REALGEEKS_API_URL"),
    ({"LIONDESK_CLIENT_ID": "id"}, "LIONDESK_CLIENT_SECRET"),
    ({"LIONDESK_CLIENT_SECRET": "s"}, "LIONDESK_CLIENT_ID"),
    ({"LIONDESK_REFRESH_TOKEN": "r"}, "LIONDESK_REFRESH_TOKEN"),
    ({"LIONDESK_V1_API_KEY": "k"}, "LIONDESK_V1_USER_KEY"),
    ({"REALGEEKS_API_PASSWORD": "p"}, "REALGEEKS_API_USERNAME"),
    ({"ADMIN_USERNAME": "support"}, "ADMIN_PASSWORD"),
    ({"BRIDGE_CONFIG": "/nonexistent/rules.toml"}, "BRIDGE_CONFIG"),
    ({"BRIDGE_RETRY_INTERVALS": "30,soon"}, "BRIDGE_RETRY_INTERVALS"),
    ({"BRIDGE_RETRY_INTERVALS": "0"}, "BRIDGE_RETRY_INTERVALS"),
    ({"LIONDESK_MAX_REQUESTS_PER_SECOND": "0"}, "LIONDESK_MAX_REQUESTS_PER_SECOND"),
    ({"REDIS_TLS_INSECURE": "yes"}, "REDIS_TLS_INSECURE"),
    ({"REDIS_TLS_INSECURE": "2"}, "REDIS_TLS_INSECURE"),
    ({"BRIDGE_TIMEZONE": "Mars/Olympus"}, "BRIDGE_TIMEZONE"),
    ({"BRIDGE_TIMEZONE": "../../etc/passwd"}, "BRIDGE_TIMEZONE"),
    ({"LIONDESK_CONTACT_URL": "https://crm.example/contacts/"}, "LIONDESK_CONTACT_URL"),
    ({"LIONDESK_CONTACT_URL": "crm.example/{contact_id}"}, "LIONDESK_CONTACT_URL"),
])
def test_invalid_or_contradictory_values_name_the_variable(env, variable):
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")


@pytest.mark.parametrize("variable, kind", [
    ("PORT", "a whole number"), ("LIONDESK_POLL_SECONDS", "a whole number"),
    ("LIONDESK_MAX_REQUESTS_PER_SECOND", "a number"),
])
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_non_finite_numbers_are_refused_in_words(variable, kind, value):
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    assert str(caught.value) == f"{variable}: must be {kind}, got {value!r}"


def test_number_messages_say_whole_number_or_number():
    with pytest.raises(ConfigError, match=r"^LIONDESK_POLL_SECONDS: must be a whole number, got 'abc'$"):
        load_settings({"LIONDESK_POLL_SECONDS": "abc"})
    with pytest.raises(ConfigError, match=r"^LIONDESK_MAX_REQUESTS_PER_SECOND: must be a number, got 'fast'$"):
        load_settings({"LIONDESK_MAX_REQUESTS_PER_SECOND": "fast"})
    assert load_settings({"LIONDESK_MAX_REQUESTS_PER_SECOND": "2.5"}).liondesk_max_requests_per_second == 2.5


HEROKU_REDIS = "rediss://:pw@ec2-3-222-1-2.compute-1.amazonaws.com:11290"


@pytest.mark.parametrize("env, verify", [
    ({}, True),                                                         # embedded Redis: no TLS at all
    ({"REDIS_URL": "redis://localhost:6379"}, True),
    ({"REDIS_URL": "rediss://redis.example.com:6380"}, True),           # TLS: verified by default
    ({"REDIS_URL": "rediss://redis.example.com:6380", "DYNO": "web.1"}, True),  # on Heroku, not Heroku Redis
    ({"REDIS_URL": HEROKU_REDIS}, True),                                # Heroku Redis's host, but not on a dyno
    ({"REDIS_URL": HEROKU_REDIS, "DYNO": "web.1"}, False),              # Heroku Redis detected
    ({"REDIS_URL": "rediss://:pw@ec2-54-1-2-3.eu-west-1.compute.amazonaws.com:6379", "DYNO": "release.1"}, False),
    ({"REDIS_URL": "rediss://x.abc123.cache.amazonaws.com:6379", "DYNO": "web.1"}, True),  # ElastiCache
    ({"REDIS_URL": "rediss://10.1.2.3:6379", "HEROKU_REDIS_MAROON_URL": "rediss://10.1.2.3:6379",
      "DYNO": "worker.2"}, False),                                      # the add-on's attachment variable
    ({"REDIS_URL": "rediss://10.1.2.3:6379", "HEROKU_REDIS_MAROON_URL": "rediss://10.9.9.9:6379",
      "DYNO": "worker.2"}, True),
    ({"REDIS_URL": HEROKU_REDIS, "DYNO": "web.1", "REDIS_TLS_INSECURE": "0"}, True),  # an explicit 0 wins
    ({"REDIS_URL": "rediss://redis.example.com:6380", "REDIS_TLS_INSECURE": "1"}, False),
    ({"REDIS_URL": "rediss://redis.example.com:6380", "REDIS_TLS_INSECURE": "TRUE"}, False),
    ({"REDIS_URL": "rediss://redis.example.com:6380", "REDIS_TLS_INSECURE": "false"}, True),
])
def test_redis_tls_verification_rule(env, verify):
    settings = load_settings(env)
    assert settings.redis_tls_verify is verify
    assert (settings.redis_tls_skip_reason is None) is verify


def test_blank_values_count_as_unset():
    assert load_settings({"ADMIN_USERNAME": "  ", "ADMIN_PASSWORD": ""}).admin_enabled is False


def test_bridge_config_merges_over_shipped_rules(tmp_path):
    override = tmp_path / "rules.toml"
    override.write_text('[contact]\nsource_name = "RG Website"\n')
    rules = load_settings({"BRIDGE_CONFIG": str(override)}).rules
    assert rules["contact"]["source_name"] == "RG Website"
    assert rules["contact"]["phone_region"] == "US"  # untouched defaults survive the merge


def test_malformed_bridge_config_is_reported(tmp_path):
    broken = tmp_path / "rules.toml"
    broken.write_text("[contact\n")
    with pytest.raises(ConfigError, match="BRIDGE_CONFIG: .* is not valid TOML"):
        load_settings({"BRIDGE_CONFIG": str(broken)})


def test_settings_repr_hides_secrets():
    settings = load_settings({"REALGEEKS_WEBHOOK_SECRET": "s3cr3t-value", "ADMIN_USERNAME": "a",
                              "ADMIN_PASSWORD": "hunter2-password"})
    assert "s3cr3t" not in repr(settings) and "hunter2" not in repr(settings)


@pytest.mark.parametrize("command", [["check-config"], ["worker", "--burst"]])
def test_processes_stop_at_start_with_one_message(command):
    result = subprocess.run([sys.executable, "-m", "bridge.cli", *command], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PORT": "eighty"})
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "bridge: configuration error: PORT: must be a whole number, got 'eighty'"


def test_gunicorn_stops_at_start_with_one_message():
    from tests.support import procfile_command

    argv = procfile_command("web")
    argv[0] = str(ROOT / ".venv" / "bin" / argv[0]) if (ROOT / ".venv" / "bin" / argv[0]).exists() else argv[0]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{sys.prefix}/bin:/usr/bin:/bin", "ADMIN_USERNAME": "only-one"})
    assert result.returncode != 0
    assert "bridge: configuration error: ADMIN_PASSWORD: must be set together with ADMIN_USERNAME" in result.stderr


def test_embedded_redis_is_shared_between_processes(tmp_path, monkeypatch):
    from bridge.storage.embedded import ensure_embedded_redis, stop_embedded_redis

    monkeypatch.setenv("BRIDGE_STATE_DIR", str(tmp_path / "state"))
    first = ensure_embedded_redis()
    try:
        marker = "embedded-sharing-check"
        connect(first).set(marker, "1")
        code = ("from bridge.storage.embedded import ensure_embedded_redis; "
                "from bridge.storage.redis import connect; "
                f"print(connect(ensure_embedded_redis()).get({marker!r}).decode())")
        other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                               timeout=60, env={"BRIDGE_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"})
        assert other.stdout.strip() == "1", other.stderr
    finally:
        assert stop_embedded_redis(tmp_path / "state")


def test_embedded_redis_warns_that_it_is_for_local_use(tmp_path, monkeypatch, caplog):
    from bridge.storage.embedded import ensure_embedded_redis, stop_embedded_redis

    monkeypatch.setenv("BRIDGE_STATE_DIR", str(tmp_path / "state"))
    ensure_embedded_redis()
    try:
        assert "local use only" in caplog.text and "REDIS_URL" in caplog.text
    finally:
        stop_embedded_redis(tmp_path / "state")
