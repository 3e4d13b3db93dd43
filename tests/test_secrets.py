"""Secret references: validation, resolution on this process, redaction of output."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sandbank import Manifest
from sandbank._result import ExecResult
from sandbank.errors import ManifestError, SecretUnavailable
from sandbank.secrets import MAX_SECRET_BYTES, Redactor, exec_environment, resolve_secrets


def test_manifest_accepts_references_and_round_trips() -> None:
    data = {"TOKEN": "env:HOST_TOKEN", "KEY": "file:/run/key", "OBJ": "s3://bucket/key"}
    manifest = Manifest.parse({"secrets": data})
    assert manifest.secrets == data
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert Manifest.from_toml(manifest.to_toml()) == manifest


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"TOKEN": "hunter2"}, "secrets: .*secret 'TOKEN' is not a secret reference"),
        ({"1X": "env:A"}, "secret name '1X' is not a valid"),
        ({"T": "env:"}, "must name a variable after 'env:'"),
        ({"T": "env:1A"}, "must name a variable"),
        ({"T": "file:relative/path"}, "must give an absolute path"),
        ({"T": "file:/a\x00b"}, "NUL byte"),
    ],
)
def test_bad_references_name_the_field(secrets: dict[str, str], message: str) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        Manifest.parse({"secrets": secrets})
    assert "hunter2" not in str(info.value)  # a value pasted by mistake is not echoed


def test_a_name_in_env_and_secrets_is_refused() -> None:
    with pytest.raises(ManifestError, match="'A' in both env and secrets"):
        Manifest.parse({"env": {"A": "1"}, "secrets": {"A": "env:B"}})


def test_resolves_env_file_and_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_TEST_TOKEN", "tok-1")
    (tmp_path / "key").write_text("key-2\n")
    (tmp_path / "obj").write_bytes(b"obj-3\r\n")
    (tmp_path / "two").write_text("line\n\n")
    refs = {
        "A": "env:SB_TEST_TOKEN",
        "B": f"file:{tmp_path}/key",
        "C": f"file://{tmp_path}/obj",
        "D": f"file:{tmp_path}/two",
    }
    assert resolve_secrets(refs) == {"A": "tok-1", "B": "key-2", "C": "obj-3", "D": "line\n"}


def test_memory_url(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    with fsspec.open("memory://sandbank-test/secret", "wb") as f:
        f.write(b"from-memory")
    assert resolve_secrets({"M": "memory://sandbank-test/secret"}) == {"M": "from-memory"}


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("env:SB_TEST_UNSET_VARIABLE", "is not set"),
        ("file:/nonexistent/sandbank/secret", "No such file"),
        ("memory://sandbank-test/missing", "cannot be read"),
    ],
)
def test_missing_secret_names_the_secret(reference: str, reason: str) -> None:
    with pytest.raises(SecretUnavailable, match=f"secret 'API_KEY' .*{reason}") as info:
        resolve_secrets({"API_KEY": reference})
    assert info.value.name == "API_KEY"
    assert not info.value.retryable


def test_unusable_values_are_refused_without_echoing_them(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    (tmp_path / "nul").write_bytes(b"ab\x00cd-value")
    (tmp_path / "bin").write_bytes(b"\xff\xfe-value")
    for name, reason in [("big", "larger than"), ("nul", "NUL"), ("bin", "not UTF-8")]:
        with pytest.raises(SecretUnavailable, match=reason) as info:
            resolve_secrets({"S": f"file:{tmp_path}/{name}"})
        assert "-value" not in str(info.value)


def test_exec_environment_layers_and_skips_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_TEST_TOKEN", "tok")
    env, redactor = exec_environment(
        {"MODE": "dev"}, {"TOKEN": "env:SB_TEST_TOKEN", "GONE": "env:SB_TEST_UNSET"}, {"GONE": "x"}
    )
    assert env == {"MODE": "dev", "TOKEN": "tok", "GONE": "x"}
    assert redactor.redact(b"tok x dev") == b"[secret TOKEN] x dev"


def test_redact_whole_buffers() -> None:
    redactor = Redactor({"A": "abc", "LONG": "abcdef", "EMPTY": ""})
    assert redactor.redact(b"1abcdef2abc3") == b"1[secret LONG]2[secret A]3"
    assert redactor.redact(b"no secret") == b"no secret"
    assert redactor.redact(b"xx ab", cut=True) == b"xx "  # a cut-off start is dropped
    assert redactor.redact(b"xx ab") == b"xx ab"
    assert not Redactor({}) and not Redactor({"E": ""})
    result = ExecResult(0, stdout=b"abc", stderr=b"e abcdef")
    assert redactor.redact_result(result) == ExecResult(
        0, stdout=b"[secret A]", stderr=b"e [secret LONG]"
    )


@pytest.mark.parametrize("seed", range(30))
def test_stream_redaction_across_any_chunk_boundaries(seed: int) -> None:
    rng = random.Random(seed)
    values = {"A": "s3cr3t-value", "B": "abcabd", "C": "xyz", "D": "zab"}
    redactor = Redactor(values)
    alphabet = [*values.values(), "ab", "abc", "x", "z", "-", "s3cr", "\n"]
    pieces = [rng.choice(alphabet) for _ in range(60)]
    data = "".join(pieces).encode()
    stream = redactor.stream()
    out = b""
    pos = 0
    while pos < len(data):
        size = rng.randint(1, 7)
        out += stream.feed(data[pos : pos + size])
        pos += size
    out += stream.flush()
    assert out == redactor.redact(data)
    for value in values.values():
        assert value.encode() not in out


def test_exec_request_repr_hides_the_environment() -> None:
    from sandbank.providers.base import ExecRequest

    request = ExecRequest(
        argv=["true"], cwd=".", env={"TOKEN": "hunter2"}, stdin=None, timeout=None
    )
    assert "hunter2" not in repr(request)
