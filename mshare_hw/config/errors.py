"""The one error type users see for bad configuration or input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError


class ConfigError(ValueError):
    """Bad configuration or input: the message names the file, the key or line, and what was expected."""


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def from_validation_error(source: str | Path | Callable[[str], str | Path], err: ValidationError) -> ConfigError:
    """Turn pydantic's report into lines of `file: key: reason`; `source` may name the file per key
    (a `--set` that gave the key its value)."""
    lines = []
    for item in err.errors():
        msg = item["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        key = _key_path(item["loc"])
        lines.append(f"{source(key) if callable(source) else source}: key '{key}': {msg}")
    return ConfigError("\n".join(lines))
