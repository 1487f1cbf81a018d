"""The server's own settings: read from initializationOptions or workspace/didChangeConfiguration,
validated once into a frozen dataclass. A bad or unknown key is dropped with a warning, never fatal:
an editor with a typo in its settings still gets a working server."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerOptions:
    code_lens: bool = True                # "N similar" above functions that have near-duplicates
    duplicate_diagnostics: bool = False   # also a Hint diagnostic on each of them
    similarity_threshold: float = 0.95    # cosine at or above which two functions count as near-duplicates
    model: str = ""                       # model folder; "" means the repository's configured model
    debounce_ms: int = 300                # quiet time after a change before a file is re-indexed


# The editor's camelCase names, and the check each value must pass.
_KEYS: dict[str, tuple[str, type, Any]] = {
    "codeLens": ("code_lens", bool, None),
    "duplicateDiagnostics": ("duplicate_diagnostics", bool, None),
    "similarityThreshold": ("similarity_threshold", float, lambda v: 0.0 < v <= 1.0),
    "model": ("model", str, None),
    "debounceMs": ("debounce_ms", int, lambda v: 0 <= v <= 60_000),
}


def parse_options(raw: Any, base: ServerOptions | None = None) -> tuple[ServerOptions, list[str]]:
    """Options from a client's settings object (flat, or under a "codesearch" section) on top of `base`,
    and one warning per key that was dropped."""
    base = base or ServerOptions()
    if raw is None:
        return base, []
    if isinstance(raw, dict) and isinstance(raw.get("codesearch"), dict):
        raw = raw["codesearch"]
    if not isinstance(raw, dict):
        return base, [f"codesearch settings must be an object, got {type(raw).__name__}: ignored"]
    changes: dict[str, Any] = {}
    warnings = []
    for key, value in raw.items():
        if key not in _KEYS:
            warnings.append(f"unknown codesearch setting {key!r} ignored (valid: {', '.join(_KEYS)})")
            continue
        field, kind, check = _KEYS[key]
        value = _coerce(value, kind)
        if value is None or (check is not None and not check(value)):
            warnings.append(f"codesearch setting {key!r} has a bad value {raw[key]!r}: keeping {getattr(base, field)!r}")
            continue
        changes[field] = value
    return dataclasses.replace(base, **changes), warnings


def _coerce(value: Any, kind: type) -> Any:
    """`value` as `kind`, or None when it is not one (a bool is not a number here, an int is a float)."""
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (bool, str) and isinstance(value, kind):
        return value
    return None
