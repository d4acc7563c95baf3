"""The district SOP as data: a versioned YAML document, validated on load with line numbers.

An SOP names its partner ``directory``, a ``consent`` policy and ordered ``rules``. A rule's
``when`` holds conditions on the triage facts (all must hold; a list inside one condition
means "any of"), and its ``refer`` items say which service goes to which agency, how urgently,
within how many minutes the agency must acknowledge, and who to escalate to.

Choices worth knowing when writing an SOP:
- Escalation always ends at the coordinator: ``decide`` appends it when ``escalate_to`` leaves
  it out, so a chain may be empty in the YAML. The coordinator may appear only last.
- ``pick: by_kecamatan`` chooses the first directory agency that offers the service and lists
  the case's kecamatan by name; agencies serving ``all`` never win a pick, the ``fallback`` does.
- Consent is policy, not rule: a service in ``consent.requires_consent`` reaches an agency
  only when the named consent flag is true, unless ``consent.mandatory_reporting`` covers the
  victim's age group and that service, and then the referral records the legal basis.
- Every SOP must give every case a case manager: a rule with an empty ``when`` that refers
  ``case_management``.
"""

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rujuk_contracts.events import DeliveryChannel, Priority, Service
from rujuk_contracts.subjects import check_agency_id
from rujuk_contracts.triage import AgeGroup, ConsentGiver, Sex, ViolenceType

ConsentFlag = Literal["share_with_health", "share_with_police", "share_with_shelter"]
Location = tuple[str | int, ...]

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(
    r"^(?P<first>mon|tue|wed|thu|fri|sat|sun)-(?P<last>mon|tue|wed|thu|fri|sat|sun) "
    r"(?P<opens>\d\d:\d\d)-(?P<closes>\d\d:\d\d)$"
)
ALWAYS_OPEN = "24/7"
MAX_ACKNOWLEDGE_MINUTES = 7 * 24 * 60


class _SopModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_M = TypeVar("_M", bound=_SopModel)


@dataclass(frozen=True)
class WorkingHours:
    """Opening days and hours of an agency that is not open around the clock."""

    days: tuple[str, ...]
    opens: time
    closes: time


def parse_hours(text: str) -> WorkingHours | None:
    """``None`` for ``24/7``; else the days and hours of ``mon-fri 07:30-15:30``."""
    if text == ALWAYS_OPEN:
        return None
    match = _HOURS.fullmatch(text)
    if match is None:
        raise ValueError(f"must be '24/7' or like 'mon-fri 07:30-15:30', got {text!r}")
    first, last = WEEKDAYS.index(match["first"]), WEEKDAYS.index(match["last"])
    if first > last:
        raise ValueError(f"hours {text!r}: the day range runs backwards")
    try:
        opens, closes = time.fromisoformat(match["opens"]), time.fromisoformat(match["closes"])
    except ValueError as exc:
        raise ValueError(f"hours {text!r}: {exc}") from exc
    if opens >= closes:
        raise ValueError(f"hours {text!r}: opening time must come before closing time")
    return WorkingHours(WEEKDAYS[first : last + 1], opens, closes)


class Agency(_SopModel):
    """A partner in the district's directory."""

    id: str = Field(description="NATS-token-safe: lowercase letters, digits, dashes")
    name: str = Field(min_length=1, max_length=200)
    services: list[Service] = Field(min_length=1, description="Services it can be referred")
    kecamatan: list[str] | Literal["all"] = Field(description="Kecamatan served, or all")
    hours: str = Field(description="'24/7' or working hours like 'mon-fri 07:30-15:30'")
    channels: list[DeliveryChannel] = Field(min_length=1)
    sample_data: bool = False

    @field_validator("id")
    @classmethod
    def _token_safe(cls, value: str) -> str:
        return check_agency_id(value)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @property
    def working_hours(self) -> WorkingHours | None:
        return parse_hours(self.hours)

    def serves(self, kecamatan: str) -> bool:
        """True only when the agency lists the kecamatan by name (``all`` never matches)."""
        return self.kecamatan != "all" and normalise(kecamatan) in map(normalise, self.kecamatan)


class ConsentCondition(_SopModel):
    share_with_health: bool | None = None
    share_with_police: bool | None = None
    share_with_shelter: bool | None = None
    given_by: ConsentGiver | None = None


