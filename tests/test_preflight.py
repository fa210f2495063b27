"""`bridge check-config`: refuses (exit 2) what would lose leads, warns (exit 0) about what is switched off."""

import subprocess
import sys

import pytest

from bridge import defaults
from bridge.cli import preflight
from tests.support import ROOT

DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def complete(redis_url):
    """An environment that passes without a warning: reachable Redis, every credential set."""
    return {"REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": "whsec", "LIONDESK_CLIENT_ID": "id",
            "LIONDESK_CLIENT_SECRET": "secret", "ADMIN_USERNAME": "support", "ADMIN_PASSWORD": "a-long-password"}


def check_config(env):
    """Run `bridge check-config` as the release phase does, with exactly `env`."""
    return subprocess.run([sys.executable, "-m", "bridge.cli", "check-config"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **env})


def errors(stderr):
    prefix = "bridge: configuration error: "
    return [line[len(prefix):] for line in stderr.splitlines() if line.startswith(prefix)]


def warnings(stderr):
    prefix = "bridge: warning: "
    return [line[len(prefix):] for line in stderr.splitlines() if line.startswith(prefix)]


def test_a_complete_configuration_passes_quietly(complete):
    result = check_config(complete)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == ("configuration ok: redis=REDIS_URL, liondesk=configured, "
                                     "reverse sync=off, console=on")


@pytest.mark.parametrize("marker", sorted(defaults.PLATFORM_ENVIRONMENT_MARKERS))
def test_no_redis_url_on_a_platform_is_refused(complete, marker):
    env = {**complete, marker: "x"}
    del env["REDIS_URL"]
    report = preflight.check(env)
    [problem] = report.problems
    platform = defaults.PLATFORM_ENVIRONMENT_MARKERS[marker]
    assert problem.startswith(f"REDIS_URL: not set, on {platform}.") and "embedded Redis" in problem


def test_no_redis_url_on_heroku_stops_the_release(complete):
    env = {**complete, "DYNO": "release.1234"}
    del env["REDIS_URL"]
    result = check_config(env)
    assert result.returncode == 2
    assert [e.split(".")[0] for e in errors(result.stderr)] == ["REDIS_URL: not set, on Heroku"]
    assert result.stdout == ""


def test_no_redis_url_locally_is_a_warning_and_starts_nothing(complete, tmp_path):
    env = {**complete, "BRIDGE_STATE_DIR": str(tmp_path / "state")}
    del env["REDIS_URL"]
    result = check_config(env)
    assert result.returncode == 0, result.stderr
    assert warnings(result.stderr) == ["REDIS_URL is not set: the processes will start an embedded Redis "
                                       "(for local use only; not checked here)."]
    assert "redis=embedded (local only)" in result.stdout
    assert not (tmp_path / "state").exists()  # check-config did not start the embedded Redis


def test_unreachable_redis_is_refused(complete):
    result = check_config({**complete, "REDIS_URL": "redis://:hunter2-pass@127.0.0.1:1/0"})
    assert result.returncode == 2
    [problem] = errors(result.stderr)
    assert problem.startswith("REDIS_URL: Redis did not answer a PING (waited up to 5 seconds): ConnectionError:")
    assert "127.0.0.1:1" in problem and "hunter2" not in result.stderr


@pytest.mark.parametrize("variable, value, message", [
    ("PORT", "nan", "PORT: must be a whole number, got 'nan'"),
    ("PORT", "abc", "PORT: must be a whole number, got 'abc'"),
    ("LIONDESK_POLL_SECONDS", "inf", "LIONDESK_POLL_SECONDS: must be a whole number, got 'inf'"),
    ("LIONDESK_MAX_REQUESTS_PER_SECOND", "nan", "LIONDESK_MAX_REQUESTS_PER_SECOND: must be a number, got 'nan'"),
    ("LIONDESK_MAX_REQUESTS_PER_SECOND", "inf", "LIONDESK_MAX_REQUESTS_PER_SECOND: must be a number, got 'inf'"),
    ("LIONDESK_MAX_REQUESTS_PER_SECOND", "-inf", "LIONDESK_MAX_REQUESTS_PER_SECOND: must be a number, got '-inf'"),
    ("REDIS_TLS_INSECURE", "maybe", "REDIS_TLS_INSECURE: must be 1 or 0 (or true/false), got 'maybe'"),
])
def test_invalid_values_are_refused_in_plain_words(complete, variable, value, message):
    assert preflight.check({**complete, variable: value}).problems == [message]


