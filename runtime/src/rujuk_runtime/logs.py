"""structlog JSON logging, one line per event, on stdout; stdlib loggers routed through it."""

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog

from rujuk_runtime.telemetry import current_ids, ids_of

# (case id, event id, traceparent) of the event the current work is about, see logging_about
_ABOUT: ContextVar[tuple[str | None, str, str | None] | None] = ContextVar(
    "rujuk_logging_about", default=None
)


@contextmanager
def logging_about(case_id: str | None, event_id: str, traceparent: str | None) -> Iterator[None]:
    """Log lines made inside carry the case, the event and its trace, as a handler's do: for
    work on several events at once (a batch handler, notify's settle), outside their spans.
    Only a line actually written pays for the ids (a processor adds them): a DEBUG line
    filtered out costs nothing here."""
    token = _ABOUT.set((case_id, event_id, traceparent))
    try:
        yield
    finally:
        _ABOUT.reset(token)


def _add_about(
    _: object, __: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    about = _ABOUT.get()
    if about is not None:
        case_id, event_id, traceparent = about
        event_dict.setdefault("case_id", case_id)
        event_dict.setdefault("event_id", event_id)
        for key, value in ids_of(traceparent).items():
            event_dict.setdefault(key, value)
    return event_dict


_SHARED_PROCESSORS: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _stamp_service(service: str) -> structlog.types.Processor:
    def stamp(
        _: object, __: str, event_dict: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return stamp


def _add_trace_ids(
    _: object, __: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    for key, value in current_ids().items():
        event_dict.setdefault(key, value)
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    structlog.configure(
        processors=[
            _add_about,  # before the bound context: the innermost `logging_about` wins
            *_SHARED_PROCESSORS,
            _stamp_service(service),
            _add_trace_ids,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[
                _add_about,
                *_SHARED_PROCESSORS,
                _stamp_service(service),
                _add_trace_ids,
                structlog.stdlib.add_logger_name,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric_level, logging.INFO))
    # uvicorn's access log would print every request line; we log what matters ourselves.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
