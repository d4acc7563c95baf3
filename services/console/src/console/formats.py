"""Numbers, shares and spans of time as each language writes them (Babel's CLDR data):
``0,5``, ``87,5%``, ``1 j 57 mnt`` in Bahasa Indonesia; ``0.5``, ``87.5%``, ``1h 57m`` in
English. Pure: no I/O."""

from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache, lru_cache

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_decimal, format_percent, get_decimal_symbol, get_group_symbol
from babel.units import format_unit

LOCALES = {"id": "id", "en": "en"}
SPAN_UNITS = ("day", "hour", "minute", "second")
UNIT_SECONDS = {"day": 86_400, "hour": 3_600, "minute": 60, "second": 1}


@cache
def locale_of(language: str) -> Locale:
    return Locale.parse(LOCALES.get(language, "id"))


def number(value: float, language: str, digits: int = 0) -> str:
    return _fixed(value, language, digits, grouped=True)


def percent(share: float, language: str, digits: int = 1) -> str:
    """``0.875`` -> ``87,5%`` (id) or ``87.5%`` (en)."""
    pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
    return format_percent(share, format=pattern, locale=locale_of(language))


def in_unit(value: float, unit: str, language: str, digits: int = 0, *, pad: int = 0) -> str:
    """``value`` in one unit of time, narrow: ``5 mnt`` / ``5m``; ``pad`` zero-pads it."""
    return unit_patterns(language)[unit].replace(
        "{0}", _fixed(value, language, digits, grouped=False, pad=pad), 1
    )


def babel_in_unit(value: float, unit: str, language: str, digits: int = 0, *, pad: int = 0) -> str:
    """``in_unit`` as Babel writes it (what ``in_unit`` is held to by a test): some 20 times
    slower, which a year's page of 650 agencies, two values each, paid."""
    pattern = "0" * max(pad, 1) + ("." + "0" * digits if digits else "")
    return format_unit(
        value, f"duration-{unit}", length="narrow", format=pattern, locale=locale_of(language)
    )


def babel_number(value: float, language: str, digits: int = 0) -> str:
    """``number`` as Babel writes it (a test holds ``number`` to it)."""
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(value, format=pattern, locale=locale_of(language))


@cache
def _separators(language: str) -> dict[int, str]:
    """Python's ``,`` and ``.`` -> the language's group and decimal symbols."""
    locale = locale_of(language)
    return str.maketrans({",": get_group_symbol(locale), ".": get_decimal_symbol(locale)})


@lru_cache(maxsize=16_384)
def _fixed(value: float, language: str, digits: int, *, grouped: bool, pad: int = 0) -> str:
    """``value`` to ``digits`` decimals as Babel rounds it (the float's shortest text, half to
    even), at least ``pad`` integer digits, thousands grouped or not. Kept: a year's page of
    650 agencies writes 1,300 figures, the same ones at each view, and Decimal is slow."""
    rounded = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_EVEN)
    if rounded.is_zero():
        rounded = abs(rounded)  # no "-0"
    text = format(rounded, f"{',' if grouped else ''}.{digits}f")
    if pad:
        negative = text.startswith("-")
        whole, dot, fraction = text.removeprefix("-").partition(".")
        text = ("-" if negative else "") + whole.zfill(pad) + dot + fraction
    return text.translate(_separators(language))


@cache
def unit_patterns(language: str) -> dict[str, str]:
    """Each unit's narrow pattern with ``{0}`` for the number, for the countdown script to
    write the same words as the server: ``{"hour": "{0} j", ...}``."""
    sample = 7  # one digit, written the same in both languages
    return {
        unit: babel_in_unit(sample, unit, language).replace(str(sample), "{0}", 1)
        for unit in SPAN_UNITS
    }


def duration(delta: timedelta, language: str) -> str:
    """A span for people in its two largest units, sign left out: ``2 j 05 mnt``,
    ``4 mnt 12 dtk``, ``3 hr 02 j`` (id); ``2h 05m``, ``4m 12s``, ``3d 02h`` (en)."""
    seconds = int(abs(delta).total_seconds())
    parts: list[tuple[str, int]] = []
    for unit in SPAN_UNITS:
        amount, seconds = divmod(seconds, UNIT_SECONDS[unit])
        if amount or parts or unit == "second":
            parts.append((unit, amount))
        if len(parts) == 2:
            break
    written = [in_unit(parts[0][1], parts[0][0], language)]
    if len(parts) == 2:
        written.append(in_unit(parts[1][1], parts[1][0], language, pad=2))
    return " ".join(written)


def month_year(day: date, language: str) -> str:
    """``Maret 2026`` / ``March 2026``."""
    return format_date(day, "LLLL y", locale=locale_of(language))


def day_month_year(day: date, language: str) -> str:
    """``1 Mar 2026`` / ``Mar 1, 2026``."""
    return format_date(day, "medium", locale=locale_of(language))
