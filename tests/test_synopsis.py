"""Synopsis sentence splitting on realistic prose, one-sentence-per-line files and legacy encodings."""
from __future__ import annotations

from pathlib import Path

import pytest
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.pipeline.synopsis import read_synopsis, split_sentences

# A TRIPOD-style synopsis (our own text): wrapped prose in two paragraphs, with abbreviations,
# initials, a decimal, ellipses, quotes and a sentence that starts with a number.
SENTENCES = [
    "In 1987, retired detective Mr. Walter Haines lives alone in St. Augustine, Florida, where he "
    "spends his days restoring an old sailboat.",
    "His quiet routine ends when Dr. Elena Ruiz, a U.S. Navy forensic analyst, asks him to review "
    "the one case he never solved.",
    "The victim, Lucy Marsh, vanished after a concert... and her car was found 3.5 miles from the pier.",
    "Walter agrees, but only if Elena keeps the inquiry away from his old partner, Frank Doyle Jr. "
    "of the state police.",
    "\"You were the only one who believed her mother,\" Elena tells him.",
    "Together they track down the band's manager, J. R. R. Whitcombe, who now sells bait, tackle, "
    "ice, etc. on the coast.",
    "Whitcombe admits he lied in his 1988 statement (e.g. about when the bus left) because Doyle "
    "paid him.",
    "When Walter confronts Doyle at his house on Elm St., his former partner pulls a gun and "
    "shouts, \"Some doors should stay shut!\"",
    "Elena arrives just in time, and Doyle is arrested for Mrs. Marsh's daughter's murder...",
    "30 years after the disappearance, Walter finally sails out to scatter flowers over the water.",
]

SYNOPSIS = """\
In 1987, retired detective Mr. Walter Haines lives alone in St. Augustine, Florida, where he
spends his days restoring an old sailboat. His quiet routine ends when Dr. Elena Ruiz, a U.S.
Navy forensic analyst, asks him to review the one case he never solved. The victim, Lucy Marsh,
vanished after a concert... and her car was found 3.5 miles from the pier. Walter agrees, but
only if Elena keeps the inquiry away from his old partner, Frank Doyle Jr. of the state police.
"You were the only one who believed her mother," Elena tells him.

Together they track down the band's manager, J. R. R. Whitcombe, who now sells bait, tackle,
ice, etc. on the coast.  Whitcombe admits he lied in his 1988 statement (e.g. about when the bus
left) because Doyle paid him. When Walter confronts Doyle at his house on Elm St., his former
partner pulls a gun and shouts, "Some doors should stay shut!" Elena arrives just in time, and
Doyle is arrested for Mrs. Marsh's daughter's murder... 30 years after the disappearance, Walter
finally sails out to scatter flowers over the water.
"""


def test_prose_synopsis() -> None:
    assert split_sentences(SYNOPSIS) == SENTENCES


def test_one_sentence_per_line() -> None:
    """Every line ends like a sentence, so line breaks are boundaries even after "etc." or "Dr."
    and before a lower-case start; inside a line the usual rules still apply."""
    text = ("The crew lands on the moon, loads supplies, etc.\r\n"
            "Commander Reyes meets Dr.\r\n"
            "\r\n"
            "iris, the station's AI, greets them. She has been alone for 3.5 years!\r\n"
            "\"Welcome home,\" she says.\r\n")
    assert split_sentences(text) == [
        "The crew lands on the moon, loads supplies, etc.",
        "Commander Reyes meets Dr.",
        "iris, the station's AI, greets them.",
        "She has been alone for 3.5 years!",
        "\"Welcome home,\" she says.",
    ]


def test_wrapped_prose_lines_are_joined() -> None:
    """One line does not end like a sentence, so line breaks are only wrapping."""
    text = "Maria meets Mr.\nSmith at the station. They\ntalk for hours.\n"
    assert split_sentences(text) == ["Maria meets Mr. Smith at the station.", "They talk for hours."]


@pytest.mark.parametrize("text, expected", [
    ("He hesitates... Then he jumps.", ["He hesitates...", "Then he jumps."]),
    ("Is it over?! \"No,\" she says.", ["Is it over?!", "\"No,\" she says."]),
    ("She reads No. 5 aloud. No. Nobody listens.", ["She reads No. 5 aloud.", "No.", "Nobody listens."]),
    ("(He dies.) Then the war ends.", ["(He dies.)", "Then the war ends."]),
    ("He wakes at 6 a.m. and runs. It rains.", ["He wakes at 6 a.m. and runs.", "It rains."]),
    ("Paragraph one without a stop\n\nParagraph two.", ["Paragraph one without a stop", "Paragraph two."]),
    ("  \n\n ", []),
])
def test_boundaries(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize("prefix, codec", [
    (b"", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"", "cp1252"),
])
def test_read_synopsis_encodings(tmp_path: Path, prefix: bytes, codec: str) -> None:
    text = SYNOPSIS + "\nAt the café, Zoë and Chloé raise a glass to Lucy — “déjà vu,” Walter says.\n"
    path = tmp_path / "synopsis.txt"
    path.write_bytes(prefix + text.encode(codec))
    assert read_synopsis(path) == SENTENCES + [
        "At the café, Zoë and Chloé raise a glass to Lucy — “déjà vu,” Walter says."]


@pytest.mark.parametrize("name, content", [
    ("empty.txt", b"\n \n"),
    ("binary.txt", bytes(range(256)) * 4),
])
def test_unusable_synopsis_raises(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MegaPipeError, match=name):
        read_synopsis(path)


def test_missing_synopsis_raises(tmp_path: Path) -> None:
    with pytest.raises(MegaPipeError, match="nowhere.txt"):
        read_synopsis(tmp_path / "nowhere.txt")
