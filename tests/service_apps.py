"""Each service's app built as its process builds it (``python -m <service>``), without starting
it: for tests that enumerate what a service declares (its routes, its durable consumers)."""

import contextlib
import importlib
import os
from collections.abc import Iterator

from fastapi import FastAPI
from pydantic_settings import BaseSettings

from rujuk.stack import SERVICES, Stack
from rujuk_runtime.service import ServiceRuntime


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build_app(name: str) -> FastAPI:
    """What ``python -m <name>`` serves: ``create_app(<its settings>())`` from its __main__."""
    main = importlib.import_module(f"{name}.__main__")
    [settings] = [
        value
        for value in vars(main).values()
        if isinstance(value, type) and issubclass(value, BaseSettings) and value is not BaseSettings
    ]
    app = main.create_app(settings())
    assert isinstance(app, FastAPI)
    return app


def service_apps(stack: Stack) -> dict[str, FastAPI]:
    """Every service's FastAPI app, configured as the stack configures its process."""
    apps = {}
    for name in SERVICES:
        with environment(stack.service_env(name, 0)):
            apps[name] = build_app(name)
    return apps


def runtime_of(app: FastAPI) -> ServiceRuntime | None:
    """The bus side of a service (None for a service with HTTP only)."""
    notify = getattr(app.state, "notify", None)
    runtime = getattr(app.state, "runtime", None) or getattr(notify, "runtime", None)
    assert runtime is None or isinstance(runtime, ServiceRuntime)
    return runtime


def service_runtimes(stack: Stack) -> dict[str, ServiceRuntime]:
    """Every service's runtime: its durable consumers and handlers, as it declares them."""
    runtimes = {name: runtime_of(app) for name, app in service_apps(stack).items()}
    return {name: runtime for name, runtime in runtimes.items() if runtime is not None}
