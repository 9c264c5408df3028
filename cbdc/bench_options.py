"""Benchmark options from the command line and the settings (shared by every bench)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")

# Options a bench takes from the settings when the command line leaves them out.
WRITER_SETTINGS = (("max_events", "batch_max_events"), ("max_wait_ms", "batch_max_wait_ms"),
                   ("timezone", "timezone"))


def options_from_args(cls: type[T], args: Any, settings: Any = None,
                      from_settings: Iterable[tuple[str, str]] = WRITER_SETTINGS) -> T:
    """`cls` (a dataclass) from an argparse namespace, where a missing or None option keeps
    its default, then from `settings` for the (option, setting) pairs given."""
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    if settings is not None:
        for option, setting in from_settings:
            value = getattr(settings, setting, None)
            if value is not None and option not in values:
                values[option] = value
    return cls(**values)
