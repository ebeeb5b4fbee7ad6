"""The symmetric key that encrypts secrets at rest, kept in a file outside the database.

As Pulp does: Fernet (AES-128-CBC with an HMAC-SHA256) with a key in a file, by default
`$PULP_CONTENT_HOME/keys/secret.key` (0600, its directory 0700). The file holds one key
per line: the first encrypts, every one decrypts, which is how `secrets rotate` changes
the key without a moment where a stored secret cannot be read. Nothing here touches the
database or Django.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import TypeGuard

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from pulp_content.service.errors import InvalidInput

# Marks a stored value as a Fernet token: anything else is plaintext from before
# encryption, which the data migration and `secrets rotate` encrypt.
PREFIX = "fernet:"
_CACHE_LIMIT = 4096


class SecretKeyError(InvalidInput):
    """The key file is missing, unreadable, or not the key the secrets were encrypted with."""


def sealed(value: object) -> TypeGuard[str]:
    """Whether a stored value is a token of ours (not plaintext)."""
    return isinstance(value, str) and value.startswith(PREFIX)


class Keyring:
    """The keys of one key file, loaded on first use; decrypted values are remembered by
    token, so reading the same secret again costs a dictionary lookup."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: MultiFernet | None = None
        self._stamp: tuple[int, int] | None = None  # the file's inode and mtime when read
        self._plain: dict[str, str] = {}
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self.path.exists()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def _load(self) -> MultiFernet:
        self._stamp = self._file_stamp()
        try:
            lines = self.path.read_text().split()
        except FileNotFoundError:
            raise SecretKeyError(
                f"secrets in the database are encrypted, but the key file {self.path} is "
                "missing: copy it from the host that has it, or point "
                "PULP_CONTENT_SECRET_KEY_FILE at it"
            ) from None
        except OSError as exc:
            raise SecretKeyError(
                f"cannot read the key file {self.path}: {exc.strerror or exc}"
            ) from None
        try:
            keys = MultiFernet([Fernet(line) for line in lines])
        except ValueError:
            raise SecretKeyError(
                f"{self.path} does not hold Fernet keys (one url-safe base64 key per line)"
            ) from None
        self._keys = keys
        return keys

    def keys(self) -> MultiFernet:
        return self._keys or self._load()

    def create(self) -> None:
        """Make a new key file unless one exists (another process may race us: the first
        one to link its file wins, the others read it)."""
        write_keys(self.path, [Fernet.generate_key()], replace=False)

    def encrypt(self, plaintext: str) -> str:
        """A token under the file's first key (made now if there is no file yet)."""
        if not self.exists() and self._keys is None:
            self.create()
        if self._keys is not None and self._file_stamp() != self._stamp:
            self._load()  # rotated by another process: encrypt under the new key
        return PREFIX + self.keys().encrypt(plaintext.encode()).decode()

    def decrypt(self, value: str) -> str:
        """The plaintext of a stored token; plaintext from before encryption as it is."""
        if not sealed(value):
            return value
        plain = self._plain.get(value)
        if plain is not None:
            return plain
        token = value[len(PREFIX) :].encode()
        try:
            plain = self.keys().decrypt(token).decode()
        except InvalidToken:
            # Another process may have rotated the key since we read the file.
            try:
                plain = self._load().decrypt(token).decode()
            except InvalidToken:
                raise SecretKeyError(
                    f"the key in {self.path} does not decrypt the stored secrets: is it the "
                    "key they were encrypted with?"
                ) from None
        with self._lock:
            if len(self._plain) >= _CACHE_LIMIT:
                self._plain.clear()
            self._plain[value] = plain
        return plain

    def forget(self) -> None:
        """Read the key file again on next use (after `secrets rotate` rewrote it)."""
        self._keys = None
        self._plain.clear()


def write_keys(path: Path, keys: list[bytes], replace: bool = True) -> None:
    """Write a key file atomically, 0600 in a 0700 directory; with `replace` False, an
    existing file is left as it is."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(b"\n".join(keys) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temp, path)
        else:
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)


_KEYRINGS: dict[Path, Keyring] = {}


def keyring_for(path: Path) -> Keyring:
    """The one Keyring of a key file in this process."""
    ring = _KEYRINGS.get(path)
    if ring is None:
        ring = _KEYRINGS.setdefault(path, Keyring(path))
    return ring
