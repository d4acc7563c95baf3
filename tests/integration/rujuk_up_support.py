"""Running `rujuk up` as a person does, in a test: a subprocess in a folder of its own, with
only what a fresh shell has, on free ports (tests run beside other stacks: 8081 may be taken)."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rujuk.ports import DEFAULT_PORTS, port_variable
from rujuk_runtime.embedded import free_port

RUJUK = [str(Path(sys.executable).parent / "rujuk")]  # the command a person runs


def fresh_shell_env() -> dict[str, str]:
    """The test session's environment without its servers (NATS_URL, DATABASE_URL) and
    without any port variable."""
    dropped = {"NATS_URL", "DATABASE_URL", *(port_variable(role) for role in DEFAULT_PORTS)}
    return {k: v for k, v in os.environ.items() if k not in dropped}


def free_ports_env() -> dict[str, str]:
    """Every port variable `rujuk up` reads, each set to a different free port: the stack's
    defaults overridden, as a person may in their shell."""
    ports: set[int] = set()
    while len(ports) < len(DEFAULT_PORTS):
        ports.add(free_port())
    return {
        port_variable(role): str(port)
        for role, port in zip(DEFAULT_PORTS, sorted(ports), strict=True)
    }


@dataclass
class RunningUp:
    process: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        return self.output.read_text()

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Ctrl-C, as a person stops it; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(60)


def _ctrl_c_as_in_a_terminal() -> None:
    """Ctrl-C as a person's terminal delivers it: a test session started in the background
    (`make test &`) ignores SIGINT, and its children would inherit that and never stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_up(cwd: Path, env: dict[str, str], output: Path, timeout: float = 120) -> RunningUp:
    """`rujuk up` in ``cwd``, until it says it runs."""
    with output.open("w") as sink:
        process = subprocess.Popen([*RUJUK, "up"], cwd=cwd, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=_ctrl_c_as_in_a_terminal)  # fmt: skip
    running = RunningUp(process, output)
    try:
        deadline = time.monotonic() + timeout
        while "Ctrl-C" not in running.text():
            assert process.poll() is None, running.text()
            assert time.monotonic() < deadline, running.text()
            time.sleep(0.2)
    except BaseException:
        running.stop(signal.SIGTERM)
        raise
    return running
