"""The words of config errors: values echoed short, and the keys a typo may have meant.

Every value or key a message repeats is cut to about :data:`MAX_ECHO` characters, whatever
the file held, so one message stays one short line.
"""

from __future__ import annotations

import difflib
import reprlib
from typing import Any

from img2img.config.schema import all_keys
from img2img.errors import ConfigError

#: Values echoed in error messages are cut to about this many characters.
MAX_ECHO = 100

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 2, 8, 8, 6
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = 80, 40, 80


def short_repr(value: Any) -> str:
    """The repr of a value to echo in a message, at most about :data:`MAX_ECHO` characters
    (long strings, numbers and lists are cut with ``...``) whatever the value holds."""
    text = _REPR.repr(value)
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


def clip_text(text: str) -> str:
    """Text (a key, an override) cut to about :data:`MAX_ECHO` characters."""
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


def suggest(key: str, candidates: list[str]) -> str:
    """Keys with the same last part first (``batch_size`` -> ``train.batch_size``), then
    the closest spellings of the whole key, then of its last part."""
    leaf = key.rsplit(".", 1)[-1]
    close = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf]
    close += [c for c in difflib.get_close_matches(key, candidates, n=3, cutoff=0.6) if c not in close]
    if not close:
        leaves: dict[str, list[str]] = {}
        for c in candidates:
            leaves.setdefault(c.rsplit(".", 1)[-1], []).append(c)
        for match in difflib.get_close_matches(leaf, list(leaves), n=3):
            close += leaves[match]
    close = close[:3]
    return f"; did you mean {', '.join(close)}?" if close else ""


def unknown_key(dotted: str) -> ConfigError:
    """The error for a key the run config does not have, naming the closest ones."""
    hint = suggest(dotted, all_keys()) if len(dotted) <= MAX_ECHO else ""
    return ConfigError(f"unknown config key '{clip_text(dotted)}'{hint}")
