"""The pool of names the generator sends: validated, read from a file or generated from a seed.

Every name becomes a record key. The runtime needs a UTF-8 key on every record: a null or empty key stops
the StateFun job and restart-loops it for good, so such names never leave this module.
"""

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Final

_ASCII_SYLLABLES: Final = ("ka", "mo", "ri", "lu", "sen", "ta", "vi", "no", "el", "dra", "po", "zu", "an", "mi")
# Accents, Cyrillic, CJK, Greek and an emoji: multi-byte UTF-8 in keys, values and greetings.
_UNICODE_SYLLABLES: Final = ("zoë", "ōs", "ñu", "влад", "李", "雷", "ψυ", "åk", "çe", "🙂")
UNICODE_EVERY: Final = 5  # with unicode on, every fifth generated name uses the syllables above


class InvalidName(ValueError):
    """A name that must not become a record key."""


def validate_name(name: str) -> str:
    """Return `name` unchanged if it can be a record key, else raise InvalidName saying why."""
    if not name:
        raise InvalidName("empty name: an empty key would stop the StateFun job")
    if not name.strip():
        raise InvalidName(f"name {name!r} is only whitespace")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidName(f"name {name!r} is not encodable as UTF-8: {error.reason}") from None
    return name


def generate_names(size: int, seed: int, unicode: bool = False) -> list[str]:
    """`size` distinct names, the same for the same seed; the index suffix makes them distinct."""
    rng = random.Random(seed)
    names = []
    for index in range(size):
        pool = _UNICODE_SYLLABLES if unicode and index % UNICODE_EVERY == UNICODE_EVERY - 1 else _ASCII_SYLLABLES
        stem = "".join(rng.choice(pool) for _ in range(rng.randint(2, 3)))
        names.append(f"{stem.capitalize()}-{index}")
    return names


def parse_names(lines: Iterable[str], source: str) -> list[str]:
    """One name per line, trailing newline removed (nothing else: the key is the line as written)."""
    names = []
    for number, line in enumerate(lines, start=1):
        name = line.rstrip("\r\n")
        try:
            names.append(validate_name(name))
        except InvalidName as error:
            raise InvalidName(f"{source}:{number}: {error}") from None
    if not names:
        raise InvalidName(f"{source}: no names")
    return names


def read_names_file(path: Path) -> list[str]:
    """The names in a UTF-8 file, one per line (see parse_names); InvalidName gives the file and line."""
    with path.open(encoding="utf-8") as lines:
        return parse_names(lines, str(path))
