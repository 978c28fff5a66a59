"""``python -m mega_pipe.pipeline.cli``: the same as the ``mega-pipe`` console script."""
from . import entry

entry()
