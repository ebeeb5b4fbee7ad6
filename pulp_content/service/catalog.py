"""Create, change and remove remotes, repositories, publications and distributions.

Each function validates everything before it writes, and writes in one transaction,
so bad input leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from django.db import IntegrityError, transaction
from django.db.models import Model, ProtectedError

from pulp_content.service import guards
from pulp_content.service.errors import InvalidInput
from pulp_content.service.freshness import format_patterns, parse_patterns
from pulp_content.service.ingest import save
from pulp_content.service.models import (
    POLICIES,
    Artifact,
    ContentGuard,
    Distribution,
    Publication,
    PublishedArtifact,
    PublishedMetadata,
    Remote,
    Repository,
    RepositoryVersion,
    RepositoryVersionContent,
)
from pulp_content.service.paths import clean_base_path, nested
from pulp_content.service.redact import MASK, mask_url
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.retries import MAX_RETRIES
from pulp_content.service.storage import Storage
from pulp_content.service.text import check_seconds, check_text
from pulp_content.service.tls import check_tls
from pulp_content.service.verify import Download

# What a user may set on a remote: every download setting but the identity.
REMOTE_FIELDS = tuple(
    f.name for f in fields(RemoteConfig) if f.name not in ("id", "name", "updated")
)
SECRET_FIELDS = ("password", "proxy_password", "client_key")
# A URL's `user:password@` moves into these fields, so no URL stored, logged or shown
# carries a credential (remote artifact URLs are made from the remote's URL).
CREDENTIAL_FIELDS = {
    "url": ("username", "password"),
    "proxy_url": ("proxy_username", "proxy_password"),
}


def get_named(model: type[Model], name: str) -> Any:
    """The row of `model` called `name`, or a clear error."""
    check_text(name, "name")
    try:
        return model._default_manager.get(name=name)
    except model.DoesNotExist:  # type: ignore[attr-defined]
        label = model._meta.verbose_name
        raise InvalidInput(f"no {label} named {name!r}") from None


def _unique_name(model: type[Model], name: str) -> None:
    check_text(name, "name")
    if not name or len(name) > 255 or name.strip() != name:
        raise InvalidInput(f"invalid name {name!r}")
    if model._default_manager.filter(name=name).exists():
        raise InvalidInput(f"a {model._meta.verbose_name} named {name!r} already exists")


def check_url(url: str, what: str = "URL") -> str:
    shown = f"{what} {mask_url(url)!r}"
    # urlsplit silently drops tabs and newlines; refuse them before it sees the URL.
    check_text(url, shown, secret=True)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise InvalidInput(f"invalid {shown}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"invalid {shown}: expected http(s)://host/...")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise InvalidInput(f"invalid {shown}: bad port") from None
    return url


def _check_headers(headers: dict[str, str]) -> None:
    for name, value in headers.items():
        check_text(name, "header name")
        check_text(value, f"the value of header {name!r}", secret=True)  # tokens live there
        if not name or any(ch in name for ch in " :"):
            raise InvalidInput(f"invalid header name {name!r}")


def without_credentials(url: str) -> tuple[str, str | None, str | None]:
    """`url` without its `user:password@`, and the user and password it carried."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit(parts._replace(netloc=host))
    return clean, unquote(user), unquote(password) if sep else None


def _move_credentials(fields: dict[str, Any]) -> None:
    for key, (user_key, password_key) in CREDENTIAL_FIELDS.items():
        if not fields.get(key):
            continue
        clean, user, password = without_credentials(fields[key])
        if user is None:
            continue
        if fields.get(user_key) is not None or fields.get(password_key) is not None:
            option = key.replace("_", "-")
            raise InvalidInput(
                f"give the credentials either in --{option} or with "
                f"--{user_key.replace('_', '-')}/--{password_key.replace('_', '-')}, not both"
            )
        fields.update({key: clean, user_key: user, password_key: password})


