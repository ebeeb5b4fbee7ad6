"""Parse a single HTTP byte range (RFC 9110 §14); pure, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pulp_content.service.errors import RangeError

_RANGE = re.compile(r"^bytes=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
MAX_DIGITS = 19  # beyond any real size; refuses absurd numbers before int() on them


@dataclass(frozen=True)
class ByteRange:
    """Inclusive first and last byte of a satisfiable range."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range a `Range` header asks for, or None to send the whole representation.

    RFC 9110 §14.2: a recipient may ignore a Range it does not understand, so malformed
    or multi-range headers yield None (the full body); an unsatisfiable one raises
    RangeError (-> 416 with `bytes */size`).
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if len(first) > MAX_DIGITS or len(last) > MAX_DIGITS or (not first and not last):
        return None
    if not first:
        # Suffix range: the last N bytes.
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeError(size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # RFC 9110 §14.1.1: an invalid range-spec; ignore the header
    if start >= size:
        raise RangeError(size)
    return ByteRange(start, min(end, size - 1))
