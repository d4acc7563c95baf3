"""The operator's report form, built from intake's report model so the two cannot drift;
reading a submitted form into the API's JSON body; placing the API's 422 problems next to
the inputs they name."""

import math
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo

import annotated_types
from pydantic import BaseModel

from intake.report import Report

Kind = Literal["text", "textarea", "select", "checkboxes", "checkbox", "number", "date", "datetime"]
LONG_TEXT = 300  # free text at least this long gets a textarea

# Enumerations by class name -> the catalogue's kind (``enum.<kind>.<value>``).
ENUM_KINDS = {
    "ReportChannel": "channel",
    "ViolenceType": "violence_type",
    "Sex": "sex",
    "Relationship": "relationship",
    "ConsentGiver": "consent_giver",
}


@dataclass(frozen=True)
class FormField:
    """One input: ``path`` is the API's field path and the input's name."""

    path: str
    kind: Kind
    required: bool
    enum_kind: str | None = None
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: str | None = None

    @property
    def group(self) -> str:
        head, dot, _ = self.path.partition(".")
        return head if dot else "case"

    @property
    def input_id(self) -> str:
        return "f-" + self.path.replace(".", "-").replace("_", "-")


@dataclass(frozen=True)
class FormGroup:
    name: str
    fields: tuple[FormField, ...]


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _choice(path: str, kind: Kind, required: bool, enum: type[StrEnum]) -> FormField:
    return FormField(path, kind, required, ENUM_KINDS[enum.__name__], tuple(map(str, enum)))


def _field_for(path: str, annotation: Any, required: bool, metadata: list[Any]) -> FormField:
    limits: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.MaxLen):
            limits["max_length"] = item.max_length
        elif isinstance(item, annotated_types.Ge):
            limits["minimum"] = item.ge
        elif isinstance(item, annotated_types.Le):
            limits["maximum"] = item.le
    if get_origin(annotation) is list:
        (item_type,) = get_args(annotation)
        return _choice(path, "checkboxes", required, item_type)
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return _choice(path, "select", required, annotation)
    if annotation is bool:
        return FormField(path, "checkbox", False)
    if annotation is int:
        return FormField(path, "number", required, step="1", **limits)
    if annotation is float:
        return FormField(path, "number", required, step="any", **limits)
    if annotation is date:
        return FormField(path, "date", required)
    if annotation is datetime:
        return FormField(path, "datetime", required)
    if annotation is str:
        long = limits.get("max_length", 0) >= LONG_TEXT
        return FormField(path, "textarea" if long else "text", required, **limits)
    raise TypeError(f"the report form has no input for {path}: {annotation!r}")


def fields_of(model: type[BaseModel], prefix: str = "") -> list[FormField]:
    """Every leaf field of the model, depth first, in the model's order."""
    found: list[FormField] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation, optional = _unwrap_optional(info.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += fields_of(annotation, f"{path}.")
            continue
        required = info.is_required() and not optional
        found.append(_field_for(path, annotation, required, list(info.metadata)))
    return found


REPORT_FIELDS: tuple[FormField, ...] = tuple(fields_of(Report))
FIELDS_BY_PATH: dict[str, FormField] = {f.path: f for f in REPORT_FIELDS}


def groups() -> list[FormGroup]:
    order: dict[str, list[FormField]] = {}
    for each in REPORT_FIELDS:
        order.setdefault(each.group, []).append(each)
    return [FormGroup(name, tuple(fields)) for name, fields in order.items()]


FormValues = dict[str, str | list[str]]


def values_from(form: Iterable[tuple[str, str]]) -> FormValues:
    """The submitted values of the report's inputs (others are ignored), stripped."""
    values: FormValues = {}
    for name, raw in form:
        spec = FIELDS_BY_PATH.get(name)
        if spec is None:
            continue
        if spec.kind == "checkboxes":
            listed = values.setdefault(name, [])
            assert isinstance(listed, list)
            listed.append(raw.strip())
        else:
            values[name] = raw.strip()
    return values


def _number(text: str, step: str | None) -> int | float | str:
    """The number typed; anything else (NaN and infinities included, which JSON cannot carry)
    as typed, for intake to say what is wrong with it."""
    try:
        number = int(text) if step == "1" else float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _local_time(text: str, zone: ZoneInfo) -> str:
    """A ``datetime-local`` value is wall-clock time where the operator is."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.isoformat()


def report_body(values: Mapping[str, str | list[str]], zone: ZoneInfo) -> dict[str, Any]:
    """The JSON body for ``POST /v1/reports``: empty inputs are left out, so that intake's
    defaults and its "field required" messages apply as they would to any client."""
    # Every section is sent, even empty, so that intake names the missing field inside it
    # ("reporter.relationship") rather than the whole section.
    body: dict[str, Any] = {g.name: {} for g in groups() if g.name != "case"}
    for spec in REPORT_FIELDS:
        raw = values.get(spec.path)
        value: Any
        if spec.kind == "checkbox":
            value = raw is not None and raw != ""
        elif spec.kind == "checkboxes":
            value = [v for v in raw if v] if isinstance(raw, list) else []
            if not value:
                continue
        elif not raw or not isinstance(raw, str):
            continue
        elif spec.kind == "number":
            value = _number(raw, spec.step)
        elif spec.kind == "datetime":
            value = _local_time(raw, zone)
        else:
            value = raw
        *parents, leaf = spec.path.split(".")
        target = body
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return body


@dataclass
class PlacedProblems:
    """Intake's problems, each next to the input (or fieldset) it names; the rest on top."""

    by_path: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.by_path or self.general)


_INDEX = re.compile(r"\.\d+(?=\.|$)")
_MENTIONED_PATH = re.compile(r"[a-z_]+(?:\.[a-z_]+)+")


def _known_path(field_path: str) -> str | None:
    path = _INDEX.sub("", field_path)  # incident.violence_types.0 -> incident.violence_types
    group_names = {g.name for g in groups()}
    while path:
        if path in FIELDS_BY_PATH or path in group_names:
            return path
        path = path.rpartition(".")[0]
    return None


def place_problems(problems: Sequence[Mapping[str, Any]]) -> PlacedProblems:
    """``[{"field": "victim.nik", "problem": ...}]`` -> next to ``victim.nik``. A problem of
    the whole report that names a field in its text goes next to that field."""
    placed = PlacedProblems()
    for problem in problems:
        text = str(problem.get("problem", ""))
        path = _known_path(str(problem.get("field", "")))
        if path is None:
            named = [p for p in _MENTIONED_PATH.findall(text) if p in FIELDS_BY_PATH]
            path = named[0] if named else None
        if path is None:
            placed.general.append(text)
        else:
            placed.by_path.setdefault(path, []).append(text)
    return placed