def test_every_problem_is_listed_at_once(complete):
    env = {**complete, "PORT": "nan", "LIONDESK_POLL_SECONDS": "abc", "LIONDESK_MAX_REQUESTS_PER_SECOND": "-inf",
           "ADMIN_PASSWORD": "", "REDIS_URL": DEAD_REDIS}
    result = check_config(env)
    assert result.returncode == 2
    found = errors(result.stderr)
    assert sorted(problem.split(":")[0] for problem in found) == [
        "ADMIN_PASSWORD", "LIONDESK_MAX_REQUESTS_PER_SECOND", "LIONDESK_POLL_SECONDS", "PORT", "REDIS_URL"]
    assert "PORT: must be a whole number, got 'nan'" in found
    assert not any(" a int" in line or " a float" in line for line in result.stderr.splitlines())


def test_a_lone_half_of_a_pair_does_not_hide_the_rest(complete):
    env = {**complete, "LIONDESK_CLIENT_SECRET": "", "PORT": "http"}
    assert preflight.check(env).problems == ["LIONDESK_CLIENT_SECRET: must be set together with LIONDESK_CLIENT_ID",
                                             "PORT: must be a whole number, got 'http'"]


@pytest.mark.parametrize("unset, warning", [
    (("REALGEEKS_WEBHOOK_SECRET",),
     "REALGEEKS_WEBHOOK_SECRET is not set: the webhook will answer 503 to every delivery"),
    (("LIONDESK_CLIENT_ID", "LIONDESK_CLIENT_SECRET"),
     "LIONDESK_CLIENT_ID and LIONDESK_CLIENT_SECRET are not set: leads are accepted and stored, "
     "but their jobs wait and nothing reaches LionDesk"),
    (("ADMIN_USERNAME", "ADMIN_PASSWORD"),
     "ADMIN_USERNAME and ADMIN_PASSWORD are not set: the support console is off (/admin answers 404)."),
])
def test_missing_credentials_are_warnings_not_refusals(complete, unset, warning):
    env = {name: value for name, value in complete.items() if name not in unset}
    result = check_config(env)
    assert result.returncode == 0, result.stderr
    [said] = warnings(result.stderr)
    assert said.startswith(warning)
    assert result.stdout.startswith("configuration ok: ")


def test_a_warning_and_a_refusal_are_both_said(complete):
    env = {**complete, "REDIS_URL": DEAD_REDIS}
    del env["REALGEEKS_WEBHOOK_SECRET"]
    result = check_config(env)
    assert result.returncode == 2
    assert [e.split(":")[0] for e in errors(result.stderr)] == ["REDIS_URL"]
    assert [w.split(" ")[0] for w in warnings(result.stderr)] == ["REALGEEKS_WEBHOOK_SECRET"]


def test_platform_detection_reads_the_one_list():
    assert preflight.platform({}) is None
    assert preflight.platform({"DYNO": "  "}) is None
    assert preflight.platform({"DYNO": "web.1"}) == "Heroku"
    assert preflight.platform({"K_SERVICE": "bridge"}) == "Cloud Run"


def test_the_v1_channel_is_checked_with_echo(complete, sandbox):
    v1 = {"LIONDESK_V1_URL": f"{sandbox.url}/liondesk-v1", "LIONDESK_V1_API_KEY": "sandbox-v1-key",
          "LIONDESK_V1_USER_KEY": "sandbox-v1-user"}
    answering = check_config({**complete, **v1})
    assert answering.returncode == 0 and warnings(answering.stderr) == [], answering.stderr
    assert any(c["path"] == "/liondesk-v1" for c in sandbox.calls(service="liondesk_v1"))
    sandbox.control("POST", "settings", v1_service="gone")
    gone = check_config({**complete, **v1})
    assert gone.returncode == 0  # a warning: activities still reach LionDesk as tasks
    (warning,) = warnings(gone.stderr)
    assert "did not answer Echo" in warning and "tasks" in warning
