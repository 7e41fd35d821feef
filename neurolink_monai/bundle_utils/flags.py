# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Command-line flag parsing for bundle configs (``--resume true`` arrives as the string ``"true"``)."""

from __future__ import annotations

from typing import Any

__all__ = ["as_bool"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", "none", ""}


def as_bool(value: Any, name: str = "flag") -> bool:
    """``value`` as a bool: bools, 0/1 and the strings true/false, yes/no, on/off, 1/0 (any case).

    ``python -m monai.bundle run ... --resume true`` passes the string ``"true"`` (the command line parser only
    turns ``True``/``False`` into bools), which plain Python would treat as true whatever it says.

    Raises:
        ValueError: anything else, naming ``name`` and the value.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if value is None:
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}.")
