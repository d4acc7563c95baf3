"""Which districts an operator may file a report for: those with an SOP in force at routing
(intake learns them from routing's ``sop.in_force`` events) that the operator's token serves;
and the refusal that names them. No I/O: the door hands in how to read them."""

from collections.abc import Awaitable, Callable, Collection

LoadDistricts = Callable[[], Awaitable[Collection[str]]]


def refusal(district: str, in_force: Collection[str], serves: Callable[[str], bool]) -> str | None:
    """None when a report for ``district`` may be filed; else why not, with the districts
    the caller can file for (in force and served)."""
    if district in in_force and serves(district):
        return None
    open_to_caller = ", ".join(sorted(d for d in in_force if serves(d))) or "tidak ada / none"
    if district not in in_force:
        why = f"tidak ada SOP berlaku / no SOP in force for district {district}"
    else:
        why = f"token Anda tidak melayani / your token does not serve district {district}"
    return f"{why}; Anda dapat melapor untuk / you can file for: {open_to_caller}"


class DistrictsInForce:
    """The districts with an SOP in force, remembered by the process. Routing announces new
    versions and never withdraws a district, so a district once known stays known: a report
    for one costs no look-up. Anything else is looked up again before it is refused, so a
    district announced a moment ago is accepted at once."""

    def __init__(self) -> None:
        self._known: frozenset[str] = frozenset()

    async def refusal(
        self, district: str, serves: Callable[[str], bool], load: LoadDistricts
    ) -> str | None:
        if district in self._known and serves(district):
            return None
        self._known = frozenset(await load())
        return refusal(district, self._known, serves)
