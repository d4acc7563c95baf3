"""Audit's rooms: the logic imports no I/O library and none of the doors or adapters."""

import ast
from pathlib import Path

import pytest

import audit

LOGIC = ["chain", "bundle", "signing", "report"]
IO_LIBRARIES = {"faststream", "asyncpg", "nats", "httpx", "fastapi", "starlette", "uvicorn"}
ROOMS_WITH_IO = {"store", "http", "handlers", "bootstrap", "writer", "checkpoints", "cli"}


def imports_of(module: str) -> set[str]:
    source = (Path(audit.__file__).parent / f"{module}.py").read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            if node.module == "audit":
                imported |= {f"audit.{alias.name}" for alias in node.names}
    return imported


@pytest.mark.parametrize("module", LOGIC)
def test_audit_logic_imports_no_io_library(module: str) -> None:
    imported = imports_of(module)
    assert not {name.split(".")[0] for name in imported} & IO_LIBRARIES
    assert not {name for name in imported if name.startswith("rujuk_runtime")}
    assert not imported & {f"audit.{room}" for room in ROOMS_WITH_IO}
