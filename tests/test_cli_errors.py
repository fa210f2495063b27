"""The `bridge` command line: one line when Redis or the server cannot be reached, --version, -h."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import free_port

BRIDGE = os.path.join(os.path.dirname(sys.executable), "bridge")


def run(args, tmp_path, **env):
    return subprocess.run([BRIDGE, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "BRIDGE_STATE_DIR": str(tmp_path / "state"), **env})


@pytest.mark.parametrize("args", [["jobs", "failed"], ["lead", "abc"], ["liondesk", "status"], ["jobs", "stats"]])
def test_unreachable_redis_is_one_line(tmp_path, args):
    result = run(args, tmp_path, REDIS_URL="redis://user:hunter2@127.0.0.1:1/0")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "bridge: cannot reach Redis at redis://user:***@127.0.0.1:1/0: Connection refused"


def test_unreachable_server_is_one_line(tmp_path):
    port = free_port()
    result = run(["webhook", "send"], tmp_path, REALGEEKS_WEBHOOK_SECRET="s", PORT=str(port))
    assert result.returncode != 0
    assert result.stderr.strip() == (f"bridge: cannot reach http://127.0.0.1:{port}/webhooks/realgeeks: "
                                     "Connection refused")


def test_version_and_short_help(tmp_path):
    from importlib.metadata import version

    result = run(["--version"], tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"bridge {version('realgeeks-liondesk-bridge')}"
    for args in (["-h"], ["jobs", "-h"], ["webhook", "send", "-h"]):
        result = run(args, tmp_path)
        assert result.returncode == 0 and result.stdout.startswith("Usage: bridge"), args
