"""Mapping rules: the TOML shipped in config/, with BRIDGE_CONFIG merged over it.

`config/rules.toml` is the one source of truth for the defaults. The package reaches it
as `bridge/translate/default_rules.toml`, a link that the wheel turns into the file
itself, so an installed bridge (not only a checkout) carries its rules.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

import phonenumbers

from bridge.exceptions import ConfigError
from bridge.translate import limits, liondesk
from bridge.translate.text import folded

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "default_rules.toml"


def merge(base: dict, override: dict) -> dict:
    """Return `base` with `override` merged in: tables merge key by key, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read(path: Path, variable: str) -> dict:
    """Parse one TOML file, naming `variable` in the error when it is missing or malformed."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(variable, f"file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(variable, f"file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(variable, f"{str(path)!r} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(variable, f"{str(path)!r} is not valid TOML: {exc}") from None


def load_rules(override_path: str | None = None) -> dict:
    """Load the default mapping rules and merge the file at `override_path` over them.

    The defaults are never optional: a bridge without them would start, pass its checks
    and fail its first lead, so a missing or unreadable default file stops it here.
    """
    rules = _read(DEFAULT_RULES_PATH, "config/rules.toml (the default mapping rules shipped with the bridge)")
    if override_path:
        rules = merge(rules, _read(Path(override_path), "BRIDGE_CONFIG"))
    check_rules(rules, "BRIDGE_CONFIG" if override_path else "config/rules.toml")
    return rules


def lookup(table: Mapping | None, key: str | None) -> str | None:
    """Return the value a mapping table gives `key`, ignoring case and spaces; None when unmapped or mapped to ""."""
    if not table or not isinstance(key, str) or not key.strip():
        return None
    wanted = folded(key)
    for name, value in table.items():
        if folded(name) == wanted:
            return value or None
    return None


def _value(rules: dict, path: str):
    """The value at a dotted `path` of the rules, or None when any part is missing."""
    value = rules
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


# What each rule must be, checked once at start so a typo in BRIDGE_CONFIG names itself
# instead of surfacing as a KeyError in the middle of a lead.
_TEXTS = ("contact.source_name", "contact.phone_region", "contact.address_type",
          "activities.task_action_type", "reverse.source_name")
_OPTIONAL_TEXTS = ("lead.default_type", "reverse.site_uuid")
_LISTS = ("contact.extra_tags", "lead.own_address_roles", "activities.ignore")
_TABLES = ("hotness.by_urgency", "lead.type_by_role", "lead.source_names", "campaigns.by_role",
           "agents.liondesk_email", "activities.v1_types", "custom_fields")
_FLAGS = ("reverse.create_leads_from_liondesk",)


def check_rules(rules: dict, variable: str) -> None:
    """Raise ConfigError naming `variable` and the rule when a mapping rule is missing or of the wrong kind."""
    def fail(path: str, problem: str):
        raise ConfigError(variable, f"rule {path}: {problem}")

    for path in _TEXTS:
        if not isinstance(_value(rules, path), str) or not _value(rules, path).strip():
            fail(path, "must be a non-empty string")
    for path in _OPTIONAL_TEXTS:
        if not isinstance(_value(rules, path), str):
            fail(path, "must be a string (\"\" for none)")
    for path in _LISTS:
        value = _value(rules, path)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            fail(path, "must be a list of strings")
    for path in _TABLES:
        value = _value(rules, path)
        if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
            fail(path, "must be a table of strings")
    for path in _FLAGS:
        if not isinstance(_value(rules, path), bool):
            fail(path, "must be true or false")
    if len(rules["contact"]["source_name"]) > limits.CONTACT_SOURCE_NAME:
        fail("contact.source_name", f"longer than LionDesk's {limits.CONTACT_SOURCE_NAME} characters")
    if not phonenumbers.country_code_for_region(rules["contact"]["phone_region"].upper()):
        fail("contact.phone_region", "is not an ISO 3166 region code phonenumbers knows")
    if rules["contact"]["address_type"] not in liondesk.ADDRESS_TYPES:
        fail("contact.address_type", f"must be one of {', '.join(liondesk.ADDRESS_TYPES)}")
    for urgency, name in rules["hotness"]["by_urgency"].items():
        if len(name) > limits.HOTNESS_NAME:
            fail(f"hotness.by_urgency.{urgency}", f"longer than LionDesk's {limits.HOTNESS_NAME} characters")
    for name in rules["custom_fields"]:
        if name not in liondesk.CUSTOM_FIELD_SOURCES:
            fail(f"custom_fields.{name}", f"is not a field the bridge maps; one of {', '.join(liondesk.CUSTOM_FIELD_SOURCES)}")
    for kind, v1_type in rules["activities"]["v1_types"].items():
        if v1_type and v1_type not in liondesk.V1_ACTIVITY_TYPES:
            fail(f"activities.v1_types.{kind}", f"must be one of {', '.join(liondesk.V1_ACTIVITY_TYPES)} or \"\"")
