"""User-facing errors.

Anything the user can fix (a bad input file, missing weights, a malformed manifest) is raised as
:class:`MegaPipeError`. The CLI prints its message as one line and exits non-zero; the traceback
is shown only with ``--debug`` (or ``MEGA_PIPE_DEBUG=1``).
"""


class MegaPipeError(Exception):
    """An error caused by the input or the environment, with a message meant for the user."""


class InputError(MegaPipeError):
    """The input file cannot be used (unreadable, no video stream, bad subtitles...)."""


class BusyError(MegaPipeError):
    """An output is being written by another mega-pipe run right now (its lock is held): a
    catalogue run comes back to the movie later instead of failing it."""
