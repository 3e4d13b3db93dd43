"""Ports on the built-in providers: loopback only, refused without network, kept on attach."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbank.conformance.ports import _free_port, _serve_and_fetch
from sandbank.errors import ConfigurationError, NotSupported
from sandbank.providers.local import LocalProvider


async def test_local_ports_need_network(tmp_path: Path, bwrap: str) -> None:
    provider = LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap)
    with pytest.raises(ConfigurationError, match="need network=True on the local provider"):
        await provider.create({"ports": [8000]})
    assert await provider.list() == []


async def test_local_port_url_is_the_host_port(tmp_path: Path, bwrap: str) -> None:
    provider = LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap)
    port = _free_port()
    async with provider.sandbox({"ports": [port], "network": True}) as box:
        assert await box.port_url(port) == f"http://127.0.0.1:{port}"
        again = await LocalProvider(state_dir=tmp_path / "state", bwrap=bwrap).attach(box.id)
        assert again.manifest.ports == [port]
        with pytest.raises(ConfigurationError, match="is not published"):
            await box.port_url(1)
        with pytest.raises(ConfigurationError, match="not published"):
            await box.port_url("8000")  # type: ignore[arg-type]


@pytest.mark.docker
async def test_docker_ports_on_loopback_across_restart(docker_image: str) -> None:
    import docker

    from sandbank.providers.docker import DockerProvider

    provider = DockerProvider(image=docker_image)
    with pytest.raises(ConfigurationError, match="need network=True on docker"):
        await provider.create({"ports": [8000]})
    raw = docker.from_env()
    try:
        async with provider.sandbox({"ports": [8000, 9000], "network": True}) as box:
            ports = raw.api.inspect_container(box.container_id)["HostConfig"]["PortBindings"]
            assert {k: [b["HostIp"] for b in v] for k, v in ports.items()} == {
                "8000/tcp": ["127.0.0.1"], "9000/tcp": ["127.0.0.1"],
            }  # fmt: skip
            await box.write_file("a.txt", "first")
            assert await _serve_and_fetch(box, 8000, "a.txt") == b"first"
            await box.stop()
            with pytest.raises(Exception, match="not published now"):
                await box.port_url(8000)
            await box.resume()
            attached = await DockerProvider(image=docker_image).attach(box.id)
            assert await _serve_and_fetch(attached, 9000, "a.txt") == b"first"
    finally:
        raw.close()
        await provider.aclose()


async def test_validate_manifest_refuses_ports_without_capability(tmp_path: Path) -> None:
    from sandbank.providers.base import Capabilities

    class NoPorts(LocalProvider):
        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(network_policy=True)

    with pytest.raises(NotSupported, match="ports"):
        NoPorts(state_dir=tmp_path).validate_manifest({"ports": [80], "network": True})
