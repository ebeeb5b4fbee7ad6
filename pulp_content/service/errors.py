"""The one error tree of the service; `handlers` maps it to HTTP, the CLI to `Error: ...`."""

from __future__ import annotations

from pulp_content.service.redact import mask_url, mask_urls


class ContentError(Exception):
    """Base of every error the service raises on purpose."""


class InvalidInput(ContentError):
    """A user gave a value the service cannot accept (CLI or request)."""


class NotResolved(ContentError):
    """Nothing is served at this path."""

    def __init__(self, path: str, reason: str = "not found") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FileMissing(NotResolved):
    """The answer named a stored file that is gone (reclaimed since, or lost)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "artifact file is missing from storage")


class DatabaseUnavailable(ContentError):
    """The database does not answer (down, restarting, refusing connections) -> 503."""


class StorageError(ContentError):
    """Storage could not take a download (a full disk, an I/O error) -> 507."""


class StorageUnavailable(ContentError):
    """The bucket that holds stored artifacts does not answer -> 503."""


class RangeError(ContentError):
    """The Range header cannot be satisfied for a representation of this size."""

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable for size {size}")
        self.size = size


class UpstreamError(ContentError):
    """The upstream could not deliver; carries the url and its status (None: no answer).

    Its text goes to clients (a 502's body), logs and the CLI: credentials are masked."""

    def __init__(self, url: str, reason: str, status: int | None = None, timeout: bool = False):
        self.url = mask_url(url)
        self.reason = mask_urls(reason)
        super().__init__(f"upstream {self.url}: {self.reason}")
        self.status = status
        self.timeout = timeout


class LackedUpstream(UpstreamError):
    """The upstream lacks a pull-through file: a 404 this process or another one met, that
    still stands (`service.missing`); nobody asked the upstream again."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "not found (a 404 that still stands)", status=404)


class EndedElsewhere(UpstreamError):
    """Another process's download ended, without a stored file, before this one could
    follow it: not the upstream's verdict, so the request asks again (and may download
    it itself)."""


class DigestMismatch(UpstreamError):
    """The upstream's bytes did not match the expected size or digest."""


class TooLarge(UpstreamError):
    """The file is larger than its remote's max_size: refused, nothing is kept."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(url, f"is larger than the remote's max size ({limit} bytes)")
        self.limit = limit
