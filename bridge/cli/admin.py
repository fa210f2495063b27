"""`bridge admin ...`: the named users of the support console and their sessions."""

from __future__ import annotations

import sys

import click

from bridge.cli.environment import redis_or_exit, say, settings_or_exit


@click.group()
def admin():
    """Console users: add, remove, list; see and end sessions."""


@admin.command("add-user")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def add_user(name, password_stdin):
    """Add console user NAME, or give an existing one a new password (which ends their sessions).

    The password is asked for twice (not echoed), or read from standard input with
    --password-stdin; it is stored only as a scrypt hash.
    """
    from bridge.storage import sessions, users

    settings = settings_or_exit()
    problem = users.name_problem(name)
    if problem:
        raise click.BadParameter(problem, param_hint="NAME")
    if settings.admin_username and name.casefold() == settings.admin_username.casefold():
        say(f"bridge: {name} is the first user (ADMIN_USERNAME); change ADMIN_PASSWORD to change its password",
            err=True)
        sys.exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True, err=True)
    problem = users.password_problem(name, password)
    if problem:
        say(f"bridge: password refused: {problem}", err=True)
        sys.exit(2)
    conn = redis_or_exit(settings)
    user, created = users.save(conn, name, password)
    if created:
        say(f"added console user {user.name}")
    else:
        ended = sessions.end_all(conn, user.name)
        say(f"changed the password of {user.name}; ended {ended} open session{'s' if ended != 1 else ''}")
    if not settings.admin_enabled:
        say("bridge: note: the console is off until ADMIN_USERNAME and ADMIN_PASSWORD are set", err=True)


@admin.command("remove-user")
@click.argument("name")
def remove_user(name):
    """Remove console user NAME and end their sessions."""
    from bridge.storage import sessions, users

    conn = redis_or_exit(settings_or_exit())
    if not users.remove(conn, name):
        say(f"bridge: no console user {name}", err=True)
        sys.exit(1)
    ended = sessions.end_all(conn, name)
    say(f"removed console user {name}; ended {ended} open session{'s' if ended != 1 else ''}")


@admin.command("users")
def list_users():
    """List the console users: the first user (ADMIN_USERNAME) and the added ones."""
    from bridge.ops.present import format_time
    from bridge.storage import users

    settings = settings_or_exit()
    if settings.admin_username:
        say(f"{settings.admin_username}  (first user: ADMIN_USERNAME / ADMIN_PASSWORD)")
    for user in users.list_all(redis_or_exit(settings)):
        say(f"{user.name}  added {format_time(user.created_at)}, password set {format_time(user.password_set_at)}")


@admin.command("sessions")
def list_sessions():
    """List the open console sessions: who, since when, from which address."""
    from bridge.ops.present import format_time, time_zone
    from bridge.storage import sessions

    settings = settings_or_exit()
    found = sessions.list_open(redis_or_exit(settings))
    zone = time_zone(settings.bridge_timezone)
    for session in found:
        say(f"{session.user}  since {format_time(session.created_at, zone)}  from {session.address or '?'}")
    say(f"{len(found)} open session{'s' if len(found) != 1 else ''}")


@admin.command("logout-all")
@click.option("--user", "name", default=None, help="End only this user's sessions.")
def logout_all(name):
    """End every open console session (or one user's): everyone logs in again."""
    from bridge.storage import sessions

    ended = sessions.end_all(redis_or_exit(settings_or_exit()), name)
    whose = f" of {name}" if name else ""
    say(f"ended {ended} open session{'s' if ended != 1 else ''}{whose}")
