"""Need to know: which identifying fields each service's partner may read.

This small table is intake's for now; the district SOP should own it later (a partner's
mandate is a matter for the SOP, not for code). Field names are the dotted names of the
report form. ``victim.sex`` and ``victim.disability`` come from the triage facts; the rest
from the vault.
"""

from collections.abc import Iterable
from typing import Any

from rujuk_contracts.events import Service

_PERSON = ("victim.name", "victim.birth_date", "victim.age_years", "victim.sex")
_CONTACT = ("victim.phone",)
_WHEN_WHERE = ("incident.occurred_at", "incident.place")

FIELD_POLICY: dict[Service, tuple[str, ...]] = {
    Service.HEALTH: (
        *_PERSON,
        "victim.disability",
        *_CONTACT,
        "incident.occurred_at",
        "incident.narrative",
    ),
    Service.POLICE: (
        *_PERSON,
        "victim.disability",
        "victim.nik",
        *_CONTACT,
        "victim.address",
        "village",
        *_WHEN_WHERE,
        "incident.narrative",
        "reporter.name",
        "reporter.phone",
    ),
    Service.SHELTER: (*_PERSON, "victim.disability", *_CONTACT),
    Service.PSYCHOSOCIAL: (*_PERSON, "victim.disability", *_CONTACT, "incident.narrative"),
    Service.LEGAL: (
        *_PERSON,
        "victim.nik",
        *_CONTACT,
        "victim.address",
        *_WHEN_WHERE,
        "incident.narrative",
    ),
    Service.SOCIAL: (
        *_PERSON,
        "victim.disability",
        "victim.nik",
        *_CONTACT,
        "victim.address",
        "village",
    ),
    Service.CASE_MANAGEMENT: (
        *_PERSON,
        "victim.disability",
        "victim.nik",
        *_CONTACT,
        "victim.address",
        "village",
        *_WHEN_WHERE,
        "incident.narrative",
        "reporter.name",
        "reporter.phone",
    ),
}

ALL_FIELDS = tuple(sorted({f for fields in FIELD_POLICY.values() for f in fields}))


def fields_for(services: Iterable[str]) -> list[str]:
    """The union of the fields the given services need, sorted."""
    allowed: set[str] = set()
    for service in services:
        allowed.update(FIELD_POLICY.get(Service(service), ()))
    return sorted(allowed)


def select(record: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The nested subset of ``record`` named by dotted ``fields`` (absent values: null)."""
    out: dict[str, Any] = {}
    for name in fields:
        *parents, leaf = name.split(".")
        source: Any = record
        target = out
        for part in parents:
            source = source.get(part) if isinstance(source, dict) else None
            target = target.setdefault(part, {})
        target[leaf] = source.get(leaf) if isinstance(source, dict) else None
    return out
