"""Reading JSON and JSON Lines files, with one error style for every reader of mega-pipe.

A file that cannot be used raises :class:`MegaPipeError` with one line naming the file (and the
line, for JSON Lines) and what is wrong::

    runs/b.json: no such file
    runs/b.json: not JSON (Expecting value, line 1)
    movies.jsonl:3: not JSON (Unterminated string)
    movies.jsonl:4: expected a JSON object per line
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import MegaPipeError


def read_text(path: str | os.PathLike, what: str = "") -> str:
    """The UTF-8 text of ``path``; ``what`` names the file's role in messages
    ("boundaries file")."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MegaPipeError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise MegaPipeError(f"{label} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise MegaPipeError(f"{label}: not a text file (not UTF-8)") from None
    except OSError as e:
        raise MegaPipeError(f"{label}: cannot read ({e.strerror or e})") from None


def parse_json(text: str, origin: str) -> Any:
    """``text`` as JSON; ``origin`` names it in the error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise MegaPipeError(f"{origin}: not JSON ({e.msg}, line {e.lineno})") from None


def read_json(path: str | os.PathLike, what: str = "", expect: type | None = None) -> Any:
    """The JSON value in ``path``; with ``expect`` (``dict``, ``list``) it must be of that type."""
    label = f"{what} {path}" if what else str(path)
    value = parse_json(read_text(path, what), label)
    if expect is not None and not isinstance(value, expect):
        kind = {dict: "a JSON object", list: "a JSON array"}.get(expect, expect.__name__)
        raise MegaPipeError(f"{label}: expected {kind}, found {type(value).__name__}")
    return value


def read_jsonl(path: str | os.PathLike, what: str = "") -> list[tuple[int, dict]]:
    """The objects of a JSON Lines file with their line numbers (blank lines skipped)."""
    label = f"{what} {path}" if what else str(path)
    out = []
    for lineno, line in enumerate(read_text(path, what).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MegaPipeError(f"{label}:{lineno}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise MegaPipeError(f"{label}:{lineno}: expected a JSON object per line")
        out.append((lineno, obj))
    return out
