"""The cadre's page (issue 25): the places it may file for, the few fields of its form, and
intake's refusals as reasons a cadre reads in its own language. Pure: no I/O."""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from console.form import place_problems
from console.i18n import Translator

AREA_SEPARATOR = "/"  # as intake writes a cadre's areas: "Kraksaan/Desa Contoh"
REPORT_MAX_BYTES = 5_000  # what the page sends for one report, at most (the bound)


@dataclass(frozen=True)
class Area:
    kecamatan: str
    villages: tuple[str, ...]  # empty: the whole kecamatan


def areas_of(listed: Sequence[str] | None) -> list[Area]:
    """``["Kraksaan/Desa A", "Kraksaan/Desa B", "Maron"]`` -> Kraksaan (A, B), Maron (all)."""
    found: dict[str, list[str] | None] = {}
    for area in listed or ():
        kecamatan, _, village = area.partition(AREA_SEPARATOR)
        known = found.setdefault(kecamatan, [])
        if not village:
            found[kecamatan] = None  # the whole kecamatan
        elif known is not None:
            known.append(village)
    return [Area(k, tuple(v or ())) for k, v in found.items()]


def owner_of(token_id: str) -> str:
    """Whose queue a browser's storage holds: a digest of the token's id, never the id, so
    that one cadre's page never opens another's queue on a shared phone."""
    return hashlib.sha256(f"rujuk-cadre:{token_id}".encode()).hexdigest()[:16]


def signout_words(token_id: str) -> dict[str, str]:
    """What every page's "Keluar" needs to warn a cadre and wipe its queue: whose queue, and
    the warning and the confirming button in Bahasa Indonesia, then English."""
    indonesian, english = Translator("id"), Translator("en")

    def both(key: str) -> str:
        return f"{indonesian(key)} / {english(key)}"

    return {
        "owner": owner_of(token_id),
        "warning": both("cadre.signout_warning"),
        "confirm": both("cadre.signout_confirm"),
    }


def refusal_reasons(problems: Sequence[Mapping[str, Any]], t: Translator) -> list[str]:
    """Intake's 422 problems as a cadre reads them: the field's label and the reason in the
    page's language (intake's own words where it gives them in both, ``id / en``)."""

    def own_words(text: str) -> str:
        if " / " in text:
            indonesian, _, english = text.partition(" / ")
            return indonesian if t.language == "id" else english
        return t("cadre.invalid")

    placed = place_problems(problems)
    reasons = [
        f"{t('field.' + path)}: {own_words(text)}"
        for path, texts in placed.by_path.items()
        for text in texts
    ]
    reasons += [own_words(text) for text in placed.general]
    return reasons or [t("cadre.invalid")]
