"""Checking JSON values against the annotations of our config dataclasses.

`config.json` and `generation_config.json` are user-editable files: a float where an int
belongs, or "no" where a bool belongs, must be refused by name, not crash deep inside a
layer or be silently taken as true.
"""
from __future__ import annotations

from dataclasses import fields

_KINDS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "None": (type(None),)}


def has_type(value, annotation: str) -> bool:
    """Does a JSON value fit an annotation written as `int`, `float`, `bool`, `str` or `X | None`?
    (bool is not an int here, though Python says it is.)"""
    allowed = tuple(t for part in annotation.split("|") for t in _KINDS[part.strip()])
    return isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)


def type_errors(cls, data: dict) -> list[str]:
    """One message per entry of `data` that is not a field of `cls`, or has the wrong type."""
    known = {f.name: f.type for f in fields(cls)}
    problems = [f"unknown key {name!r}" for name in data if name not in known]
    problems += [f"{name!r} must be {known[name]}, got {value!r}" for name, value in data.items()
                 if name in known and not has_type(value, known[name])]
    return problems
