"""Each service starts on real servers, answers its health check, and stops cleanly on SIGTERM."""

import signal
import time
from pathlib import Path

import httpx
import pytest

from rujuk.stack import SERVICES, Stack
from rujuk_runtime.nats_auth import NatsKeyring

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_healthy_then_stops_cleanly_on_sigterm(
    name: str,
    nats_url: str,
    nats_keyring: NatsKeyring | None,
    server_database_url: str,
    tmp_path: Path,
) -> None:
    stack = Stack(
        tmp_path,
        external_nats_url=nats_url,
        nats_keyring=nats_keyring,
        external_database_url=server_database_url,
    )
    service = stack.start_service(name)
    try:
        stack.wait_healthy(30, (name,))
        health = httpx.get(f"{service.url}/healthz", timeout=2).json()
        assert health["ok"] is True
        if name != "console":  # the console holds no bus connection of its own
            assert health["nats"] is True
        assert health["postgres"] is True
        assert service.process is not None
        started = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        code = service.process.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        stack.stop_service(name, kill=True)
    assert took < 5, f"{name} took {took:.1f}s to stop"
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a graceful exit
    log = service.log_file.read_text()
    assert '"event": "service stopped"' in log
    assert "Traceback" not in log