def _check_remote_fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(REMOTE_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown remote settings: {', '.join(sorted(unknown))}")
    if "url" in fields:
        check_url(fields["url"])
    if fields.get("proxy_url"):
        check_url(fields["proxy_url"], "proxy URL")
    _move_credentials(fields)
    if "policy" in fields and fields["policy"] not in POLICIES:
        raise InvalidInput(
            f"invalid policy {fields['policy']!r}: choose one of {', '.join(POLICIES)}"
        )
    if fields.get("username") is not None:
        check_text(fields["username"], "username")
    if fields.get("password") is not None:
        check_text(fields["password"], "the password", secret=True)
    if fields.get("headers"):
        _check_headers(fields["headers"])
    for name in ("connect_timeout", "sock_read_timeout", "total_timeout"):
        value = fields.get(name)
        if value is not None:
            check_seconds(value, name)
    if fields.get("download_concurrency") is not None and fields["download_concurrency"] < 1:
        raise InvalidInput("download_concurrency must be at least 1")
    if fields.get("max_size") is not None and fields["max_size"] < 1:
        raise InvalidInput("max_size must be at least 1 byte")
    if fields.get("quota") is not None and fields["quota"] < 1:
        raise InvalidInput("quota must be at least 1 byte")
    if fields.get("retries") is not None and not 0 <= fields["retries"] <= MAX_RETRIES:
        raise InvalidInput(f"retries must be between 0 and {MAX_RETRIES}")
    _check_freshness(fields)
    return fields


def _check_freshness(fields: dict[str, Any]) -> None:
    """Pull-through freshness settings: whole seconds, patterns kept one a line."""
    for name in ("metadata_max_age", "max_stale"):
        value = fields.get(name)
        if value is not None and (int(value) != value or not 0 <= value < 2**31):
            raise InvalidInput(f"{name} must be a whole number of seconds")
    if "mutable" in fields:
        patterns = tuple(fields["mutable"] or ())
        for pattern in patterns:
            check_text(pattern, "a mutable pattern")
            if "\n" in pattern or not pattern.strip():
                raise InvalidInput(f"invalid mutable pattern {pattern!r}")
        fields["mutable"] = format_patterns(patterns)


def create_remote(name: str, **fields: Any) -> Remote:
    _unique_name(Remote, name)
    if "url" not in fields:
        raise InvalidInput("a remote needs --url")
    remote = Remote(name=name, **_check_remote_fields(fields))
    check_tls(RemoteConfig.from_model(remote))
    remote.save()
    return remote


def update_remote(name: str, **fields: Any) -> Remote:
    remote = get_named(Remote, name)
    for key, value in _check_remote_fields(fields).items():
        setattr(remote, key, value)
    check_tls(RemoteConfig.from_model(remote))
    remote.save()
    return remote


def remote_as_dict(remote: Remote) -> dict[str, Any]:
    """A remote for `list` and `show`; secrets are shown only as set (`***`) or not, and
    header values not at all."""
    doc: dict[str, Any] = {"name": remote.name}
    for key in REMOTE_FIELDS:
        value = getattr(remote, key)
        if key in SECRET_FIELDS:
            value = MASK if value else None
        elif key == "headers":
            value = dict.fromkeys(value or {}, MASK)
        elif key in CREDENTIAL_FIELDS and value:
            value = mask_url(value)  # a row written before credentials moved out
        elif key == "mutable":
            value = list(parse_patterns(value))
        doc[key] = value
    return doc


def delete_named(model: type[Model], name: str) -> None:
    row = get_named(model, name)
    try:
        with transaction.atomic():
            row.delete()
    except (ProtectedError, IntegrityError):
        label = model._meta.verbose_name
        raise InvalidInput(f"{label} {name!r} is still in use by a distribution") from None


def create_repository(name: str, remote: str | None = None) -> Repository:
    _unique_name(Repository, name)
    remote_row = get_named(Remote, remote) if remote else None
    with transaction.atomic():
        repo = Repository.objects.create(name=name, remote=remote_row)
        RepositoryVersion.objects.create(repository=repo, number=0)
    return repo


def latest_version(repo: Repository) -> RepositoryVersion:
    return repo.versions.order_by("-number")[0]


def get_version(repository: str, number: int | None) -> RepositoryVersion:
    repo = get_named(Repository, repository)
    if number is None:
        return latest_version(repo)
    try:
        return repo.versions.get(number=number)
    except RepositoryVersion.DoesNotExist:
        raise InvalidInput(f"repository {repository!r} has no version {number}") from None


def manifest_of(version: RepositoryVersion) -> bytes:
    """The PULP_MANIFEST of a version: `relative_path,sha256,size` per line."""
    rows = (
        RepositoryVersionContent.objects.filter(version=version)
        .order_by("relative_path")
        .values_list("relative_path", "content__sha256", "content__size")
    )
    return "".join(f"{path},{sha},{size}\n" for path, sha, size in rows).encode()


def create_publication(
    storage: Storage,
    repository: str,
    number: int | None = None,
    pass_through: bool = False,
) -> Publication:
    """Publish a version's files and a generated PULP_MANIFEST."""
    version = get_version(repository, number)
    manifest = manifest_of(version)
    sha256 = hashlib.sha256(manifest).hexdigest()
    with storage.batch() as batch:
        partial = batch.new()
        partial.write_bytes(manifest)
        return save(
            storage,
            [Download(partial, len(manifest), {"sha256": sha256})],
            lambda: _publish(version, sha256, pass_through),
        )


def _publish(version: RepositoryVersion, sha256: str, pass_through: bool) -> Publication:
    """The rows of a publication whose PULP_MANIFEST artifact is `sha256`."""
    publication = Publication.objects.create(repository_version=version, pass_through=pass_through)
    if not pass_through:
        members = RepositoryVersionContent.objects.filter(version=version)
        PublishedArtifact.objects.bulk_create(
            PublishedArtifact(
                publication=publication,
                relative_path=m.relative_path,
                content_artifact_id=m.content_artifact_id,
                added=m.added,
            )
            for m in members.iterator()
        )
    if not PublishedArtifact.objects.filter(
        publication=publication, relative_path="PULP_MANIFEST"
    ).exists():
        PublishedMetadata.objects.create(
            publication=publication,
            relative_path="PULP_MANIFEST",
            artifact=Artifact.objects.get(sha256=sha256),
        )
    return publication


def _check_base_path(base_path: str, exclude: int | None = None) -> str:
    clean = clean_base_path(check_text(base_path, "base path"))
    others = Distribution.objects.all()
    if exclude is not None:
        others = others.exclude(pk=exclude)
    for other_name, other in others.values_list("name", "base_path"):
        if nested(clean, other):
            raise InvalidInput(
                f"base path {clean!r} overlaps distribution {other_name!r} ({other!r})"
            )
    return clean


def _source_fields(
    repository: str | None, version: str | None, publication: int | None, remote: str | None
) -> dict[str, Any]:
    given = [x for x in (repository, version, publication, remote) if x is not None]
    if len(given) != 1:
        raise InvalidInput("give exactly one of --repository, --version, --publication, --remote")
    fields: dict[str, Any] = {
        "repository": None,
        "repository_version": None,
        "publication": None,
        "remote": None,
    }
    if repository is not None:
        fields["repository"] = get_named(Repository, repository)
    elif version is not None:
        repo_name, sep, number = version.rpartition(":")
        if not sep or not number.isdigit():
            raise InvalidInput(f"invalid --version {version!r}: expected NAME:N")
        fields["repository_version"] = get_version(repo_name, int(number))
    elif publication is not None:
        try:
            fields["publication"] = Publication.objects.get(pk=publication)
        except Publication.DoesNotExist:
            raise InvalidInput(f"no publication with id {publication}") from None
    else:
        assert remote is not None
        fields["remote"] = get_named(Remote, remote)
    return fields


def create_distribution(
    name: str,
    base_path: str,
    *,
    repository: str | None = None,
    version: str | None = None,
    publication: int | None = None,
    remote: str | None = None,
    guard: str | None = None,
) -> Distribution:
    _unique_name(Distribution, name)
    fields = _source_fields(repository, version, publication, remote)
    clean = _check_base_path(base_path)
    guard_row = get_named(ContentGuard, guard) if guard else None
    try:
        with transaction.atomic():
            return Distribution.objects.create(
                name=name, base_path=clean, content_guard=guard_row, **fields
            )
    except IntegrityError:
        raise InvalidInput(f"base path {clean!r} is already taken") from None


def update_distribution(
    name: str,
    *,
    base_path: str | None = None,
    repository: str | None = None,
    version: str | None = None,
    publication: int | None = None,
    remote: str | None = None,
    guard: str | None = None,
    clear_guard: bool = False,
) -> Distribution:
    dist = get_named(Distribution, name)
    if any(x is not None for x in (repository, version, publication, remote)):
        for key, value in _source_fields(repository, version, publication, remote).items():
            setattr(dist, key, value)
    if base_path is not None:
        dist.base_path = _check_base_path(base_path, exclude=dist.pk)
    if guard is not None:
        dist.content_guard = get_named(ContentGuard, guard)
    if clear_guard:
        dist.content_guard = None
    try:
        with transaction.atomic():
            dist.save()
    except IntegrityError:
        raise InvalidInput(f"base path {dist.base_path!r} is already taken") from None
    return dist


def distribution_as_dict(dist: Distribution) -> dict[str, Any]:
    source: dict[str, Any]
    if dist.publication_id is not None:
        source = {"publication": dist.publication_id}
    elif dist.repository_version_id is not None:
        rv = dist.repository_version
        assert rv is not None
        source = {"version": f"{rv.repository.name}:{rv.number}"}
    elif dist.repository_id is not None:
        assert dist.repository is not None
        source = {"repository": dist.repository.name}
    else:
        assert dist.remote is not None
        source = {"remote": dist.remote.name}
    guard = dist.content_guard.name if dist.content_guard else None
    return {"name": dist.name, "base_path": dist.base_path, **source, "guard": guard}


def create_guard(name: str, kind: str, **options: Any) -> ContentGuard:
    _unique_name(ContentGuard, name)
    return ContentGuard.objects.create(
        name=name, kind=kind, settings=guards.settings_for(kind, **options)
    )


def guard_as_dict(guard: ContentGuard) -> dict[str, Any]:
    used_by = sorted(guard.distribution_set.values_list("name", flat=True))
    return {
        "name": guard.name,
        "kind": guard.kind,
        **guards.public(guard.kind, guard.settings),
        "distributions": used_by,
    }


def sign_url(url: str, expires_in: int, prefix: str, origin: str) -> str:
    """`url` with `expires` and `signature` for the signed-url guard of its distribution;
    a path (`/pulp/content/...`) is taken on `origin`."""
    check_text(url, "URL")
    if url.startswith("/") and not url.startswith("//"):
        url = origin + url
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise InvalidInput(f"invalid URL {url!r}: {exc}") from None
    # The canonical form the service checks: the path percent-decoded once.
    path = unquote(parts.path)
    if not path.startswith(prefix):
        raise InvalidInput(f"{url!r} is not under {prefix}")
    segments = path[len(prefix) :].strip("/").split("/")
    candidates = ["/".join(segments[: i + 1]) for i in range(len(segments))]
    dist = (
        Distribution.objects.filter(base_path__in=candidates)
        .select_related("content_guard")
        .first()
    )
    if dist is None:
        raise InvalidInput(f"no distribution serves {path}")
    guard = dist.content_guard
    if guard is None or guard.kind != "signed-url":
        raise InvalidInput(f"distribution {dist.name!r} has no signed-url guard")
    if expires_in <= 0:
        raise InvalidInput("--expires must be a positive number of seconds")
    expires = int(time.time()) + expires_in
    signed = guards.signature(guard.settings["key"], path, expires)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=f"{query}expires={expires}&signature={signed}"))