class Condition(_SopModel):
    """Conditions on the triage facts; every one that is set must hold."""

    any_violence_types: list[ViolenceType] | None = Field(default=None, min_length=1)
    none_of_violence_types: list[ViolenceType] | None = Field(default=None, min_length=1)
    age_group: AgeGroup | None = None
    sex: Sex | None = None
    disability: bool | None = None
    immediate_danger: bool | None = None
    injury: bool | None = None
    perpetrator_has_access: bool | None = None
    suicidal_thoughts: bool | None = None
    max_hours_since_sexual_assault: float | None = Field(
        default=None, ge=0, description="Holds when the hours are known and at most this"
    )
    min_hours_since_sexual_assault: float | None = Field(
        default=None, ge=0, description="Holds when the hours are known and more than this"
    )
    sexual_assault_time_known: bool | None = None
    consent: ConsentCondition | None = None
    kecamatan: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _hours_range(self) -> "Condition":
        low, high = self.min_hours_since_sexual_assault, self.max_hours_since_sexual_assault
        if low is not None and high is not None and low >= high:
            raise ValueError(
                "min_hours_since_sexual_assault must be below max_hours_since_sexual_assault"
            )
        return self

    def is_unconditional(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)


class Referral(_SopModel):
    """One ``refer`` item of a rule: a service asked of one agency."""

    service: Service
    agency: str | None = Field(default=None, description="A directory agency id")
    pick: Literal["by_kecamatan"] | None = Field(
        default=None, description="Choose the agency by the case's kecamatan instead"
    )
    fallback: str | None = Field(default=None, description="With pick: when none matches")
    priority: Priority
    acknowledge_within_minutes: int = Field(ge=1, le=MAX_ACKNOWLEDGE_MINUTES)
    escalate_to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_way_to_the_agency(self) -> "Referral":
        if (self.agency is None) == (self.pick is None):
            raise ValueError("give either 'agency' or 'pick: by_kecamatan', not both or neither")
        if self.pick is not None and self.fallback is None:
            raise ValueError("'pick: by_kecamatan' needs a 'fallback' agency")
        if self.agency is not None and self.fallback is not None:
            raise ValueError("'fallback' goes with 'pick', not with a fixed 'agency'")
        return self

    def named_agencies(self) -> Iterator[tuple[str, str]]:
        """(field name, agency id) of every agency this item names."""
        if self.agency is not None:
            yield "agency", self.agency
        if self.fallback is not None:
            yield "fallback", self.fallback


class Rule(_SopModel):
    id: str = Field(pattern=SLUG_PATTERN)
    description: str = Field(min_length=1)
    when: Condition
    refer: list[Referral] = Field(min_length=1)


class MandatoryReporting(_SopModel):
    """Services a case of this age group reaches even without consent, and the law saying so."""

    age_group: AgeGroup
    services: list[Service] = Field(min_length=1)
    legal_basis: str = Field(min_length=1, max_length=300)


class ConsentPolicy(_SopModel):
    requires_consent: dict[Service, ConsentFlag] = Field(
        description="Service -> the consent flag that must be true for the case to reach it"
    )
    mandatory_reporting: list[MandatoryReporting] = Field(default_factory=list)

    @model_validator(mode="after")
    def _survivor_decides(self) -> "ConsentPolicy":
        # A guarantee of the system, not a district's choice: no SOP can send an adult's case
        # to the police without the survivor's consent.
        if self.requires_consent.get(Service.POLICE) != "share_with_police":
            raise ValueError("requires_consent must map police to share_with_police")
        for entry in self.mandatory_reporting:
            if entry.age_group == AgeGroup.ADULT and Service.POLICE in entry.services:
                raise ValueError("mandatory reporting to the police is for children only")
            needless = [s.value for s in entry.services if s not in self.requires_consent]
            if needless:
                raise ValueError(
                    f"mandatory_reporting names {', '.join(needless)}, which needs no consent"
                )
        return self

    def mandatory_basis(self, age_group: AgeGroup, service: Service) -> str | None:
        for entry in self.mandatory_reporting:
            if entry.age_group == age_group and service in entry.services:
                return entry.legal_basis
        return None


class Sop(_SopModel):
    """One district's SOP, one version."""

    sop_id: str = Field(pattern=SLUG_PATTERN)
    version: int = Field(ge=1)
    district_code: str = Field(pattern=r"^\d{4}$", description="BPS regency code, e.g. 3514")
    name: str = Field(min_length=1)
    programme: str | None = None
    sample_data: bool
    kecamatan: list[str] = Field(min_length=1, description="Kecamatan of the district")
    coordinator: str = Field(description="Agency id of the coordinator, the end of escalation")
    consent: ConsentPolicy
    directory: list[Agency] = Field(min_length=1)
    rules: list[Rule] = Field(min_length=1)

    @field_validator("district_code", mode="before")
    @classmethod
    def _code_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @property
    def label(self) -> str:
        return f"SOP {self.district_code} v{self.version}"

    def agency(self, agency_id: str) -> Agency:
        for agency in self.directory:
            if agency.id == agency_id:
                return agency
        raise KeyError(f"{self.label}: agency {agency_id!r} is not in the directory")


