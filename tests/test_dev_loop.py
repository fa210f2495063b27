"""`bridge dev` as a person uses it: in a real terminal, Ctrl-C, a second run, a second terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from bridge.cli.dev import STOP_BUDGET_SECONDS
from tests.support import ROOT, wait_until
from tests.test_dev import free_port_pair

BRIDGE = os.path.join(os.path.dirname(sys.executable), "bridge")


def plain_env(home: Path, **extra) -> dict:
    """An environment with none of the bridge's variables: what a fresh terminal has."""
    return {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            **extra}


def session_members(sid: int) -> list[int]:
    """PIDs of the processes of session `sid` (what one `bridge dev` started, in any process group)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


class Terminal:
    """`bridge dev` running in a pseudo-terminal of its own, as if typed into a shell."""

    def __init__(self, argv: list[str], cwd: Path, env: dict):
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # the child: a session leader whose controlling terminal is the pty
            try:
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.chunks: list[bytes] = []
        self.status: int | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if ready:
                    data = os.read(self.master, 65536)
                    if not data:
                        return
                    self.chunks.append(data)
            except OSError:  # the pty closed: every process holding it is gone
                return

    def output(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def exited(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def wait_for(self, text: str, timeout: float = 90) -> str:
        wait_until(lambda: text in self.output() or self.exited(), timeout=timeout, interval=0.1,
                   message=f"{text!r} in the terminal")
        assert text in self.output(), self.output()
        return self.output()

    def close(self) -> None:
        """Kill whatever of this session is still running (ours only: the session is the child's)."""
        for _ in range(3):
            members = session_members(self.pid)
            if not members:
                break
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        if self.status is None:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
        try:
            os.close(self.master)
        except OSError:
            pass


def make_project(tmp_path: Path) -> Path:
    """A folder that looks like a checkout of the bridge (its pyproject.toml), with a sub-folder."""
    project = tmp_path / "project"
    (project / "some" / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    return project


def sandbox_contacts(port: int) -> list[dict]:
    return requests.get(f"http://127.0.0.1:{port + 1}/_sandbox/liondesk/contacts", timeout=5).json()["data"]


def send_from(folder: Path, home: Path) -> subprocess.CompletedProcess:
    """`bridge webhook send` in a second terminal, in `folder`, with no variables set."""
    return subprocess.run([BRIDGE, "webhook", "send"], cwd=folder, env=plain_env(home),
                          capture_output=True, text=True, timeout=60)


def stop_with_ctrl_c(terminal: Terminal) -> float:
    """Press Ctrl-C; return the seconds until `bridge dev` and every process it started are gone."""
    pressed = time.monotonic()
    terminal.ctrl_c()
    wait_until(lambda: terminal.exited() and not session_members(terminal.pid), timeout=15, interval=0.02,
               message="bridge dev and its children to exit after Ctrl-C")
    return time.monotonic() - pressed


@pytest.mark.e2e
def test_two_runs_with_ctrl_c_and_a_second_terminal_in_another_folder(tmp_path):
    project = make_project(tmp_path)
    port = free_port_pair()
    env = plain_env(tmp_path)
    leads = []
    for run in (1, 2):
        terminal = Terminal([BRIDGE, "dev", "--port", str(port)], project, env)
        try:
            text = terminal.wait_for("Press Ctrl-C to stop.")
            assert f"State:       {project / '.bridge'}" in text
            assert f"Try it:      {BRIDGE} webhook send" in text
            console = text.split("Console:", 1)[1].splitlines()[0]
            assert f"http://127.0.0.1:{port}/admin/" in console and "user admin, password " in console
            if run == 2:
                assert "its state restored from" in text
                assert console == first_console  # noqa: F821  (the stored credentials, stable across runs)
            first_console = console  # noqa: F841
            assert (project / ".bridge" / "dev.env").stat().st_mode & 0o077 == 0

            sent = send_from(project / "some" / "sub", tmp_path)
            assert sent.returncode == 0 and sent.stdout.startswith("200 "), sent.stdout + sent.stderr
            leads.append(sent.stdout.split('"lead_id":"', 1)[1].split('"', 1)[0])
            wait_until(lambda: len(sandbox_contacts(port)) == run, timeout=30,
                       message=f"lead {run} to reach the sandbox's LionDesk")

            if run == 2:  # the first run's lead, told from another folder of the second terminal
                story = subprocess.run([BRIDGE, "lead", leads[0]], cwd=project / "some", env=plain_env(tmp_path),
                                       capture_output=True, text=True, timeout=60)
                assert story.returncode == 0 and "processed" in story.stdout, story.stdout + story.stderr

            password = console.split("password ", 1)[1].rstrip(")").strip()
            page = requests.get(f"http://127.0.0.1:{port}/admin/", auth=("admin", password), timeout=5)
            assert page.status_code != 404

            seconds = stop_with_ctrl_c(terminal)
        finally:
            terminal.close()
        text = terminal.output()
        # A hang check, not a benchmark: `bridge dev` kills what has not stopped within its budget
        # (gunicorn's graceful stop alone can take its whole share), so only a stop that ignored the
        # budget takes longer than it plus a loaded machine's slack.
        assert seconds <= STOP_BUDGET_SECONDS + 5, f"run {run} took {seconds:.2f} s to stop:\n{text}"
        assert "Traceback" not in text, text
        assert terminal.status == 0, text
        stopping = text.split("Stopping:", 1)[1]
        assert "web, worker, sandbox, redis" in stopping.splitlines()[0]
        assert not (project / ".bridge" / "dev.env").exists()
        assert not (project / ".bridge" / "redis.sock").exists()



@pytest.mark.e2e
@pytest.mark.parametrize("which", ["web", "sandbox"])
def test_a_port_in_use_is_reported_before_anything_starts(tmp_path, which):
    port = free_port_pair()
    taken = port if which == "web" else port + 1
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        started = time.monotonic()
        result = subprocess.run([BRIDGE, "dev", "--port", str(port)], cwd=tmp_path,
                                env=plain_env(tmp_path, BRIDGE_STATE_DIR=str(tmp_path / "state")),
                                capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"port {taken} is in use" in output
    suggested = int(output.split("try `bridge dev --port ", 1)[1].split("`", 1)[0])
    assert suggested not in (port, port + 1)
    assert "The bridge is running" not in output and "Traceback" not in output
    assert not (tmp_path / "state" / "redis.sock").exists()
    assert time.monotonic() - started < 15


def test_dev_credentials_are_generated_once_and_kept(tmp_path):
    from bridge.cli.dev import dev_credentials

    first = dev_credentials(tmp_path, {})
    assert first["ADMIN_USERNAME"] == "admin" and len(first["ADMIN_PASSWORD"]) >= 12
    assert dev_credentials(tmp_path, {}) == first
    assert (tmp_path / "dev-credentials.json").stat().st_mode & 0o077 == 0
    own = dev_credentials(tmp_path, {"ADMIN_USERNAME": "me", "ADMIN_PASSWORD": "pw", "SECRET_KEY": "k"})
    assert (own["ADMIN_USERNAME"], own["ADMIN_PASSWORD"], own["SECRET_KEY"]) == ("me", "pw", "k")


def test_the_state_folder_is_found_from_the_project_root(tmp_path, monkeypatch):
    from bridge.storage.embedded import project_root, state_dir

    project = make_project(tmp_path)
    monkeypatch.delenv("BRIDGE_STATE_DIR", raising=False)
    monkeypatch.chdir(project / "some" / "sub")
    assert project_root() == project
    assert state_dir() == project / ".bridge"
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert project_root(other) != other  # another project's pyproject.toml is not ours


def test_dev_env_is_used_only_while_its_dev_runs(tmp_path, monkeypatch):
    import json

    from bridge.cli.dev import load_dev_environment

    monkeypatch.setenv("BRIDGE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("REALGEEKS_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("PORT", "7777")
    dead = subprocess.Popen(["true"])
    dead.wait()
    record = {"env": {"REALGEEKS_WEBHOOK_SECRET": "s", "PORT": "5000", "HOME": "/nope"}}
    (tmp_path / "dev.env").write_text(json.dumps({**record, "pid": dead.pid}))
    environ = dict(os.environ)
    assert load_dev_environment(environ) == []

    pretend = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "dev"])
    try:
        wait_until(lambda: b"dev" in Path(f"/proc/{pretend.pid}/cmdline").read_bytes(), message="the pretend dev")
        (tmp_path / "dev.env").write_text(json.dumps({**record, "pid": pretend.pid}))
        assert load_dev_environment(environ) == ["REALGEEKS_WEBHOOK_SECRET"]
        assert environ["REALGEEKS_WEBHOOK_SECRET"] == "s" and environ["PORT"] == "7777"
        assert "/nope" not in environ.get("HOME", "")
    finally:
        pretend.kill()
        pretend.wait()
