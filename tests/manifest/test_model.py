"""The contents fields of the manifest: validation names the field; JSON and TOML round trips."""

from __future__ import annotations

import base64

import pytest

from sandbank import ConfigurationError, Manifest, ManifestError
from sandbank.manifest.contents import INLINE_LIMIT
from sandbank.providers.local import LocalProvider

FULL = {
    "dirs": [
        {"path": "vendor", "host": "/srv/vendor", "mode": "0750"},
        {"path": "repo", "git": {"url": "https://example.invalid/r.git", "ref": "v1", "depth": 0}},
        {"path": "data", "url": "s3://bucket/prefix/"},
        {"path": "empty"},
    ],
    "files": [
        {"path": "a.txt", "text": 'quote " and \\ and\nnewline'},
        {"path": "bin/tool", "base64": base64.b64encode(bytes(range(256))).decode(), "mode": 493},
        {"path": "cfg.json", "host": "/etc/app/cfg.json"},
        {"path": "d.csv", "url": "https://example.invalid/d.csv", "mode": "644"},
    ],
    "setup": ["make", ["python3", "-m", "compileall", "."], {"run": "true", "timeout": 5}],
    "exclude": ["node_modules/", "/build", "*.pyc", "!keep.pyc"],
    "env": {"A": "1"},
}


def test_contents_round_trip_through_json_and_toml() -> None:
    manifest = Manifest.parse(FULL)
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert Manifest.from_toml(manifest.to_toml()) == manifest
    assert manifest.dirs[0].mode == 0o750 and manifest.files[3].mode == 0o644
    assert manifest.dirs[1].git is not None and manifest.dirs[1].git.depth == 0
    assert [c.run for c in manifest.setup][1] == ["python3", "-m", "compileall", "."]
    assert manifest.setup[2].timeout == 5
    assert manifest.files[1].inline == bytes(range(256))
    assert (
        Manifest.parse({"dirs": [{"path": "r", "git": "file:///x"}]}).dirs[0].git.url == "file:///x"
    )  # type: ignore[union-attr]


def test_references_are_all_the_manifest_holds() -> None:
    manifest = Manifest.parse(FULL)
    assert manifest.files[2].inline is None and manifest.files[3].inline is None
    assert "/etc/app/cfg.json" in manifest.to_json()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"files": [{"path": "../up", "text": ""}]},
            r"files\[0\]\.path: '\.\./up' leaves the workspace",
        ),
        (
            {"files": [{"path": "a", "text": ""}, {"path": "/abs", "text": ""}]},
            r"files\[1\]\.path: '/abs' is absolute",
        ),
        ({"files": [{"path": ".", "text": ""}]}, r"files\[0\]\.path: is the workspace root"),
        ({"dirs": [{"path": "x/../../y"}]}, r"dirs\[0\]\.path: .* leaves the workspace"),
        (
            {"files": [{"path": "a", "base64": "not base64!"}]},
            r"files\[0\]\.base64: is not valid base64",
        ),
        (
            {"files": [{"path": "a"}]},
            r"files\[0\]: give exactly one of text, base64, host, url \(got none\)",
        ),
        ({"files": [{"path": "a", "text": "", "host": "/x"}]}, r"files\[0\]: .*got text and host"),
        (
            {"dirs": [{"path": "a", "host": "/x", "git": "file:///r"}]},
            r"dirs\[0\]: give at most one",
        ),
        (
            {"files": [{"path": "a", "host": "rel/path"}]},
            r"files\[0\]\.host: 'rel/path' is relative",
        ),
        (
            {"files": [{"path": "a", "url": "bucket/key"}]},
            r"files\[0\]\.url: 'bucket/key' is not a URL",
        ),
        (
            {"files": [{"path": "a", "text": "", "mode": "rwx"}]},
            r"files\[0\]\.mode: 'rwx' is not a permission mode",
        ),
        (
            {"files": [{"path": "a", "text": "", "mode": 0o10000}]},
            r"files\[0\]\.mode: 10000 is not a permission mode",
        ),
        (
            {"dirs": [{"path": "r", "git": {"url": "--upload-pack=evil"}}]},
            r"dirs\[0\]\.git\.url: .*not a git URL",
        ),
        (
            {"dirs": [{"path": "r", "git": {"url": "file:///r", "ref": "-x"}}]},
            r"dirs\[0\]\.git\.ref: .*not a git URL or ref",
        ),
        (
            {"dirs": [{"path": "r", "git": {"url": "file:///r", "depth": -1}}]},
            r"dirs\[0\]\.git\.depth: .*greater than or equal to 0",
        ),
        (
            {"dirs": [{"path": "a"}], "files": [{"path": "a", "text": ""}]},
            r"files\[0\]\.path: 'a' is also dirs\[0\]\.path",
        ),
        ({"setup": ["  "]}, r"setup\[0\]\.run: is empty"),
        ({"setup": [{"run": "x", "timeout": 0}]}, r"setup\[0\]\.timeout: .*greater than 0"),
        ({"setup": [{"cmd": "x"}]}, r"setup\[0\]\.run: Field required"),
        ({"exclude": ["ok/", "bad\nline"]}, r"exclude\[1\]: .* holds a NUL or newline"),
        ({"exclude": ["ok/", "!"]}, r"exclude\[1\]: .!. is not a gitignore pattern"),
    ],
)
def test_validation_names_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Manifest.parse(data)


def test_inline_content_is_capped_with_a_pointer_to_the_alternatives() -> None:
    half = "x" * (INLINE_LIMIT // 2 + 1)
    with pytest.raises(
        ManifestError, match=r"files\[1\]: inline content passes .* host file or at a URL"
    ):
        Manifest.parse({"files": [{"path": "a", "text": half}, {"path": "b", "text": half}]})


def test_provider_create_refuses_contents_it_would_not_apply(tmp_path: object) -> None:
    provider = LocalProvider(state_dir=f"{tmp_path}/state")
    with pytest.raises(ConfigurationError, match=r"use sandbank\.create_sandbox"):
        provider.validate_manifest({"network": True, "setup": ["true"]})
    assert provider.validate_manifest({"network": True, "exclude": ["x/"]}).exclude == ["x/"]
