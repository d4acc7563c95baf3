"""The district SOP: its model (``model``), reading a YAML document with line numbers
(``loader``) and the checks a schema cannot make (``checks``). The public names are here, so
``from routing.sop import Sop, parse_sop`` reads the same wherever it is used."""

from routing.sop.loader import SopError, SopIssue, SopLibrary, load_sop, load_sop_folder, parse_sop
from routing.sop.model import (
    ALWAYS_OPEN,
    MAX_ACKNOWLEDGE_MINUTES,
    SLUG_PATTERN,
    WEEKDAYS,
    Agency,
    Condition,
    ConsentCondition,
    ConsentFlag,
    ConsentPolicy,
    MandatoryReporting,
    Referral,
    Rule,
    Sop,
    WorkingHours,
    normalise,
    parse_hours,
)

__all__ = [
    "ALWAYS_OPEN",
    "MAX_ACKNOWLEDGE_MINUTES",
    "SLUG_PATTERN",
    "WEEKDAYS",
    "Agency",
    "Condition",
    "ConsentCondition",
    "ConsentFlag",
    "ConsentPolicy",
    "MandatoryReporting",
    "Referral",
    "Rule",
    "Sop",
    "SopError",
    "SopIssue",
    "SopLibrary",
    "WorkingHours",
    "load_sop",
    "load_sop_folder",
    "normalise",
    "parse_hours",
    "parse_sop",
]
