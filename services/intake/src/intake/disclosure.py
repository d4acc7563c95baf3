"""Need to know: which identifying fields each service's partner may read.

This small table is intake's for now; the district SOP should own it later (a partner's
mandate is a matter for the SOP, not for code). Field names are the dotted names of the
report form. ``victim.sex`` and ``victim.disability`` come from the triage facts; the rest
from the vault.
"""

from collections.abc import Iterable
from dataclasses import dataclass
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
    # A mediator meets both sides: who the survivor is and how to reach her; not the narrative.
    Service.MEDIATION: (*_PERSON, *_CONTACT, "victim.address"),
}

# A referral whose agency still has a part in the case. Declined, completed, cancelled and
# escalated-away referrals no longer give their agency access to the case's details.
INACTIVE_REFERRAL_STATES = ("declined", "completed", "cancelled", "escalated")

ALL_FIELDS = tuple(sorted({f for fields in FIELD_POLICY.values() for f in fields}))


def fields_for(services: Iterable[str]) -> list[str]:
    """The union of the fields the given services need, sorted."""
    allowed: set[str] = set()
    for service in services:
        allowed.update(FIELD_POLICY[Service(service)])  # every service has a policy (tested)
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


@dataclass(frozen=True)
class Release:
    """What a partner is shown: its referrals' services, the fields they need, their values."""

    services: list[str]
    fields: list[str]
    details: dict[str, Any]


def release(record: dict[str, object], triage: dict[str, Any], services: Iterable[str]) -> Release:
    """The details of a case that a partner holding referrals for ``services`` may read: the
    vault's ``record`` with the triage's sex and disability, cut to the fields they need."""
    victim = record.setdefault("victim", {})
    assert isinstance(victim, dict)
    victim["sex"] = triage.get("sex")
    victim["disability"] = triage.get("disability")
    needed = sorted(set(services))
    fields = fields_for(needed)
    return Release(needed, fields, select(record, fields))
