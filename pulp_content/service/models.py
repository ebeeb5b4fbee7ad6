"""The data model, shaped like Pulp 3's: artifacts, content, remotes, repositories,
publications and distributions."""

from __future__ import annotations

from typing import Any

from django.db import models

from pulp_content.service.fields import EncryptedJSONField, EncryptedTextField

POLICIES = ("immediate", "on_demand", "streamed")


class BytewisePathField(models.CharField):  # type: ignore[type-arg]
    """A relative path compared byte by byte: "everything below dir/" is then the index
    range `'dir/' < path < 'dir0'`. PostgreSQL gets the C collation (see migration 0002);
    SQLite compares text that way already and has no collation named C."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 1024)
        kwargs.setdefault("db_collation", "C")
        super().__init__(*args, **kwargs)

    def db_parameters(self, connection: Any) -> dict[str, Any]:
        params: dict[str, Any] = super().db_parameters(connection)
        if connection.vendor != "postgresql":
            params.pop("collation", None)
        return params


class Artifact(models.Model):
    """A file in storage, content-addressed by sha256."""

    sha256 = models.CharField(max_length=64, unique=True)
    size = models.BigIntegerField()
    md5 = models.CharField(max_length=32, null=True)
    sha1 = models.CharField(max_length=40, null=True)
    sha224 = models.CharField(max_length=56, null=True)
    sha384 = models.CharField(max_length=96, null=True)
    sha512 = models.CharField(max_length=128, null=True)
    # Relative to the storage root, e.g. artifact/ab/cdef...
    file = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True)
    # When it was last served (None: not since it was stored), written in batches by each
    # worker (service.usage); reclaim and the remotes' quotas go least recently used first.
    last_used = models.DateTimeField(null=True)


class Content(models.Model):
    """A unit of the file type: a relative path and the sha256 of its bytes."""

    relative_path = models.CharField(max_length=1024)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField(null=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["relative_path", "sha256"], name="content_unique")
        ]


class ContentArtifact(models.Model):
    """Links a Content to the Artifact it needs; `artifact` is NULL until downloaded."""

    content = models.ForeignKey(Content, on_delete=models.CASCADE)
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, null=True)
    relative_path = models.CharField(max_length=1024)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["content", "relative_path"], name="ca_unique")
        ]


class Remote(models.Model):
    """An upstream source and how to download from it. Credentials never sit in `url` or
    `proxy_url` (catalog moves them into their own fields); secrets are encrypted."""

    name = models.CharField(max_length=255, unique=True)
    url = models.TextField()
    policy = models.CharField(max_length=16, default="immediate")
    username = models.TextField(null=True)
    password = EncryptedTextField(null=True)
    headers = EncryptedJSONField(default=dict)
    ca_cert = models.TextField(null=True)
    client_cert = models.TextField(null=True)
    client_key = EncryptedTextField(null=True)
    tls_validation = models.BooleanField(default=True)
    proxy_url = models.TextField(null=True)
    proxy_username = models.TextField(null=True)
    proxy_password = EncryptedTextField(null=True)
    connect_timeout = models.FloatField(default=20.0)
    sock_read_timeout = models.FloatField(default=60.0)
    total_timeout = models.FloatField(null=True)
    download_concurrency = models.PositiveIntegerField(default=10)
    # The largest file downloaded on a client's request, in bytes (None: no bound).
    max_size = models.BigIntegerField(null=True)
    # Whether a pull-through request's query string goes upstream with it.
    forward_query = models.BooleanField(default=False)
    # How many times a request that got a 429, a 5xx or no answer is sent again (0: none).
    retries = models.PositiveIntegerField(default=3)
    # Pull-through freshness (service.freshness). All NULL-able, NULL meaning the
    # default, so adding them never rebuilds the table (and its triggers) on SQLite.
    # The remote's own mutable-file globs, one a line, beside the built-in ones.
    mutable = models.TextField(null=True)
    # Seconds a mutable pull-through copy is fresh (None: 300).
    metadata_max_age = models.IntegerField(null=True)
    # Seconds past that a mutable copy is still served while the upstream fails (None: 1 day).
    max_stale = models.IntegerField(null=True)
    # Bytes its on_demand and pull-through artifacts may take in storage (None: no bound);
    # past it the least recently used are reclaimed (service.reclaim).
    quota = models.BigIntegerField(null=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)


class RemoteArtifact(models.Model):
    """Where a ContentArtifact can be downloaded from, with what it must match."""

    content_artifact = models.ForeignKey(ContentArtifact, on_delete=models.CASCADE)
    remote = models.ForeignKey(Remote, on_delete=models.CASCADE)
    url = models.TextField()
    size = models.BigIntegerField(null=True)
    md5 = models.CharField(max_length=32, null=True)
    sha1 = models.CharField(max_length=40, null=True)
    sha224 = models.CharField(max_length=56, null=True)
    sha256 = models.CharField(max_length=64, null=True)
    sha384 = models.CharField(max_length=96, null=True)
    sha512 = models.CharField(max_length=128, null=True)
    failed_at = models.DateTimeField(null=True)
    # A pull-through copy: when it was fetched or last confirmed upstream (a 304), and
    # what the upstream said then: its validators and its own lifetime in seconds.
    validated_at = models.DateTimeField(null=True)
    etag = models.TextField(null=True)
    last_modified = models.TextField(null=True)
    upstream_max_age = models.BigIntegerField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["content_artifact", "remote"], name="ra_unique")
        ]
        # Pull-through distributions look remote artifacts up by their URL.
        indexes = [models.Index(fields=["remote", "url"], name="ra_remote_url")]


class UpstreamMissing(models.Model):
    """A pull-through URL its upstream answered 404 for, kept until `until` (the remote's
    metadata max age later): every worker and host answers 404 without asking again. It
    stands for the remote as it was when noted (`noted`): a change of the remote since
    voids it."""

    remote = models.ForeignKey(Remote, on_delete=models.CASCADE)
    url = models.TextField()
    noted = models.DateTimeField()
    until = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["remote", "url"], name="missing_remote_url")]


class ServiceSecret(models.Model):
    """A secret the service's hosts share through the database, encrypted like the
    others: `peer` signs the requests hosts make to read each other's downloads."""

    name = models.CharField(max_length=64, unique=True)
    value = EncryptedTextField()


