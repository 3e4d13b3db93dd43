"""Conformance tests for ports: a server started in the sandbox answers at ``port_url``, and
a port outside the manifest, or a provider without the capability, is refused."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import urllib.error
import urllib.request
import uuid

import pytest

from sandbank.errors import ConfigurationError, NotSupported
from sandbank.providers.base import Sandbox

from .fixtures import ConformanceFixtures, SandboxFactory

__all__ = ["PortTests"]

capability = pytest.mark.sandbank_capability

# python3's http.server where there is one, else busybox httpd; both serve the cwd.
_SERVER = (
    "if command -v python3 >/dev/null; then exec python3 -m http.server {port} --bind 0.0.0.0; "
    "else exec busybox httpd -f -p {port}; fi"
)


def _free_port() -> int:
    """A TCP port free on this host (a provider may share the host's network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, OSError):
        return None


async def _serve_and_fetch(box: Sandbox, port: int, path: str, wait: float = 60) -> bytes | None:
    """Start a server on ``port`` in ``box``; what ``port_url(port)/path`` answers, or None."""
    server = asyncio.ensure_future(box.exec(_SERVER.format(port=port), timeout=wait + 30))
    try:
        url = await box.port_url(port)
        assert url.startswith(("http://", "https://")), url
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not server.done():
            body = await asyncio.to_thread(_get, f"{url.rstrip('/')}/{path}")
            if body is not None:
                return body
            await asyncio.sleep(0.2)
        if server.done():
            result = server.result()
            raise AssertionError(f"the server exited {result.exit_code}: {result.stderr[-500:]!r}")
        return None
    finally:
        server.cancel()
        with contextlib.suppress(BaseException):
            await server


class PortTests(ConformanceFixtures):
    """ports: servers in the sandbox are reachable at ``port_url``; the rest is refused."""

    @capability("ports")
    async def test_port_url_reaches_server(self, make_sandbox: SandboxFactory) -> None:
        """A server started in the sandbox on a port of manifest.ports answers at
        port_url(port)."""
        port = _free_port()
        box = await make_sandbox(ports=[port], network=True)
        token = f"served-{uuid.uuid4().hex}"
        await box.write_file("page.txt", token)
        assert await _serve_and_fetch(box, port, "page.txt") == token.encode()

    @capability("ports")
    async def test_port_url_of_unlisted_port_refused(self, make_sandbox: SandboxFactory) -> None:
        """port_url of a port that is not in manifest.ports raises ConfigurationError."""
        port = _free_port()
        box = await make_sandbox(ports=[port], network=True)
        with pytest.raises(ConfigurationError, match=r"manifest\.ports"):
            await box.port_url(port + 1 if port < 65535 else port - 1)

    @capability("ports", declared=False)
    async def test_ports_not_supported(
        self, sandbox: Sandbox, make_sandbox: SandboxFactory
    ) -> None:
        """Without the ports capability, port_url raises NotSupported and a manifest with
        ports is refused."""
        with pytest.raises(NotSupported):
            await sandbox.port_url(8000)
        with pytest.raises(NotSupported):
            await make_sandbox(ports=[8000], network=True)
