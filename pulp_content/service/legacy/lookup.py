"""Path -> content, the way the 2018 content view and streamer looked it up (plain ORM)."""

from __future__ import annotations

from dataclasses import dataclass

from pulp_content.service.models import (
    Artifact,
    ContentArtifact,
    Distribution,
    PublishedArtifact,
    PublishedMetadata,
    RepositoryVersion,
    RepositoryVersionContent,
)


class Missing(Exception):
    """Nothing at this path (-> 404)."""


@dataclass
class Found:
    distribution: Distribution
    relative_path: str
    artifact: Artifact | None
    content_artifact: ContentArtifact | None


def base_paths(path: str) -> list[str]:
    """Every prefix of the path, as the old view tried them."""
    segments = path.strip("/").split("/")
    return ["/".join(segments[:i]) for i in range(1, len(segments) + 1)]


def match_distribution(path: str) -> Distribution:
    try:
        return Distribution.objects.get(base_path__in=base_paths(path))
    except Distribution.DoesNotExist:
        raise Missing(path) from None


def _version_of(distribution: Distribution) -> RepositoryVersion | None:
    if distribution.repository_version is not None:
        return distribution.repository_version
    if distribution.repository is not None:
        return distribution.repository.versions.order_by("-number").first()
    return None


def find(path: str) -> Found:
    """The artifact (or the content artifact still to download) behind a path."""
    distribution = match_distribution(path)
    relative = path.strip("/")[len(distribution.base_path) :].strip("/")
    publication = distribution.publication
    if publication is not None:
        try:
            published = publication.publishedartifact_set.get(relative_path=relative)
            ca = published.content_artifact
            return Found(distribution, relative, ca.artifact, ca)
        except PublishedArtifact.DoesNotExist:
            pass
        try:
            metadata = publication.publishedmetadata_set.get(relative_path=relative)
            return Found(distribution, relative, metadata.artifact, None)
        except PublishedMetadata.DoesNotExist:
            pass
        version = publication.repository_version if publication.pass_through else None
    else:
        version = _version_of(distribution)
    if version is None:
        raise Missing(path)
    try:
        member = RepositoryVersionContent.objects.get(version=version, relative_path=relative)
    except RepositoryVersionContent.DoesNotExist:
        raise Missing(path) from None
    ca = member.content_artifact
    return Found(distribution, relative, ca.artifact, ca)


def children(path: str) -> list[str]:
    """Names directly below a directory path (the old view had no listing; the bench's
    directory scenario needs one, so it is written in the same plain-ORM style)."""
    distribution = match_distribution(path)
    relative = path.strip("/")[len(distribution.base_path) :].strip("/")
    prefix = f"{relative}/" if relative else ""
    if distribution.publication is not None:
        paths = [pa.relative_path for pa in distribution.publication.publishedartifact_set.all()]
        paths += [pm.relative_path for pm in distribution.publication.publishedmetadata_set.all()]
    else:
        version = _version_of(distribution)
        paths = [m.relative_path for m in RepositoryVersionContent.objects.filter(version=version)]
    names = {
        p[len(prefix) :].split("/")[0] + ("/" if "/" in p[len(prefix) :] else "")
        for p in paths
        if p.startswith(prefix)
    }
    if not names:
        raise Missing(path)
    return sorted(names)
