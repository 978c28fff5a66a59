"""The ``mega-pipe`` command line, one module per command group:

- ``extract.py``: ``extract``, and the extraction options ``segment`` and ``demo`` share;
- ``segment.py``: ``segment``;  ``demo.py``: ``demo``;
- ``train.py``: ``train``, ``eval``, ``score``, ``model-summary``;
- ``pretrain.py``: ``pretrain``, ``embed`` (docs/pretraining.md);
- ``search.py``: ``search``, ``moments charades|planted`` (docs/moments.md);
- ``weights.py``: ``weights list|fetch|verify``;
- ``manifest.py``: ``manifest movienet|tripod|synth`` (and the hidden old spellings
  ``manifest-movienet``, ``manifest-tripod``).

Only this package prints: results (summary lines, tables, JSON) on stdout; progress bars (tqdm)
and the library's log messages (stdlib :mod:`logging`, configured here once per run: one handler
on stderr) on stderr.

Every failure prints one line (``mega-pipe: error: ...``) on stderr, and the exit status says
what kind it was (the convention README.md documents):

- **2**: the command could not run as given, and wrote nothing: a usage mistake (an unknown or
  missing option, a bad value), or an input or output the user can fix (:class:`MegaPipeError`,
  :class:`ExtractorError`: a missing or unreadable input, a file of the wrong kind, an output
  location that cannot be written);
- **1**: it ran but did not finish its work: some movies of a multi-movie run failed (the others
  are written), or an unexpected internal error (a bug: ``--debug`` shows its traceback);
- **130**: interrupted (Ctrl-C); **141**: stdout was closed by its reader (``| head``), quietly.

``--debug`` (or ``MEGA_PIPE_DEBUG=1``, read here only) shows debug messages and the full
traceback instead of the one line.
"""
from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys

from ...extractors.errors import ExtractorError, WeightsNotFoundError
from ...manifests.errors import MegaPipeError
from . import demo, export, extract, manifest, pretrain, report, search, segment, train, weights
from .extract import add_extract_options, extract_config

__all__ = ["add_extract_options", "build_parser", "configure_logging", "entry", "extract_config",
           "main"]

log = logging.getLogger("mega_pipe")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mega-pipe")
    except PackageNotFoundError:   # running from a source tree that was never installed
        return "unknown (not installed)"


class UsageError(MegaPipeError):
    """A command line argparse rejects (exit status 2, like every input error)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the command and where its options are
    listed (raised as :class:`UsageError`), not argparse's usage block; sub-commands' parsers
    are of this class too. An unknown option is reported by the sub-command that was given it,
    with its closest known options; a mistyped command lists the commands without the hidden
    aliases."""

    def error(self, message: str):
        command = self.prog.partition(" ")[2]       # "train", "manifest synth"; "" at the top
        raise UsageError(f"{command + ': ' if command else ''}{message} "
                         f"(`{self.prog} --help` lists the options)")

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            where = _innermost(self, parsed)
            hints = _close_options(where, extra)
            where.error(f"unrecognized arguments: {' '.join(extra)}"
                        + (f"; did you mean {' or '.join(hints)}?" if hints else ""))
        return parsed

    def _check_value(self, action, value):
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            shown = [c for c in action.choices if c not in manifest.ALIASES]
            close = difflib.get_close_matches(value, shown, n=2)
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r}"
                + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
                + f" (choose from {', '.join(map(repr, shown))})")
        super()._check_value(action, value)


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub-)parser of the command given: ``mega-pipe manifest synth ...`` -> synth's."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if name not in (subs[0].choices if subs else {}):
            return parser
        parser = subs[0].choices[name]


def _close_options(parser: argparse.ArgumentParser, extra: list[str]) -> list[str]:
    """The options of ``parser`` closest to the unknown ``--options`` among ``extra``: spelling
    (``--epochz`` -> ``--epochs``), or a known option ending in the given name (``--epochs`` ->
    ``--pretrain-epochs``)."""
    known = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    out: list[str] = []
    for word in extra:
        if not word.startswith("--"):
            continue
        word = word.partition("=")[0]
        out += difflib.get_close_matches(word, known, n=2, cutoff=0.7)
        out += [k for k in known if k.endswith("-" + word[2:])]
    return list(dict.fromkeys(out))[:3]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mega-pipe",
        description="Movies -> per-shot multimodal features -> MEGA scene and act boundaries.")
    p.add_argument("--debug", action="store_true",
                   help="debug messages, and full tracebacks on errors (also $MEGA_PIPE_DEBUG=1)")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (extract, segment, export, report, demo, train, pretrain, weights, manifest, search):
        group.add_cli(sub)
    return p


# -- logging -------------------------------------------------------------------------------------
class _Formatter(logging.Formatter):
    """INFO as is, WARNING as ``warning: ...``, ERROR as ``mega-pipe: error: ...`` (the same line
    as a failed run's); DEBUG names its module. A record's traceback is shown with ``--debug``."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            msg = f"mega-pipe: error: {msg}"
        elif record.levelno >= logging.WARNING:
            msg = f"warning: {msg}"
        elif record.levelno < logging.INFO:
            msg = f"debug: {record.name}: {msg}"
        if record.exc_info and log.isEnabledFor(logging.DEBUG):
            msg += "\n" + self.formatException(record.exc_info)
        return msg


class _StderrHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (redirections and test captures see it), through
    ``tqdm.write`` so that a progress bar being drawn is cleared first and redrawn after."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def configure_logging(debug: bool = False) -> None:
    """One handler on stderr for the ``mega_pipe`` loggers (INFO, or DEBUG with ``debug``).
    Idempotent: calling it again replaces the handler (``main`` may run several times in one
    process, e.g. in tests)."""
    for h in [h for h in log.handlers if isinstance(h, _StderrHandler)]:
        log.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("MEGA_PIPE_DEBUG", "") not in ("", "0")   # the env default, read once
    configure_logging(debug)
    try:
        args = build_parser().parse_args(argv)
        args.debug = debug = args.debug or debug
        configure_logging(debug)
        return args.func(args) or 0
    except (MegaPipeError, ExtractorError) as e:
        if debug:
            if isinstance(e, WeightsNotFoundError):
                log.error("%s", e.detail)      # every path searched, above the traceback
            raise
        log.error("%s", e)
        return 2
    except KeyboardInterrupt:
        print("mega-pipe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:        # the reader of stdout went away (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:         # a bug: still one line, the traceback with --debug
        if debug:
            raise
        log.error("internal error: %s: %s (rerun with --debug for the traceback, and please "
                  "report it)", type(e).__name__, e)
        return 1


def entry() -> None:
    """The console script: :func:`main`, then an immediate exit.

    With torch, torchvision and transformers loaded, the interpreter's own teardown takes about a
    second (measured on 2 cores: 4.7 s for import + exit, 3.7 s with this exit). By the time
    :func:`main` returns every output has been written and renamed into place, so after flushing
    the standard streams nothing is lost by skipping it. (Code that starts services needing an
    orderly shutdown must stop them before :func:`main` returns.)"""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
