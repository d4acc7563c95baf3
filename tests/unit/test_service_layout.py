"""Every service has the same rooms under the same names (issue 21; STYLE.md, "The shape of a
service"): a reader who knows one service knows where to look in the others. These tests read
the source; they fail when a room is missing, a route is a closure, SQL leaves the store, the
logic imports I/O, or something other than the composition root wires the doors together."""

import ast
import functools
import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "routing", "notify", "audit", "console")
BUS_SERVICES = ("intake", "routing", "notify", "audit")

DOORS = {"__main__", "bootstrap", "http", "handlers", "cli"}
# Rooms beside the common ones, named for what they do: adapters (I/O) and service-layer
# modules that call the store. Everything else in a service is its logic.
EXTRA_ROOMS: dict[str, set[str]] = {
    "intake": {"retention"},
    "routing": {
        "sops",
        "cases",
        "referrals",
        "deadlines",
        "oncall",
        "proposals",
        "simulations",
        "picks",
    },
    "notify": {"worker", "channels", "partners"},
    "audit": {
        "writer",
        "checkpoints",
        "verification",
        "export",
        "replay",
        "keys",
        "tree",  # the switch from the hash chain to the Merkle tree
        "copies",  # the signed heads kept elsewhere (the stream, witnesses, files)
        "cosigning",  # asking the witnesses to cosign
        "witness_server",  # the door of `rujuk audit witness`, a process of its own
    },
    "console": {"upstream"},
}
IO_LIBRARIES = {
    "faststream", "nats", "asyncpg", "httpx", "aiohttp", "fastapi", "starlette", "uvicorn",
}  # fmt: skip
RUNTIME_ALLOWED_IN_LOGIC = {"rujuk_runtime.logs"}
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b", re.S)
DATABASE_CALLS = {"execute", "executemany", "fetch", "fetchrow", "fetchval", "cursor", "prepare"}
ROUTE_DECORATORS = {"get", "post", "put", "patch", "delete", "api_route", "route"}


def package(service: str) -> Path:
    return ROOT / "services" / service / "src" / service


@functools.cache  # parsed once per session: some fifty tests read the same sources
def modules(service: str) -> dict[str, ast.Module]:
    """Every module of the service by dotted name below the package (``sop.model``)."""
    found = {}
    for path in sorted(package(service).rglob("*.py")):
        name = ".".join(path.relative_to(package(service)).with_suffix("").parts)
        name = name.removesuffix(".__init__") if name != "__init__" else "__init__"
        found[name] = ast.parse(path.read_text(), filename=str(path))
    return found


def room(name: str) -> str:
    return name.split(".")[0]


def logic_modules(service: str) -> list[str]:
    others = DOORS | {"store", "settings", "__init__"} | EXTRA_ROOMS[service]
    return [name for name in modules(service) if room(name) not in others]


def imports(tree: ast.AST, *, top_level_only: bool = False) -> set[str]:
    nodes = tree.body if top_level_only and isinstance(tree, ast.Module) else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_common_rooms(service: str) -> None:
    rooms = {"__main__", "bootstrap", "http", "store", "settings"}
    if service in BUS_SERVICES:
        rooms.add("handlers")
    assert rooms <= set(modules(service)), f"{service} lacks {rooms - set(modules(service))}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_process_starts_from_the_composition_root(service: str) -> None:
    assert f"{service}.bootstrap.create_app" in imports(modules(service)["__main__"])


@pytest.mark.parametrize("service", SERVICES)
def test_only_the_composition_root_imports_the_doors(service: str) -> None:
    wiring = {f"{service}.{door}" for door in ("bootstrap", "http", "handlers")}
    for name, tree in modules(service).items():
        if name in ("bootstrap", "__main__"):
            continue
        wired = {i for i in imports(tree) if room(i.removeprefix(f"{service}.")) != name}
        assert not {i for i in wired if any(i == w or i.startswith(w + ".") for w in wiring)}, (
            f"{service}.{name} imports a door; only bootstrap wires them"
        )


