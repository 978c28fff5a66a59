"""Synopsis text -> sentences (the tokens of the MEGA synopsis model, MEGA supplementary, Sec. 3).

Training labels for act segmentation live on synopsis sentences (TRIPOD), and every sentence
becomes one row of ``synopsis.parquet`` with its sentence embedding, so the split must be stable
and faithful to how TRIPOD synopses are written: plain prose paragraphs.

Splitting rules, in order:

1. Blank lines (paragraph breaks) always end a sentence.
2. **One sentence per line.** When the text has several non-empty lines and *every* one of them
   ends like a sentence (``.``, ``!``, ``?`` or ``…``, optionally followed by closing quotes or
   brackets), each line break is a hard boundary too. Otherwise line breaks are just the
   wrapping of prose and count as spaces.
3. Inside a paragraph (or line) a sentence ends at ``.``/``!``/``?``/``…`` (any run of them,
   plus closing quotes/brackets, which stay with their sentence) followed by whitespace and then
   an upper-case letter or a digit, possibly behind an opening quote or bracket. Hence decimals
   (``3.5``) and ellipses followed by lower case (``waits... and waits``) never split.
4. A single ``.`` does not split after a known abbreviation (``Mr.``, ``Dr.``, ``St.``, ``Jr.``,
   ``etc.``, ...), a single-letter initial (``J. R. R. Tolkien``), a dotted abbreviation
   (``U.S.``, ``e.g.``, ``i.e.``, ``a.m.``) or ``No.``/``Vol.`` before a number. The price is
   that a sentence really ending in one of these (``... Martin Luther King Jr. He ...``) is not
   split; in synopses these words are far more often mid-sentence.
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..extractors.registry import build_extractors, entry_for
from ..manifests.errors import InputError
from ..manifests.features import CONTRACT_VERSION, FeatureFolder, synopsis_table
from ..manifests.provenance import code_version
from .cache import bytes_fingerprint, stage_key
from .subtitles import read_text_file

_CLOSERS = "\"'”’»)]"
_OPENERS = "\"'“‘«([¿¡"
# A sentence-final run and its closing quotes/brackets, then the whitespace before the next one.
_TERMINATOR = re.compile(rf"(?P<end>[.!?…]+)(?P<close>[{re.escape(_CLOSERS)}]*)(?P<space>\s+)")
_LINE_IS_SENTENCE = re.compile(rf"[.!?…][{re.escape(_CLOSERS)}]*$")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
_DOTTED_ABBREVIATION = re.compile(r"(?:[A-Za-z]{1,3}\.)+[A-Za-z]{1,3}")

# Lower-case, without the final period.
ABBREVIATIONS: frozenset[str] = frozenset({
    "mr", "mrs", "ms", "mme", "mlle", "messrs", "dr", "prof", "rev", "fr", "sr", "jr", "st", "mt",
    "ft", "capt", "col", "gen", "lt", "sgt", "cpl", "maj", "adm", "cmdr", "gov", "sen", "rep",
    "pres", "hon", "insp", "det", "supt", "ave", "blvd", "rd", "etc", "vs", "cf", "al", "approx",
    "inc", "ltd", "co", "corp", "dept", "univ",
})
# Abbreviations that precede a number ("No. 5", "Vol. 2") but end sentences as ordinary words.
NUMBER_ABBREVIATIONS: frozenset[str] = frozenset({"no", "nos", "vol"})


def split_sentences(text: str) -> list[str]:
    """Split synopsis prose into sentences (rules in the module docstring), whitespace normalised."""
    sentences: list[str] = []
    for chunk in _hard_chunks(text):
        sentences.extend(_split_chunk(" ".join(chunk.split())))
    return sentences


def read_synopsis(path: str | os.PathLike, *, one_per_line: bool = False) -> list[str]:
    """Read a synopsis file (any encoding subtitles may have) and split it into sentences.

    ``one_per_line``: every non-empty line is exactly one sentence (as ``manifest-tripod``
    writes them), so sentence indices of annotations stay valid whatever the punctuation."""
    text, _ = read_text_file(path, "synopsis file")
    if one_per_line:
        sentences = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    else:
        sentences = split_sentences(text)
    if not sentences:
        raise InputError(f"{path}: the synopsis is empty")
    return sentences


def _hard_chunks(text: str) -> list[str]:
    """Pieces of text that no sentence crosses: the lines in one-sentence-per-line input,
    otherwise paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) > 1 and all(_LINE_IS_SENTENCE.search(line) for line in lines):
        return lines
    return _PARAGRAPH_BREAK.split(text)


