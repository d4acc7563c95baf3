"""What can be wrong with an SOP document: duplicated YAML keys, the schema's own errors, and
the cross-checks a schema cannot see (references between agencies, rules, examples and the
consent policy). Each problem names its location in the document; the loader turns it into a
line. (Examples that fail are found by ``routing.sop.examples``, which the loader is given.)"""

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from routing.sop.model import Agency, Condition, Rule, Sop, normalise, village_key, village_parts
from rujuk_contracts.envelope import MAX_EVENT_BYTES, make_event
from rujuk_contracts.events import (
    MAX_VILLAGE_CANDIDATES,
    CaseVillageAgencyAsked,
    Service,
    VillageCandidate,
)

Location = tuple[str | int, ...]
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    location: Location
    reason: str
    missing: bool = False  # the last part of the location is a key that is not there
    show_path: bool = True  # prefix the reason with the field's path inside its element


def _fact(location: Location, reason: str) -> Problem:
    """A cross-check problem: its reason already says what it is about."""
    return Problem(location, reason, show_path=False)


def duplicate_keys(node: yaml.Node, location: Location = ()) -> Iterator[Problem]:
    if isinstance(node, yaml.MappingNode):
        counts = Counter(key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode))
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and counts[name] > 1:
                # report each duplicated key once; equivalent: 1 too, it is not above 1 either
                counts[name] = 0  # pragma: no mutate
                yield _fact((*location, name), f"key '{name}' appears more than once")
            if name is not None:
                yield from duplicate_keys(value, (*location, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from duplicate_keys(item, (*location, index))


# --- what is wrong ------------------------------------------------------------------------


def schema_problems(data: dict[str, Any]) -> list[Problem]:
    try:
        Sop.model_validate(data)
    except ValidationError as exc:
        return [_from_pydantic(error) for error in exc.errors()]
    return []


def _from_pydantic(error: Any) -> Problem:
    kind: str = error["type"]
    location: Location = tuple(error["loc"])
    if kind == "missing":
        return Problem(location, "'{path}' is required", missing=True)
    if kind == "extra_forbidden":
        return Problem(location, "'{path}' is not a known field")
    message: str = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    given = error.get("input")
    if kind in {"enum", "literal_error", "string_pattern_mismatch"} and isinstance(
        given, str | int | float | bool
    ):
        message = f"{message}, got {given!r}"
    return Problem(location, message)


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


def cross_check_problems(data: dict[str, Any]) -> list[Problem]:
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
        *_duplicates_in(("on_call", "contacts"), _on_call_contacts(data), "on-call id"),
    ]
    if isinstance(coordinator, str) and known and coordinator not in known:
        problems.append(
            _fact(("coordinator",), f"coordinator '{coordinator}' is not in the directory")
        )
    district_kecamatan = data.get("kecamatan")
    if isinstance(district_kecamatan, list):
        known_kecamatan = {normalise(k) for k in district_kecamatan if isinstance(k, str)}
        problems += _unknown_kecamatan(agencies, raw_rules, known_kecamatan)
    problems += _village_problems(agencies)
    for index, raw_rule in enumerate(raw_rules):
        refer = raw_rule.get("refer") if isinstance(raw_rule, dict) else None
        for position, raw_item in enumerate(refer if isinstance(refer, list) else []):
            if isinstance(raw_item, dict) and known:
                here: Location = ("rules", index, "refer", position)
                problems += _referral_problems(here, raw_item, known, offers, coordinator)
    problems += _example_reference_problems(data, known, offers)
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


def _duplicates(section: str, items: list[Any], what: str) -> list[Problem]:
    return _duplicates_in((section,), items, what)


def _duplicates_in(where: Location, items: list[Any], what: str) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for index, item_id in enumerate(map(_raw_id, items)):
        if item_id is None:
            continue
        if item_id in seen:
            problems.append(_fact((*where, index, "id"), f"{what} '{item_id}' is used twice"))
        seen.add(item_id)
    return problems


def _on_call_contacts(data: dict[str, Any]) -> list[Any]:
    on_call = data.get("on_call")
    return _items(on_call, "contacts") if isinstance(on_call, dict) else []


def _unknown_kecamatan(
    agencies: list[Agency | None], raw_rules: list[Any], known: set[str]
) -> list[Problem]:
    places: list[tuple[Location, str]] = []
    for index, agency in enumerate(agencies):
        if agency is not None and agency.kecamatan != "all":
            places += [
                (("directory", index, "kecamatan", position), name)
                for position, name in enumerate(agency.kecamatan)
            ]
        if agency is not None and agency.villages is not None:
            places += [
                (("directory", index, "villages", position), village_parts(entry)[0])
                for position, entry in enumerate(agency.villages)
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


def _village_problems(agencies: list[Agency | None]) -> list[Problem]:
    """A desa-level agency's villages lie in kecamatan it serves, and no desa is listed by two
    agencies for one service (the pick by village would have no one answer)."""
    problems = []
    listed: dict[tuple[tuple[str, str], object], str] = {}  # (desa, service) -> agency id
    for index, agency in enumerate(agencies):
        if agency is None or agency.villages is None:
            continue
        for position, entry in enumerate(agency.villages):
            here: Location = ("directory", index, "villages", position)
            kecamatan, desa = village_parts(entry)
            if agency.kecamatan != "all" and normalise(kecamatan) not in map(
                normalise, agency.kecamatan
            ):
                problems.append(
                    _fact(
                        here,
                        f"desa '{desa}' lies in kecamatan '{kecamatan}', which agency "
                        f"'{agency.id}' does not serve (its kecamatan: "
                        f"{', '.join(agency.kecamatan)})",
                    )
                )
            for service in agency.services:
                other = listed.setdefault((village_key(entry), service), agency.id)
                if other != agency.id:
                    problems.append(
                        _fact(
                            here,
                            f"desa '{entry}' is listed by agencies '{other}' and '{agency.id}' "
                            f"for {service.value}: a desa has one agency per service",
                        )
                    )
    return problems


def _referral_problems(
    here: Location,
    item: dict[str, Any],
    known: set[str],
    offers: dict[str, Agency],
    coordinator: Any,
) -> list[Problem]:
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
            service in agency.services and agency.kecamatan != "all" and agency.villages is None
            for agency in offers.values()
        )
    ):
        problems.append(
            _fact(
                (*here, "pick"),
                f"no agency lists kecamatan for {service.value}: "
                "the pick would always use the fallback",
            )
        )
    if (
        item.get("pick") == "by_village"
        and service is not None
        and not any(service in agency.services and agency.villages for agency in offers.values())
    ):
        problems.append(
            _fact(
                (*here, "pick"),
                f"no agency lists villages for {service.value}: "
                "the pick by village would never find one",
            )
        )
    if item.get("pick") == "by_village" and service is not None:
        too_big = _village_question_problem(service, list(offers.values()))
        if too_big is not None:
            problems.append(_fact((*here, "pick"), too_big))
    return problems + _chain_problems(here, item, known, coordinator)