@pytest.mark.parametrize("service", SERVICES)
def test_routes_are_module_level_functions(service: str) -> None:
    for name, tree in modules(service).items():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(function):
                if inner is function or not isinstance(
                    inner, ast.FunctionDef | ast.AsyncFunctionDef
                ):
                    continue
                for decorator in inner.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    assert not (
                        isinstance(target, ast.Attribute) and target.attr in ROUTE_DECORATORS
                    ), f"{service}.{name}: route {inner.name} is a closure in {function.name}"


@pytest.mark.parametrize("service", SERVICES)
def test_sql_is_written_in_the_store_only(service: str) -> None:
    for name, tree in modules(service).items():
        if room(name) == "store":
            continue
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
            ):
                assert not SQL.search(node.value), f"{service}.{name} writes SQL: {node.value!r}"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in DATABASE_CALLS
                and node.args
                and isinstance(node.args[0], ast.Constant | ast.JoinedStr | ast.BinOp)
                and not (
                    isinstance(node.args[0], ast.Constant)
                    and not isinstance(node.args[0].value, str)
                )
            ):
                pytest.fail(f"{service}.{name}:{node.lineno} sends SQL to the database")


@pytest.mark.parametrize(
    ("service", "module"), [(s, m) for s in SERVICES for m in logic_modules(s)]
)
def test_the_logic_imports_no_io(service: str, module: str) -> None:
    imported = imports(modules(service)[module])
    io = {i for i in imported if i.split(".")[0] in IO_LIBRARIES}
    runtime = {
        i
        for i in imported
        if i.split(".")[0] == "rujuk_runtime"
        and not any(i == a or i.startswith(a + ".") for a in RUNTIME_ALLOWED_IN_LOGIC)
    }
    assert not (io | runtime), f"{service}.{module} (logic) imports {io | runtime}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_logic_loads_no_io_even_indirectly(service: str) -> None:
    """In a fresh interpreter, so that what the logic imports through others counts too."""
    names = [f"{service}.{module}" for module in logic_modules(service) if module != "__init__"]
    code = "".join(f"import {name}\n" for name in names) + (
        "import json, sys\nprint(json.dumps(sorted(sys.modules)))"
    )
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code])))
    assert not {name.split(".")[0] for name in loaded} & IO_LIBRARIES
    not_logic = DOORS | {"store"} | EXTRA_ROOMS[service]
    own = {name.removeprefix(f"{service}.") for name in loaded if name.startswith(f"{service}.")}
    assert not {room(name) for name in own} & not_logic, own


@pytest.mark.parametrize("service", SERVICES)
def test_no_module_imports_its_own_service_lazily(service: str) -> None:
    """A lazy import inside a function is how an import circle hides."""
    for name, tree in modules(service).items():
        if name == "cli":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lazy = {i for i in imports(node) if i.split(".")[0] == service}
                assert not lazy, f"{service}.{name}.{node.name} imports {lazy} lazily"


@pytest.mark.parametrize("service", SERVICES)
def test_the_modules_of_a_service_import_each_other_without_a_circle(service: str) -> None:
    found = modules(service)

    def own(name: str) -> set[str]:
        targets = set()
        for imported in imports(found[name]):
            dotted = imported.removeprefix(f"{service}.")
            if imported.startswith(f"{service}.") and dotted in found and dotted != name:
                targets.add(dotted)
        return targets

    graph = {name: own(name) for name in found}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"{service}: import circle {' -> '.join((*path, name))}"
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def sync_dependencies(dependant: Any, path: str) -> list[str]:
    found = []
    for sub in dependant.dependencies:
        call = sub.call
        target = call if inspect.isfunction(call) else getattr(call, "__call__", call)  # noqa: B004
        if not inspect.iscoroutinefunction(target):
            found.append(f"{path}: {getattr(call, '__name__', call)}")
        found += sync_dependencies(sub, path)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_no_dependency_of_a_route_runs_in_a_thread(service: str) -> None:
    """FastAPI runs a plain ``def`` dependency in its thread pool, on every request: it cost
    intake half its CPU per report once (the first app-state readers were plain functions)."""
    router = importlib.import_module(f"{service}.http").router
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    assert routes
    found = [item for route in routes for item in sync_dependencies(route.dependant, route.path)]
    assert not found, found