def normalise(kecamatan: str) -> str:
    return " ".join(kecamatan.split()).casefold()


# --- loading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SopIssue:
    """One thing wrong with an SOP document, where it is, and why."""

    label: str
    where: str | None
    line: int | None
    reason: str

    def __str__(self) -> str:
        place = f", {self.where}" if self.where else ""
        line = f" (line {self.line})" if self.line is not None else ""
        return f"{self.label}{place}{line}: {self.reason}"


class SopError(ValueError):
    """An SOP that cannot be used; the message lists every issue, one a line."""

    def __init__(self, issues: list[SopIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues


def load_sop(source: Path | str) -> Sop:
    """Load and validate an SOP from a file, or from YAML text.

    A ``Path`` is read; so is a one-line ``str`` ending in ``.yaml``/``.yml``. Any other
    ``str`` is the YAML document itself. Raises ``SopError`` listing every issue found.
    """
    if isinstance(source, Path) or ("\n" not in source and source.endswith((".yaml", ".yml"))):
        path = Path(source)
        return parse_sop(path.read_text(encoding="utf-8"), origin=path.name)
    return parse_sop(source, origin="<text>")


def parse_sop(text: str, *, origin: str = "<text>") -> Sop:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        issue = SopIssue(f"SOP {origin}", None, line, f"not valid YAML: {exc.problem}")
        raise SopError([issue]) from exc
    except yaml.YAMLError as exc:
        raise SopError([SopIssue(f"SOP {origin}", None, None, f"not valid YAML: {exc}")]) from exc
    if not isinstance(data, dict) or root is None:
        raise SopError([SopIssue(f"SOP {origin}", None, 1, "the document must be a mapping")])
    document = _Document(root, data, _label(data, origin))
    problems = [*_duplicate_keys(root), *_schema_problems(data), *_cross_check_problems(data)]
    if problems:
        raise SopError(document.issues(problems))
    return Sop.model_validate(data)


@dataclass
class SopLibrary:
    """The SOPs in force, by district code, and the files refused at load with their reasons."""

    sops: dict[str, Sop] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    def for_district(self, district_code: str) -> Sop | None:
        return self.sops.get(district_code)


def load_sop_folder(folder: Path) -> SopLibrary:
    """Every ``<district>.yaml`` in the folder; a broken file is refused, the others stay."""
    library = SopLibrary()
    for path in sorted(folder.glob("*.y*ml")):
        try:
            sop = load_sop(path)
        except SopError as exc:
            library.refused[path.name] = str(exc)
            continue
        if sop.district_code != path.stem:
            library.refused[path.name] = (
                f"{sop.label}: file {path.name} holds district {sop.district_code}; "
                f"name it {sop.district_code}.yaml"
            )
        elif sop.district_code in library.sops:
            library.refused[path.name] = f"{sop.label}: a second SOP for the same district"
        else:
            library.sops[sop.district_code] = sop
    return library


# --- where a problem is ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    location: Location
    reason: str
    missing: bool = False  # the last part of the location is a key that is not there
    show_path: bool = True  # prefix the reason with the field's path inside its element


def _fact(location: Location, reason: str) -> _Problem:
    """A cross-check problem: its reason already says what it is about."""
    return _Problem(location, reason, show_path=False)


@dataclass
class _Document:
    root: yaml.Node
    data: dict[str, Any]
    label: str

    def issues(self, problems: list[_Problem]) -> list[SopIssue]:
        found: dict[tuple[str | None, int, str], None] = {}
        for problem in problems:
            element = self._element(problem.location)
            skip = 0 if element is None else 2
            line, path = _resolve(self.root, problem.location, skip=skip, missing=problem.missing)
            reason = problem.reason
            if "{path}" in reason:
                reason = reason.replace("{path}", path or str(problem.location[-1]))
            elif path and problem.show_path:
                reason = f"{path}: {reason}"
            found.setdefault((element, line, reason), None)
        ordered = sorted(found, key=lambda key: (key[1], key[2]))
        return [SopIssue(self.label, where, line, reason) for where, line, reason in ordered]

    def _element(self, location: Location) -> str | None:
        """'rule <id>' or 'agency <id>' when the location is inside one."""
        kind = {"rules": "rule", "directory": "agency"}.get(str(location[0])) if location else None
        if kind is None or len(location) < 2 or not isinstance(location[1], int):
            return None
        section, index = str(location[0]), location[1]
        items = self.data.get(section)
        item = items[index] if isinstance(items, list) and index < len(items) else None
        name = item.get("id") if isinstance(item, dict) else None
        return f"{kind} {name}" if isinstance(name, str) else f"{section}[{index}]"


def _label(data: dict[str, Any], origin: str) -> str:
    district, version = data.get("district_code"), data.get("version")
    if isinstance(district, str | int) and isinstance(version, int):
        return f"SOP {district} v{version}"
    return f"SOP {district}" if isinstance(district, str | int) else f"SOP {origin}"


def _resolve(root: yaml.Node, location: Location, *, skip: int, missing: bool) -> tuple[int, str]:
    """The line a location points at, and its readable path after the first ``skip`` parts.

    Parts that are not in the document (pydantic's union tags like ``literal['all']``) are
    left out; a missing key is named, and its parent gives the line.
    """
    node, line_node, path = root, root, ""
    for position, part in enumerate(location):
        found = _child(node, part)
        if found is not None:
            line_node, node = found
        elif not (missing and position == len(location) - 1):
            continue
        if position >= skip:
            path = _join(path, part)
    return line_node.start_mark.line + 1, path


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(the node whose line to show, the node to descend into) for a key or an index."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item, item
    return None


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else str(part)


def _duplicate_keys(node: yaml.Node, location: Location = ()) -> Iterator[_Problem]:
    if isinstance(node, yaml.MappingNode):
        counts = Counter(key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode))
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and counts[name] > 1:
                counts[name] = 0  # report each duplicated key once
                yield _fact((*location, name), f"key '{name}' appears more than once")
            if name is not None:
                yield from _duplicate_keys(value, (*location, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*location, index))


# --- what is wrong ------------------------------------------------------------------------


def _schema_problems(data: dict[str, Any]) -> list[_Problem]:
    try:
        Sop.model_validate(data)
    except ValidationError as exc:
        return [_from_pydantic(error) for error in exc.errors()]
    return []


def _from_pydantic(error: Any) -> _Problem:
    kind: str = error["type"]
    location: Location = tuple(error["loc"])
    if kind == "missing":
        return _Problem(location, "'{path}' is required", missing=True)
    if kind == "extra_forbidden":
        return _Problem(location, "'{path}' is not a known field")
    message: str = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    given = error.get("input")
    if kind in {"enum", "literal_error", "string_pattern_mismatch"} and isinstance(
        given, str | int | float | bool
    ):
        message = f"{message}, got {given!r}"
    return _Problem(location, message)


def _items(data: dict[str, Any], section: str) -> list[Any]:
    items = data.get(section)
    return items if isinstance(items, list) else []


def _raw_id(item: Any) -> str | None:
    value = item.get("id") if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


def _valid(model: type[_M], raw: Any) -> _M | None:
    """The item as a model if it validates on its own (its own errors are reported already)."""
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _cross_check_problems(data: dict[str, Any]) -> list[_Problem]:
    """What a schema cannot see: references between agencies, rules and the policy.

    Works item by item, so one broken rule or agency does not hide the others' problems, and
    an agency with a broken field still counts as in the directory (no cascade of errors).
    """
    raw_agencies, raw_rules = _items(data, "directory"), _items(data, "rules")
    agencies = [_valid(Agency, raw) for raw in raw_agencies]
    known = {agency_id for agency_id in map(_raw_id, raw_agencies) if agency_id}
    offers = {agency.id: agency for agency in agencies if agency is not None}
    coordinator = data.get("coordinator")
    problems = [
        *_duplicates("directory", raw_agencies, "agency id"),
        *_duplicates("rules", raw_rules, "rule id"),
    ]
    if isinstance(coordinator, str) and known and coordinator not in known:
        problems.append(
            _fact(("coordinator",), f"coordinator '{coordinator}' is not in the directory")
        )
    district_kecamatan = data.get("kecamatan")
    if isinstance(district_kecamatan, list):
        known_kecamatan = {normalise(k) for k in district_kecamatan if isinstance(k, str)}
        problems += _unknown_kecamatan(agencies, raw_rules, known_kecamatan)
    for index, raw_rule in enumerate(raw_rules):
        refer = raw_rule.get("refer") if isinstance(raw_rule, dict) else None
        for position, raw_item in enumerate(refer if isinstance(refer, list) else []):
            if isinstance(raw_item, dict) and known:
                here: Location = ("rules", index, "refer", position)
                problems += _referral_problems(here, raw_item, known, offers, coordinator)
    rules = [_valid(Rule, raw) for raw in raw_rules]
    if rules and all(rules) and not _has_case_manager(rules):
        problems.append(
            _fact(
                ("rules",),
                "no rule gives every case a case manager: add a rule with an empty 'when' "
                "that refers case_management",
            )
        )
    return problems


def _duplicates(section: str, items: list[Any], what: str) -> list[_Problem]:
    seen: set[str] = set()
    problems = []
    for index, item_id in enumerate(map(_raw_id, items)):
        if item_id is None:
            continue
        if item_id in seen:
            problems.append(_fact((section, index, "id"), f"{what} '{item_id}' is used twice"))
        seen.add(item_id)
    return problems


def _unknown_kecamatan(
    agencies: list[Agency | None], raw_rules: list[Any], known: set[str]
) -> list[_Problem]:
    places: list[tuple[Location, str]] = []
    for index, agency in enumerate(agencies):
        if agency is not None and agency.kecamatan != "all":
            places += [
                (("directory", index, "kecamatan", position), name)
                for position, name in enumerate(agency.kecamatan)
            ]
    for index, raw_rule in enumerate(raw_rules):
        when = _valid(Condition, raw_rule.get("when") if isinstance(raw_rule, dict) else None)
        places += [
            (("rules", index, "when", "kecamatan", position), name)
            for position, name in enumerate((when.kecamatan or []) if when else [])
        ]
    return [
        _fact(location, f"kecamatan '{name}' is not one of the district's kecamatan")
        for location, name in places
        if normalise(name) not in known
    ]


def _referral_problems(
    here: Location,
    item: dict[str, Any],
    known: set[str],
    offers: dict[str, Agency],
    coordinator: Any,
) -> list[_Problem]:
    """Checked on the raw item, so a typo elsewhere in it does not hide these."""
    service = item.get("service")
    service = Service(service) if service in set(Service) else None
    problems = []
    for field_name in ("agency", "fallback"):
        agency_id = item.get(field_name)
        if not isinstance(agency_id, str):
            continue
        agency = offers.get(agency_id)
        if agency_id not in known:
            problems.append(
                _fact((*here, field_name), f"agency '{agency_id}' is not in the directory")
            )
        elif agency is not None and service is not None and service not in agency.services:
            problems.append(
                _fact(
                    (*here, field_name),
                    f"agency '{agency_id}' does not offer {service.value} "
                    f"(it offers {', '.join(s.value for s in agency.services)})",
                )
            )
    if (
        item.get("pick") == "by_kecamatan"
        and service is not None
        and not any(
            service in agency.services and agency.kecamatan != "all" for agency in offers.values()
        )
    ):
        problems.append(
            _fact(
                (*here, "pick"),
                f"no agency lists kecamatan for {service.value}: "
                "the pick would always use the fallback",
            )
        )
    return problems + _chain_problems(here, item, known, coordinator)


def _chain_problems(
    here: Location, item: dict[str, Any], known: set[str], coordinator: Any
) -> list[_Problem]:
    chain = item.get("escalate_to")
    steps = [step for step in chain if isinstance(step, str)] if isinstance(chain, list) else []
    problems = []
    for position, agency_id in enumerate(steps):
        at: Location = (*here, "escalate_to", position)
        if agency_id not in known:
            problems.append(_fact(at, f"agency '{agency_id}' is not in the directory"))
        if agency_id in steps[:position]:
            problems.append(_fact(at, f"agency '{agency_id}' appears twice in escalate_to"))
        if agency_id == item.get("agency"):
            problems.append(_fact(at, f"agency '{agency_id}' cannot escalate to itself"))
        if agency_id == coordinator and position != len(steps) - 1:
            problems.append(
                _fact(at, f"the coordinator '{agency_id}' may only be the last escalation step")
            )
    return problems


def _has_case_manager(rules: list[Rule | None]) -> bool:
    return any(
        rule is not None
        and rule.when.is_unconditional()
        and any(item.service == Service.CASE_MANAGEMENT for item in rule.refer)
        for rule in rules
    )