# The longest a question's envelope gets: a case id and a traceparent are of fixed length.
_SAMPLE_CASE_ID = "0000-0000000000"
_SAMPLE_TRACEPARENT = f"00-{'0' * 32}-{'0' * 16}-01"


def _village_question_problem(service: Service, agencies: list[Agency]) -> str | None:
    """Why ``case.village_agency_asked`` could not carry the candidates of a pick by village
    of ``service`` (routing asks it after the case is decided: it would fail every such case),
    or None."""
    listing = [(a.id, a.villages) for a in agencies if a.villages and service in a.services]
    if not listing:
        return None  # said above: the pick would never find one
    if len(listing) > MAX_VILLAGE_CANDIDATES:
        return (
            f"{len(listing)} agencies list villages for {service.value}: the question routing "
            f"asks intake names at most {MAX_VILLAGE_CANDIDATES}"
        )
    try:
        asked = CaseVillageAgencyAsked(
            case_id=_SAMPLE_CASE_ID,
            question_id=f"vq-{'0' * 32}",
            service=service,
            candidates=[VillageCandidate(agency_id=i, villages=v) for i, v in listing],
        )
    except ValidationError as exc:
        return f"the question routing asks intake for {service.value} is not valid: {exc}"
    size = len(
        make_event(asked, source="/rujuk/routing", traceparent=_SAMPLE_TRACEPARENT).to_bytes()
    )
    if size > MAX_EVENT_BYTES:
        return (
            f"the villages listed for {service.value} make the question routing asks intake "
            f"{size} bytes, over the limit of an event ({MAX_EVENT_BYTES}): list fewer"
        )
    return None


