"""Mapping rules: the TOML shipped in config/, with BRIDGE_CONFIG merged over it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from bridge.exceptions import ConfigError

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[2] / "config" / "rules.toml"


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
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(variable, f"{str(path)!r} is not valid TOML: {exc}") from None


def load_rules(override_path: str | None = None) -> dict:
    """Load the default mapping rules and merge the file at `override_path` over them."""
    rules = _read(DEFAULT_RULES_PATH, "config/rules.toml") if DEFAULT_RULES_PATH.exists() else {}
    if override_path:
        rules = merge(rules, _read(Path(override_path), "BRIDGE_CONFIG"))
    return rules
