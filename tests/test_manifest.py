"""Manifest validation messages and JSON/TOML round trips."""

from __future__ import annotations

import pytest

from sandbank import Manifest, ManifestError


def test_defaults() -> None:
    manifest = Manifest.parse(None)
    assert manifest.network is False
    assert manifest.workdir == "."
    assert manifest.image.for_provider("docker", "fallback") == "fallback"


def test_image_hints_win_over_the_name() -> None:
    manifest = Manifest.parse({"image": {"name": "python:3.12", "hints": {"modal": "debian_slim"}}})
    assert manifest.image.for_provider("modal") == "debian_slim"
    assert manifest.image.for_provider("docker") == "python:3.12"
    assert Manifest.parse({"image": "alpine"}).image.name == "alpine"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("512Mi", 512 * 2**20), ("2G", 2 * 10**9), ("1GiB", 2**30), ("100", 100), (4096, 4096)],
)
def test_memory_sizes(value: object, expected: int) -> None:
    assert Manifest.parse({"resources": {"memory": value}}).resources.memory == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"resources": {"memory": "lots"}}, r"resources\.memory: .*'lots' is not a memory size"),
        ({"resources": {"cpu": -1}}, r"resources\.cpu: .*greater than 0"),
        ({"env": {"1BAD": "x"}}, r"env: .*'1BAD' is not valid"),
        ({"workdir": "../up"}, r"workdir: .*without '\.\.'"),
        ({"workdir": "/abs"}, r"workdir: .*must be relative"),
        ({"netwrk": True}, r"netwrk: Extra inputs are not permitted"),
    ],
)
def test_validation_names_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Manifest.parse(data)


def test_json_and_toml_round_trip() -> None:
    manifest = Manifest.parse(
        {
            "image": {"name": "python:3.12-slim", "hints": {"e2b": "base", "my provider": "x"}},
            "resources": {"cpu": 1.5, "memory": "1Gi", "pids": 256},
            "env": {"A": 'quote " and \\ backslash', "B": "line\nbreak"},
            "workdir": "src",
            "network": True,
            "user": "1000",
        }
    )
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert Manifest.from_toml(manifest.to_toml()) == manifest
    assert Manifest.from_toml(Manifest().to_toml()) == Manifest()


def test_bad_toml_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="not valid TOML"):
        Manifest.from_toml("network = ")


def test_merged_validates_again() -> None:
    manifest = Manifest().merged(network=True)
    assert manifest.network is True
    with pytest.raises(ManifestError):
        manifest.merged(workdir="../x")


def test_image_none_means_the_provider_default() -> None:
    assert Manifest.parse({"image": None}).image.for_provider("docker", "dflt") == "dflt"