class PeerHost(models.Model):
    """Where the host behind one session of download claims (advisory locks) is reached:
    written by that session as it connects (`locks.REGISTER`, raw SQL), read by another
    host that finds one of its claims held (service.peers). A row of a session that is
    gone is removed by the next registration."""

    backend_pid = models.IntegerField()
    backend_start = models.DateTimeField()
    url = models.TextField()

    class Meta:
        indexes = [models.Index(fields=["backend_pid"], name="peerhost_pid")]


class Repository(models.Model):
    """A versioned set of content."""

    name = models.CharField(max_length=255, unique=True)
    remote = models.ForeignKey(Remote, on_delete=models.SET_NULL, null=True)
    created = models.DateTimeField(auto_now_add=True)


class RepositoryVersion(models.Model):
    """One immutable state of a repository; version 0 is empty."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "number"], name="version_unique")
        ]


class RepositoryVersionContent(models.Model):
    """Membership of a content unit in a version, at its relative path."""

    version = models.ForeignKey(RepositoryVersion, on_delete=models.CASCADE)
    content = models.ForeignKey(Content, on_delete=models.PROTECT)
    content_artifact = models.ForeignKey(ContentArtifact, on_delete=models.PROTECT)
    relative_path = BytewisePathField()
    # When the unit first entered the repository: the Last-Modified of what is served.
    added = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "relative_path"], name="membership_unique")
        ]


class Publication(models.Model):
    """A servable snapshot of a repository version."""

    repository_version = models.ForeignKey(RepositoryVersion, on_delete=models.CASCADE)
    pass_through = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)


class PublishedArtifact(models.Model):
    """A file of a publication: relative path to the ContentArtifact behind it."""

    publication = models.ForeignKey(Publication, on_delete=models.CASCADE)
    relative_path = BytewisePathField()
    content_artifact = models.ForeignKey(ContentArtifact, on_delete=models.PROTECT)
    added = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["publication", "relative_path"], name="pa_unique")
        ]


class PublishedMetadata(models.Model):
    """A file the publication generated (PULP_MANIFEST), kept as an Artifact."""

    publication = models.ForeignKey(Publication, on_delete=models.CASCADE)
    relative_path = BytewisePathField()
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["publication", "relative_path"], name="pm_unique")
        ]


class ContentGuard(models.Model):
    """An authorization check attached to distributions; `kind` picks the check. Its
    settings (header values, signing key, password hashes) are encrypted."""

    name = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=32)
    settings = EncryptedJSONField(default=dict)


class Distribution(models.Model):
    """What the URL space sees: a base path serving one source."""

    name = models.CharField(max_length=255, unique=True)
    base_path = models.CharField(max_length=255, unique=True)
    publication = models.ForeignKey(Publication, on_delete=models.PROTECT, null=True)
    repository = models.ForeignKey(Repository, on_delete=models.PROTECT, null=True)
    repository_version = models.ForeignKey(RepositoryVersion, on_delete=models.PROTECT, null=True)
    remote = models.ForeignKey(Remote, on_delete=models.PROTECT, null=True)
    content_guard = models.ForeignKey(ContentGuard, on_delete=models.SET_NULL, null=True)
    created = models.DateTimeField(auto_now_add=True)
