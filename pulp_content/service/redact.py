"""Text made safe to show: credentials masked, control characters escaped (no Django).

Every response body, log line and CLI output that may carry a URL, a secret or a
client's bytes passes through here: `mask_url`/`mask_urls` hide `user:password@`,
`escape` keeps a logged field on its one line.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://userinfo@ inside free text (an exception's message, a log argument).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")


def mask_url(url: str) -> str:
    """`url` with its password (or, alone, its user name: often a token) as `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_urls(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, _password = userinfo.partition(":")
    shown = f"{user}:{MASK}" if sep else MASK
    return urlunsplit(parts._replace(netloc=f"{shown}@{host}"))


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _password = match["userinfo"].partition(":")
    return f"{match['scheme']}{user}:{MASK}@" if sep else f"{match['scheme']}{MASK}@"


def mask_urls(text: str) -> str:
    """Every `scheme://user:password@` in free text, masked as `mask_url` does."""
    return _USERINFO.sub(_mask_userinfo, text) if "@" in text else text


# The double quote too (as nginx does): a field cannot end the quotes around it.
_PLAIN_SAFE = re.compile(r"[^\x20\x21\x23-\x7e]")


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    if char.isprintable() and char != '"':
        return char  # printable text beyond ASCII (é, 中) stays readable
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: object) -> str:
    """`text` for one field of a log line: C0 and C1 controls, DEL, line and paragraph
    separators, other unprintable characters and `"` become `\\xNN` (`\\uNNNN`)."""
    value = str(text)
    if value.isascii() and value.isprintable() and '"' not in value:
        return value  # the common case, checked at C speed
    return _PLAIN_SAFE.sub(_escaped, value)


def shown(text: object) -> str:
    """A value for a log line or an error message: credentials masked, then escaped."""
    return escape(mask_urls(str(text)))
