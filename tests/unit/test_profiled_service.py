"""A service run with RUJUK_PROFILE_DIR (benches only) leaves its cProfile profile behind."""

import os
import pstats
import signal
from pathlib import Path

import pytest

from rujuk_runtime.service import _profiled
from rujuk_runtime.settings import ServiceSettings


class ExampleSettings(ServiceSettings):
    pass


def busy_work() -> int:
    return sum(n * n for n in range(10_000))


def test_a_profiled_run_writes_the_service_profile_named_after_it(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT)
    with _profiled(ExampleSettings(profile_dir=str(tmp_path / "profiles"))):
        busy_work()
    written = tmp_path / "profiles" / f"example-{os.getpid()}.prof"
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C works again afterwards
    functions = {name for _, _, name in pstats.Stats(str(written)).stats}  # type: ignore[attr-defined]
    assert "busy_work" in functions


def test_without_the_setting_nothing_is_profiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUJUK_PROFILE_DIR", raising=False)
    with _profiled(ExampleSettings()):
        busy_work()
    assert list(tmp_path.rglob("*.prof")) == []
