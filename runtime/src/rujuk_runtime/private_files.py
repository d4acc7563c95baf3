"""Files that hold a secret (a seed, a password, a key, a URL with credentials in it)."""

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write a secret: the file is 0600 from its creation, never readable by others even for a
    moment, and replaced whole (no half-written secret after a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    partial.replace(path)
