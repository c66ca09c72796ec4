"""Read `params.yaml`, the one source of truth for every stage's settings.

Stages name the keys they need, so a missing or misspelt key fails at the start of the stage with
one sentence saying what to add, instead of a KeyError deep inside training. Each stage's `main()`
exits with that sentence (no traceback) when it catches a ParamsError.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path("params.yaml")


class ParamsError(Exception):
    """params.yaml is missing, unreadable, or lacks a section or key a stage needs."""


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Return the whole of params.yaml as a dict.

    Raises ParamsError if the file does not exist, is not valid YAML, or is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run the stage from the repository root.")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML ({exc}): fix the syntax.") from exc
    if not isinstance(params, dict):
        raise ParamsError(f"{path} must be a mapping of sections, e.g. `train: {{epochs: 40}}`.")
    return params


def section(params: dict[str, Any], name: str, keys: Iterable[str]) -> dict[str, Any]:
    """Return section `name` of `params`, checking that it has every key in `keys`.

    Raises ParamsError naming the missing section or keys.
    """
    values = params.get(name)
    if not isinstance(values, dict):
        raise ParamsError(f"params.yaml has no `{name}` section: add it (see README).")
    missing = [key for key in keys if key not in values]
    if missing:
        listed = ", ".join(f"`{name}.{key}`" for key in missing)
        them = "them" if len(missing) > 1 else "it"
        raise ParamsError(f"params.yaml lacks {listed}: add {them} (see README).")
    return values
