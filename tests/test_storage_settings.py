"""Settings of where artifacts live: PULP_CONTENT_STORAGE_URL, _STORAGE_REDIRECT."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import CLI
from pulp_content.service.config import apply_config_file, load_settings
from pulp_content.service.errors import InvalidInput
from pulp_content.service.storage import FileSystemStorage, S3Storage, open_storage


def test_default_storage_is_the_home_directory():
    settings = load_settings({"PULP_CONTENT_HOME": "/srv/pc"})
    assert settings.storage_root == Path("/srv/pc/storage")
    assert settings.s3_location is None and settings.storage_redirect == "stream"
    assert type(open_storage(settings)) is FileSystemStorage


def test_a_file_url_moves_the_storage():
    settings = load_settings({"PULP_CONTENT_STORAGE_URL": "file:///data/pulp%20store"})
    assert settings.storage_root == Path("/data/pulp store")
    assert settings.storage_shown == "/data/pulp store"


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://my-bucket", ("my-bucket", "")),
        ("s3://my-bucket/", ("my-bucket", "")),
        ("s3://my.bucket/pulp/content/", ("my.bucket", "pulp/content/")),
    ],
)
def test_an_s3_url_names_bucket_and_prefix(url, location):
    settings = load_settings({"PULP_CONTENT_HOME": "/srv/pc", "PULP_CONTENT_STORAGE_URL": url})
    assert settings.s3_location == location
    assert settings.storage_shown == url
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage) and not storage.local
    # Downloads in progress stay on the local disk.
    assert storage.tmp == Path("/srv/pc/storage/tmp")
    assert storage.key_of("artifact/ab/cd") == location[1] + "artifact/ab/cd"


@pytest.mark.parametrize(
    "url",
    ["s3://ab", "s3://Bucket", "s3://", "file://host/path", "file:relative", "ftp://x/y", "/p"],
)
def test_a_storage_url_is_checked(url):
    with pytest.raises(InvalidInput, match="PULP_CONTENT_STORAGE_URL"):
        load_settings({"PULP_CONTENT_STORAGE_URL": url})


def test_storage_redirect_is_stream_or_presigned():
    assert load_settings({"PULP_CONTENT_STORAGE_REDIRECT": "presigned"}).storage_redirect == (
        "presigned"
    )
    with pytest.raises(InvalidInput, match="stream or presigned"):
        load_settings({"PULP_CONTENT_STORAGE_REDIRECT": "redirect"})


def test_delegation_and_s3_storage_are_refused_together():
    env = {"PULP_CONTENT_STORAGE_URL": "s3://bucket", "PULP_CONTENT_DELEGATE": "nginx"}
    with pytest.raises(InvalidInput, match="cannot be used with S3 storage"):
        load_settings(env)


def test_the_toml_keys(tmp_path):
    config = tmp_path / "pulp-content.toml"
    config.write_text('storage_url = "s3://bucket/p"\nstorage_redirect = "presigned"\n')
    environ: dict[str, str] = {}
    apply_config_file(str(config), environ)
    settings = load_settings(environ)
    assert settings.s3_location == ("bucket", "p/") and settings.storage_redirect == "presigned"


def test_serve_refuses_delegation_to_s3_storage_in_one_line(tmp_path):
    env = dict(
        os.environ,
        PULP_CONTENT_HOME=str(tmp_path),
        PULP_CONTENT_STORAGE_URL="s3://bucket",
        PULP_CONTENT_DELEGATE="nginx",
    )
    env.pop("PULP_CONTENT_DATABASE_URL", None)
    done = subprocess.run([*CLI, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.startswith("Error: PULP_CONTENT_DELEGATE cannot be used with S3 storage")
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_content_disposition_names_any_file():
    from pulp_content.service.bucket import content_disposition

    assert content_disposition("disk.iso") == "attachment; filename*=UTF-8''disk.iso"
    assert content_disposition('ä "b";c.rpm') == (
        "attachment; filename*=UTF-8''%C3%A4%20%22b%22%3Bc.rpm"
    )


def test_the_redirect_design_refuses_s3_storage_in_one_line(tmp_path):
    env = dict(os.environ, PULP_CONTENT_HOME=str(tmp_path), PULP_CONTENT_STORAGE_URL="s3://bucket")
    env.pop("PULP_CONTENT_DATABASE_URL", None)
    command = [*CLI, "serve", "--design", "redirect"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == "Error: the redirect design serves a filesystem storage only\n"