def _split_chunk(chunk: str) -> list[str]:
    """Split one whitespace-normalised paragraph or line at its sentence boundaries."""
    sentences: list[str] = []
    start = 0
    for match in _TERMINATOR.finditer(chunk):
        if _is_boundary(chunk, match):
            sentences.append(chunk[start:match.start("space")])
            start = match.end()
    sentences.append(chunk[start:])
    return [sentence for sentence in sentences if sentence]


def _is_boundary(chunk: str, match: re.Match[str]) -> bool:
    """Whether a terminator ends a sentence: the next sentence must start like one, and a lone
    period must not belong to an abbreviation or an initial."""
    following = chunk[match.end():].lstrip(_OPENERS)
    if not following or not (following[0].isupper() or following[0].isdigit()):
        return False
    if match["end"] != "." or match["close"]:
        return True
    word = chunk[:match.start()].rsplit(" ", 1)[-1].lstrip(_OPENERS)
    lowered = word.lower()
    if lowered in ABBREVIATIONS or _DOTTED_ABBREVIATION.fullmatch(word):
        return False
    if len(word) == 1 and word.isalpha():
        return False
    return not (lowered in NUMBER_ABBREVIATIONS and following[0].isdigit())


class SynopsisFolderWriter:
    """Writes **synopsis-only feature folders** (``manifest tripod --synopses-only``): the
    sentences embedded with the ``subtitle`` extractor of a model set (the paper set's is
    all-MiniLM-L6-v2, docs/extractors.md) into ``synopsis.parquet``, exactly what ``extract
    --synopsis`` writes, plus a ``manifest.json`` of kind "synopsis-only" and no shots.

    One call per movie: ``writer(folder, movie_id, sentences)``. The file carries the same
    cache key as extract's synopsis stage (model entry, weights digest, sentences), so a rerun
    with the same sentences and model reuses it without loading the encoder. The encoder is
    built on first need and kept for every movie of the run."""

    def __init__(self, model_set: str = "paper", *, device: str = "cpu",
                 weights_dirs: tuple = (), offline: bool = False) -> None:
        self.entry = entry_for(model_set, "subtitle")
        self.model_set, self.device = model_set, device
        self.weights_dirs, self.offline = tuple(weights_dirs), offline
        self._encoder = None
        self.written: list[str] = []   # movie ids embedded now (the others were cached)

    def key(self, sentences: list[str]) -> str:
        """extract's synopsis cache key (pipeline/plan.py) for these sentences."""
        return stage_key(contract=CONTRACT_VERSION, model=self.entry.name, sha=self.entry.sha256,
                         sentences=bytes_fingerprint("\n".join(sentences).encode()))

    def encoder(self):
        if self._encoder is None:

            self._encoder = build_extractors(self.model_set, ["subtitle"], device=self.device,
                                             weights_dirs=self.weights_dirs,
                                             offline=self.offline)["subtitle"]
        return self._encoder

    def __call__(self, folder: os.PathLike | str, movie_id: str, sentences: list[str]) -> None:
        folder = FeatureFolder(folder)
        key = self.key(sentences)
        if folder.is_synopsis_only and folder.is_complete_synopsis(key):
            return
        if folder.manifest_path.is_file() and not folder.is_synopsis_only:
            return   # a full extract output: its synopsis is checked by the converter, never overwritten
        encoder = self.encoder()
        vectors = np.asarray(encoder.encode(sentences), np.float32)
        meta = {"dim": self.entry.dim, "model_id": self.entry.name,
                "weights_sha256": encoder.weights_sha256, "sampling": "sentence"}
        folder.write_synopsis_only(
            synopsis_table(movie_id, sentences, vectors, meta, cache_key=key),
            {"movie_id": movie_id, "code_version": code_version(), "models": {"synopsis": meta}})
        self.written.append(movie_id)