def repository_as_dict(repo: Repository) -> dict[str, Any]:
    return {
        "name": repo.name,
        "remote": repo.remote.name if repo.remote else None,
        "latest_version": latest_version(repo).number,
    }


def publication_as_dict(pub: Publication) -> dict[str, Any]:
    return {
        "id": pub.pk,
        "repository": pub.repository_version.repository.name,
        "version": pub.repository_version.number,
        "pass_through": pub.pass_through,
    }


@dataclass(frozen=True)
class _Kind:
    """How the CLI's list, show and delete reach the records of one kind."""

    model: type[Model]
    rows: Callable[[], Any]  # every record, in the order `list` prints them
    as_dict: Callable[[Any], dict[str, Any]]


_KINDS: dict[str, _Kind] = {
    "remote": _Kind(Remote, lambda: Remote.objects.order_by("name"), remote_as_dict),
    "repository": _Kind(
        Repository,
        lambda: Repository.objects.select_related("remote").order_by("name"),
        repository_as_dict,
    ),
    "publication": _Kind(
        Publication,
        lambda: Publication.objects.select_related("repository_version__repository").order_by("pk"),
        publication_as_dict,
    ),
    "distribution": _Kind(
        Distribution,
        lambda: Distribution.objects.select_related(
            "repository", "repository_version__repository", "remote", "content_guard"
        ).order_by("base_path"),
        distribution_as_dict,
    ),
    "guard": _Kind(ContentGuard, lambda: ContentGuard.objects.order_by("name"), guard_as_dict),
}


def list_records(kind: str) -> list[dict[str, Any]]:
    """Every record of `kind` (remote, repository, publication, distribution, guard) as
    `list` shows it; secrets masked."""
    spec = _KINDS[kind]
    return [spec.as_dict(row) for row in spec.rows()]


def show_record(kind: str, name: str) -> dict[str, Any]:
    """The record of `kind` called `name`, as `show` prints it; secrets masked."""
    spec = _KINDS[kind]
    return spec.as_dict(get_named(spec.model, name))


def record_as_dict(kind: str, row: Model) -> dict[str, Any]:
    """A record of `kind` just created or changed, as `show` prints it; secrets masked."""
    return _KINDS[kind].as_dict(row)


def delete_record(kind: str, name: str) -> None:
    """Delete the record of `kind` called `name`, or say why not."""
    delete_named(_KINDS[kind].model, name)