def _chain_problems(
    here: Location, item: dict[str, Any], known: set[str], coordinator: Any
) -> list[Problem]:
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


# --- examples -----------------------------------------------------------------------------


def _example_reference_problems(
    data: dict[str, Any], known: set[str], offers: dict[str, Agency]
) -> list[Problem]:
    """Examples that name an agency, a kecamatan or a district the SOP does not have."""
    raw_examples = _items(data, "examples")
    problems = _duplicates("examples", raw_examples, "example id")
    kecamatan = data.get("kecamatan")
    district_kecamatan = (
        {normalise(k) for k in kecamatan if isinstance(k, str)}
        if isinstance(kecamatan, list)
        else None
    )
    for index, raw in enumerate(raw_examples):
        if not isinstance(raw, dict):
            continue
        here: Location = ("examples", index)
        speaks_for = raw.get("speaks_for")
        if isinstance(speaks_for, str) and known and speaks_for not in known:
            problems.append(
                _fact((*here, "speaks_for"), f"agency '{speaks_for}' is not in the directory")
            )
        facts = raw.get("facts")
        if isinstance(facts, dict):
            problems += _facts_problems((*here, "facts"), facts, data, district_kecamatan)
        expect = raw.get("expect")
        if isinstance(expect, dict) and known:
            problems += _expectation_problems((*here, "expect"), expect, known, offers)
    return problems


def _facts_problems(
    here: Location, facts: dict[str, Any], data: dict[str, Any], kecamatan: set[str] | None
) -> list[Problem]:
    problems = []
    district = str(data.get("district_code"))
    given = facts.get("district_code")
    if isinstance(given, str | int) and str(given).replace(".", "") != district:
        problems.append(
            _fact(
                (*here, "district_code"),
                f"the facts are of district {given}, not this SOP's {district}: "
                "leave district_code out",
            )
        )
    name = facts.get("kecamatan")
    if isinstance(name, str) and kecamatan is not None and normalise(name) not in kecamatan:
        problems.append(
            _fact(
                (*here, "kecamatan"),
                f"kecamatan '{name}' is not one of the district's kecamatan",
            )
        )
    return problems


def _expectation_problems(
    here: Location, expect: dict[str, Any], known: set[str], offers: dict[str, Agency]
) -> list[Problem]:
    problems = []
    for position, item in enumerate(_listed(expect.get("refer"))):
        agency_id = item.get("agency") if isinstance(item, dict) else None
        if not isinstance(agency_id, str):
            continue
        at: Location = (*here, "refer", position, "agency")
        service = item.get("service")
        agency = offers.get(agency_id)
        if agency_id not in known:
            problems.append(_fact(at, f"agency '{agency_id}' is not in the directory"))
        elif agency is not None and service in set(Service) and service not in agency.services:
            problems.append(
                _fact(
                    at,
                    f"agency '{agency_id}' does not offer {service} "
                    f"(it offers {', '.join(s.value for s in agency.services)})",
                )
            )
    for position, name in enumerate(_listed(expect.get("never"))):
        if isinstance(name, str) and name not in set(Service) and name not in known:
            problems.append(
                _fact(
                    (*here, "never", position),
                    f"'{name}' is neither a service nor an agency in the directory",
                )
            )
    return problems


def _listed(value: Any) -> list[Any]:
    """A list as written, or a single item written without one."""
    if isinstance(value, list):
        return value
    return [] if value is None else [value]
