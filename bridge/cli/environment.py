"""What every command starts from: the settings and their Redis, or one line and an exit code."""

from __future__ import annotations

import sys

import click

from bridge.exceptions import ConfigError


def say(line: str = "", *, err: bool = False) -> None:
    """Print one line of text output with every control character escaped.

    Lines show what leads and vendors sent (names, errors, payload facts): a name holding
    ESC [2J would clear the screen, one holding a newline would forge a history line.
    (JSON output needs none of this: JSON writes control characters as escapes.)
    """
    from bridge.ops.present import terminal_safe

    click.echo(terminal_safe(line), err=err)


def settings_or_exit():
    """Load settings, or stop with one message naming the offending variable."""
    from bridge.config import load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        click.echo(f"bridge: configuration error: {exc}", err=True)
        sys.exit(2)


def redis_or_exit(settings):
    """Connect to the configured (or embedded) Redis."""
    from bridge.storage.redis import connect, redis_url

    return connect(redis_url(settings))


def redis_location() -> str:
    """Where the command looked for Redis, for people: REDIS_URL without its password."""
    import os
    import re

    url = os.environ.get("REDIS_URL")
    if not url:
        from bridge.storage.embedded import state_dir

        return f"the embedded Redis in {state_dir()}"
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def connection_reason(exc: BaseException) -> str:
    """The innermost reason of a connection error, in a few words ("Connection refused")."""
    import re

    text = str(exc)
    redis_style = re.search(r"Error -?\d+ connecting to \S+?\.? (.+?)\.?$", text)
    if redis_style:
        return redis_style.group(1)
    found = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    return found[-1].strip() if found else text
