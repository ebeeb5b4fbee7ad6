"""Text a user gives (names, URLs, base paths, headers): valid UTF-8, no control characters."""

from __future__ import annotations

import math
import unicodedata

from pulp_content.service.errors import InvalidInput


def check_text(value: str, what: str, secret: bool = False) -> str:
    """`value` unchanged, or InvalidInput if it is not valid UTF-8 or holds a control
    character (a newline in a URL or a header would split what is sent upstream).
    The error names a `secret` value only by `what`."""
    shown = what if secret else f"{what} {value!r}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Command-line bytes that are not UTF-8 arrive as surrogate escapes (PEP 383).
        raise InvalidInput(f"{shown} is not valid UTF-8") from None
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidInput(f"{shown} contains a control character")
    return value


def check_seconds(value: float, what: str) -> float:
    """A finite, positive number of seconds."""
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"{what} must be a positive number of seconds, not {value!r}")
    return value
