"""The extractors' own errors (this package is a leaf: it imports nothing else of mega-pipe).

Each is a problem the user can fix (missing or corrupt weights, an unknown model set or modality,
a download that failed) with a message meant to be shown as is; the command line maps them to
its one-line error like its own."""


class ExtractorError(Exception):
    """A user-fixable problem with a model selection or its weights."""


class WeightsNotFoundError(ExtractorError):
    """Weights files are missing. The message is one line (the modalities, their files, what to
    do); ``detail`` lists every path searched and how to fetch each file (shown with --debug)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


class WeightsIntegrityError(ExtractorError):
    """A weights file exists but its sha256 is not the published one."""
