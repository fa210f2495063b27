"""`bridge dev`, the README's first command: everything local, one command, nothing installed."""

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from bridge.cli.dev import port_free
from tests.support import ROOT, free_port, wait_until


def free_port_pair() -> int:
    """A port P on 127.0.0.1 such that P and P + 1 are both free right now."""
    for _ in range(100):
        port = free_port()
        if port_free(port + 1):
            return port
    raise AssertionError("found no two consecutive free ports on 127.0.0.1")


@pytest.mark.e2e
def test_bridge_dev_runs_the_whole_bridge_with_embedded_redis_and_sandbox(tmp_path):
    port = free_port_pair()  # the sandbox takes PORT + 1
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "BRIDGE_STATE_DIR": str(tmp_path / "state"),
           "HOME": str(tmp_path)}
    log = open(tmp_path / "dev.log", "wb")
    dev = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "bridge"), "dev", "--port", str(port)],
                           cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    output = lambda: (tmp_path / "dev.log").read_text(errors="replace")  # noqa: E731
    try:
        wait_until(lambda: "The bridge is running." in output() or dev.poll() is not None, timeout=60,
                   message="bridge dev to come up")
        text = output()
        assert dev.poll() is None, text
        assert "embedded Redis" in text and "local use only" in text
        assert "using the sandbox" in text
        assert f"Webhook URL: http://127.0.0.1:{port}/webhooks/realgeeks" in text
        secret = text.split("Secret:", 1)[1].split()[0]

        sent = subprocess.run([os.path.join(os.path.dirname(sys.executable), "bridge"), "webhook", "send"],
                              cwd=ROOT, env={**env, "REALGEEKS_WEBHOOK_SECRET": secret, "PORT": str(port)},
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0 and sent.stdout.startswith("200 "), sent.stdout + sent.stderr

        def contacts():
            answer = requests.get(f"http://127.0.0.1:{port + 1}/_sandbox/liondesk/contacts", timeout=5)
            return answer.json()["data"]

        wait_until(contacts, timeout=30, message="the sample lead to reach the sandbox's LionDesk")
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGTERM)  # to `bridge dev` alone: it must stop its children itself
        try:
            dev.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
    assert dev.returncode == 0, output()
    with pytest.raises(ProcessLookupError):  # nothing of its process group is left running
        wait_until(lambda: os.killpg(dev.pid, 0) and False, timeout=10, message="the children to exit")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (tmp_path / "state" / "redis.sock").exists():
        time.sleep(0.1)
    assert not (tmp_path / "state" / "redis.sock").exists(), "the embedded Redis was left running"
