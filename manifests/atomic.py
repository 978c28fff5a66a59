"""Atomic writes: every file is written to a temporary sibling and renamed into place.

An interrupted run therefore never leaves a file that looks complete: either the old file (or
nothing) is there, or the new one is, whole.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import BusyError, MegaPipeError

log = logging.getLogger(__name__)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (single-threaded): os.umask can only be read by setting it.
FILE_MODE = 0o666 & ~_read_umask()


def temp_sibling(path: Path) -> Path:
    """An empty temporary file next to ``path`` with the permissions ``open`` would give the
    file itself (0666 less the umask; ``mkstemp`` alone makes it 0600, which would leave every
    output readable by its owner only). OS errors propagate."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    Missing parent folders are created; if the block fails they are removed again (those this
    call created, when still empty), so a failed write leaves nothing behind. A location that
    cannot be written raises :class:`MegaPipeError` (one line), not the OS error. The file gets
    the usual permissions (0666 less the umask), as if written in place."""
    path = Path(path)
    with made_dirs(path.parent):
        try:
            tmp = temp_sibling(path)
        except OSError as e:
            raise _cannot_write(path, e) from None
        tmp_path = tmp
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise


def warn_replacing(path: str | os.PathLike) -> None:
    """A user's output that replaces an existing file says so (one warning line), never silently
    (not for a run's own files, which reruns rewrite by design)."""
    if Path(path).is_file():
        log.warning("replacing existing %s", path)


@contextlib.contextmanager
def made_dirs(folder: str | os.PathLike) -> Iterator[Path]:
    """Create ``folder`` and its missing parents for the block; if the block fails, remove the
    folders created here that are still empty (deepest first)."""
    folder = Path(folder)
    created = []
    for d in [folder, *folder.parents]:
        if d.exists() or d.is_symlink():
            break
        created.append(d)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_empty(created)
        raise _cannot_write(folder, e) from None
    try:
        yield folder
    except BaseException:
        _remove_empty(created)
        raise


def _remove_empty(folders: list[Path]) -> None:
    for d in folders:                  # deepest first
        try:
            d.rmdir()
        except OSError:
            return                     # not empty (someone else wrote there) or gone


def _cannot_write(path: Path, e: OSError):
    return MegaPipeError(f"cannot write {path}: {e.strerror or e}")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an OS lock (``flock``) on the file ``path`` for the block, or fail at once with one
    line naming the holder.

    The kernel releases the lock when the holder exits, however it exits (SIGKILL included), so a
    crashed run never blocks the next one (it leaves a stale, unlocked file). The holder deletes
    the file when done; a process that locked a file which was deleted meanwhile sees that its
    inode is no longer the path's and tries again, so two holders can never coexist."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise BusyError(f"{what} is being written by another mega-pipe run (pid {holder}); "
                                "wait for it to finish or use another --out") from None
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()          # the file we locked was deleted by its previous holder: again
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        f.close()          # releases the lock


def check_output_file(path: str | os.PathLike, what: str = "--out",
                      suffixes: tuple[str, ...] = ()) -> Path:
    """Fail now, before any work, if ``path`` cannot be written as a file: a folder, a file
    where a folder should be, a location where creating a file fails (a real trial, since
    :func:`os.access` says yes to root on read-only and virtual file systems), or, with
    ``suffixes``, another extension. Creates nothing (the trial file is removed); returns it as
    a Path."""
    path = Path(path)
    if path.is_dir():
        raise MegaPipeError(f"{what} {path} is a directory: give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise MegaPipeError(f"{what} {path}: give a {' or '.join(suffixes)} file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise MegaPipeError(f"{what} {path} is not writable")
    check_output_dir(path.parent, what, shown=path)
    return path


def check_output_dir(folder: str | os.PathLike, what: str = "--out",
                     shown: str | os.PathLike | None = None) -> Path:
    """Fail now if files cannot be written in ``folder`` (existing or to be created): its
    nearest existing ancestor must be a folder in which a file can really be created. Creates
    nothing; returns ``folder`` as a Path. ``shown``: the path named in the message."""
    folder = Path(folder)
    shown = folder if shown is None else shown
    existing = next(d for d in [folder, *folder.parents] if d.exists() or d == Path(d.anchor))
    if not existing.is_dir():
        raise MegaPipeError(f"{what} {shown}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mega-pipe-probe.", dir=existing)
    except OSError as e:
        raise MegaPipeError(f"{what} {shown} is not writable: cannot create a file in "
                            f"{existing} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    return folder


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n",
                       encoding="utf-8")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_default(o: Any) -> Any:
    import fractions

    import numpy as np

    if isinstance(o, fractions.Fraction):
        return f"{o.numerator}/{o.denominator}"
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
