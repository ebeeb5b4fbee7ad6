"""Hosts reading each other's downloads in progress: one upstream download per artifact
across hosts that share only PostgreSQL and the bucket.

A host holds the claim on a download as an advisory lock on a session that said, as it
connected, where that host is reached (`locks.REGISTER`); a request on another host
that finds the claim held asks PostgreSQL who holds it (`Locks.aholder`) and reads the
download there, at `/_peer` beside the content prefix, as a download from that host:
the bytes are verified here against the artifact's digests as any upstream's are, and
that host sends the last byte only once it verified them too (`stream`). Nothing is
saved from a peer: the holder saves. When the holder cannot be reached, or has no such
download any more, the request asks again (the claim is free by then, or this host
downloads for itself).

Requests between hosts carry a token: an HMAC of what they ask for and until when, with
a secret kept in the database, encrypted like the others (`secretdata.peer_secret`), so
no host needs more configuration than the database, the bucket and the key file the
encrypted secrets already need; nobody without the secret reads a guarded file through
a host's peer endpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

from pulp_content.service.errors import ContentError, EndedElsewhere, UpstreamError
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.shared import SharedDownload
from pulp_content.service.types import RemoteRef, RemoteSource

log = logging.getLogger(__name__)

ROUTE = "/_peer"
HEADER = "X-Pulp-Content-Peer"
TOKEN_LIFETIME = 60  # seconds a token is good for, from when it was made
REMOTE_ID = 0  # the id of a peer's RemoteConfig: no remote has it
CONNECT_TIMEOUT = 5.0  # seconds: a host that does not answer by then is gone
COOLDOWN = 30.0  # seconds a peer that failed a download is not asked for it again


class Peers:
    """This host's side of reading other hosts' downloads, and of being read."""

    def __init__(
        self, own_url: str | None, secret: bytes, clock: Callable[[], float] = time.time
    ) -> None:
        self.own_url = own_url
        self._secret = secret
        self._clock = clock
        self._failed: dict[str, float] = {}  # download name -> when its peer may be asked

    def token(self, name: str, path: str) -> str:
        expires = int(self._clock()) + TOKEN_LIFETIME
        return f"{expires}.{self._mac(expires, name, path)}"

    def admit(self, token: str, name: str, path: str) -> bool:
        """Whether `token` was made with this service's secret for `name` and `path`, and
        is still good."""
        expires_text, _, mac = token.partition(".")
        if not expires_text.isdigit() or len(expires_text) > 12:
            return False
        expires = int(expires_text)
        now = self._clock()
        if not now <= expires <= now + 2 * TOKEN_LIFETIME:
            return False
        return hmac.compare_digest(mac, self._mac(expires, name, path))

    def _mac(self, expires: int, name: str, path: str) -> str:
        message = f"{expires}\n{name}\n{path}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def source(self, src: RemoteSource, holder: str, name: str) -> RemoteSource:
        """`src` as read from the host at `holder`, which downloads it under `name`: the
        same digests to verify, nothing saved (the holder saves)."""
        path = src.path
        first = src.remote_artifacts[0]
        config = RemoteConfig(
            id=REMOTE_ID,
            name=f"peer {holder}",
            url=holder + "/",
            policy="streamed",  # never saved here
            headers=((HEADER, self.token(name, path)),),
            connect_timeout=CONNECT_TIMEOUT,
            sock_read_timeout=first.config.sock_read_timeout,
            retries=0,
        )
        url = f"{holder}{ROUTE}?{urlencode({'name': name, 'path': path})}"
        ref = RemoteRef(None, config, url, src.size, first.digests)
        return dataclasses.replace(src, remote_artifacts=(ref,))

    def failed(self, name: str) -> None:
        """The peer that held `name`'s download did not give it: do not ask it again for
        a while (the request asks again, and downloads it here if the claim stays held)."""
        self._failed[name] = time.monotonic() + COOLDOWN
        if len(self._failed) > 10_000:
            now = time.monotonic()
            self._failed = {n: t for n, t in self._failed.items() if t > now}

    def usable_for(self, name: str) -> bool:
        until = self._failed.get(name)
        return until is None or until <= time.monotonic()


class PeerDownload(SharedDownload):
    """A download another host runs, read from it (`Peers.source`): verified here as
    any download is, never saved here."""

    peers: Peers
    name: str  # the download's name on every host (`progress.partial_name`)

    async def _lacked(self, ra: RemoteRef) -> None:
        return None  # the holder met the upstream's 404, and recorded it

    def _verdict(self, failure: UpstreamError) -> ContentError:
        if failure.status == 404:
            return failure  # the upstream's answer to the holder
        # The holder is gone, or has no such download any more: asked again, the claim is
        # free by then or this host downloads it for itself.
        self.peers.failed(self.name)
        reason = f"the host downloading it did not give it ({failure.reason})"
        return EndedElsewhere(self.src.path, reason)
