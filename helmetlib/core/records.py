"""Typed, frozen records that round-trip through strict JSON (the run's settings, results, cards).

Records are pydantic dataclasses: constructing one from JSON (`from_json`) checks every field's type and names
the bad key in the error, and `to_json` gives plain JSON values. Files are written atomically and never hold
NaN or infinity (strict JSON that every reader accepts).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Self

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

__all__ = ["Record", "RecordError", "record", "read_json", "write_json", "output_file_problem", "output_folder_problem"]


class RecordError(ValueError):
    """A JSON file that is missing, unreadable or does not hold the expected record; the message names the key."""


def record(cls=None, /, *, forbid_extra: bool = False):
    """Decorator: a frozen pydantic dataclass (fields checked on construction), unknown keys ignored or refused."""
    config = ConfigDict(extra="forbid" if forbid_extra else "ignore", arbitrary_types_allowed=False)

    def wrap(target):
        return dataclass(frozen=True, config=config)(target)

    return wrap if cls is None else wrap(cls)


@functools.cache
def _adapter(cls) -> TypeAdapter:
    return TypeAdapter(cls)


class Record:
    """Base of every record: `to_json()` gives a JSON-ready dict, `from_json(dict)` checks and builds one."""

    def to_json(self) -> dict[str, Any]:
        return _adapter(type(self)).dump_python(self, mode="json")

    @classmethod
    def from_json(cls, data: Any, *, source: str | Path | None = None) -> Self:
        try:
            return _adapter(cls).validate_python(data)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            prefix = f"{source}: " if source else ""
            raise RecordError(f"{prefix}bad {cls.__name__} record: key {where!r}: {first['msg']}") from None

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """The record stored in the JSON file `path`; `RecordError` naming the file and key when it is not one."""
        return cls.from_json(read_json(path), source=path)

    def write(self, path: str | Path) -> Path:
        """Write the record to `path` atomically (strict JSON, sorted keys)."""
        return write_json(path, self.to_json())


def read_json(path: str | Path) -> Any:
    """Parsed JSON of a file, with `RecordError` naming the file when it is missing or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RecordError(f"{path}: not readable JSON ({error})") from None


def write_json(path: str | Path, data: Any) -> Path:
    """Write strict JSON (no NaN) to `path` through a temporary file and a rename, so readers never see half."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file and a rename. An `OSError` (a full disk, a file-size limit)
    names `path` and leaves no temporary file behind: a full disk raises on write, where Python names no file."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    return path


def output_file_problem(path: str | Path, option: str) -> str | None:
    """Why the output file `path` (given as `option`) cannot be written, checked before any work, or None."""
    path = Path(path)
    if path.is_dir():
        return f"{option} {path}: is a folder, not a file"
    if not path.parent.is_dir():
        return f"{option} {path}: the folder {path.parent} does not exist"
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{option} {path}: not writable"
    return None


def output_folder_problem(path: str | Path, option: str) -> str | None:
    """Why the folder `path` (given as `option`) cannot be written or created, or None: a temporary file is made
    (and removed) in it or in its nearest existing parent, so that nothing is left behind by a refused run."""
    import tempfile

    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            return f"{option} {path}: {parent} is a file, not a folder"
        if parent.is_dir():
            try:
                tempfile.TemporaryFile(dir=parent).close()
            except OSError as error:
                return f"{option} {path}: cannot write in {parent} ({error.strerror or error})"
            return None
    return None
