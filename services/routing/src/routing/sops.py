"""The SOPs in force: the files read at start, and the versions published since (in
PostgreSQL, so every routing replica applies a new version from its effective date on);
publishing a new version; announcing each SOP in force (``sop.in_force``) once, when it comes
into force."""

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from routing import store
from routing.clock import Clock, utc_now
from routing.events import sop_in_force, sop_proposal_withdrawn, sop_published
from routing.lifecycle import UnroutedReason
from routing.sop import Sop, SopError, SopLibrary, load_sop_folder, parse_sop
from routing.sop.duties import AgencyDutyChanges, duty_changes
from routing.sop.examples import example_problems
from rujuk_contracts.events import OverrideReason, SopOrigin
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)


class SopConflict(Exception):
    """A published SOP whose version cannot follow the one in force."""


class NeedsSignOff(Exception):
    """A version published directly that asks more of some agencies: it goes through a
    proposal they sign off (``/v1/sop-proposals``), or is published with an override reason."""

    def __init__(self, label: str, asked: list[AgencyDutyChanges]) -> None:
        names = ", ".join(f"{a.agency_id} ({', '.join(a.codes)})" for a in asked)
        super().__init__(
            f"{label} mengubah tugas lembaga / changes the duties of: {names}. Ajukan lewat "
            "/v1/sop-proposals agar mereka menyetujui, atau terbitkan dengan "
            "?override=<alasan> / propose it at /v1/sop-proposals for their sign-off, or "
            "publish with ?override=<OverrideReason>"
        )
        self.asked = asked


class Unroutable(Rejected):
    """Routing cannot route a case now: why (``reason``), and what a person can act on."""

    def __init__(self, reason: UnroutedReason, detail: str) -> None:
        super().__init__(detail)
        self.unrouted_reason = reason


def no_sop(district: str) -> Unroutable:
    return Unroutable(
        UnroutedReason.NO_SOP,
        f"tidak ada SOP berlaku untuk kabupaten {district} / no SOP in force for district "
        f"{district}",
    )


@dataclass(frozen=True)
class InForce:
    """An SOP in force, where it came from, and the sha256 of its YAML document."""

    sop: Sop
    origin: SopOrigin
    sha256: str


class SopNotServed(Exception):
    """An SOP for a district the publisher does not serve."""

    def __init__(self, district_code: str) -> None:
        super().__init__(f"the publisher does not serve district {district_code}")
        self.district_code = district_code


@dataclass(frozen=True)
class PublishedSop:
    sop: Sop
    sha256: str
    published_at: datetime
    created: bool  # False when this very document was published before
    effective_at: datetime | None = None


@dataclass(frozen=True)
class Publication:
    """How a version comes to be published: from which proposal, from when, and the override
    of the agencies that had not agreed, if any."""

    effective_at: datetime | None = None  # None: now
    proposal_id: str | None = None
    override_reason: OverrideReason | None = None
    agencies_not_agreed: tuple[str, ...] = ()


class SopsInForce:
    """Which SOP applies to a district: the newest version published, else the district's file.
    Keeps each published version parsed once."""

    def __init__(self, library: SopLibrary | None = None, *, clock: Clock = utc_now) -> None:
        self.library = library or SopLibrary()  # the files: where nothing was published
        self.clock = clock  # a published version applies from its effective_at by this clock
        self._published: dict[tuple[str, int, str], Sop] = {}  # (district, version, sha256)
        # District -> version of the SOPs in force when this process started: /healthz says
        # it, so that whoever starts a stack can wait until intake knows them (rujuk.stack).
        self.in_force_at_start: dict[str, int] = {}

    def load_sops(self, folder: Path) -> SopLibrary:
        """Read every SOP in the folder; a broken one is refused, the others stay."""
        self.library = load_sop_folder(folder, run_examples=example_problems)
        return self.library

    def log_sops(self, folder: Path) -> None:
        for sop in self.library.sops.values():
            log.info(
                "sop file loaded",
                sop_id=sop.sop_id,
                sop_version=sop.version,
                district=sop.district_code,
                rules=len(sop.rules),
                sample_data=sop.sample_data,
            )
        for file_name, reason in self.library.refused.items():
            log.error("sop refused", file=file_name, reason=reason)
        if not self.library.sops:
            log.warning("no SOP file in force", folder=str(folder))

    def sop_for(self, district: str) -> Sop:
        """The SOP file in force for the district (where nothing was published)."""
        sop = self.library.for_district(district)
        if sop is not None:
            return sop
        if f"{district}.yaml" in self.library.refused:
            raise Unroutable(
                UnroutedReason.SOP_REFUSED,
                f"SOP kabupaten {district} ditolak saat routing mulai / the SOP for district "
                f"{district} was refused at start (see routing's log)",
            )
        raise no_sop(district)

    async def sop_in_force(
        self, conn: Connection, district: str, at: datetime | None = None
    ) -> Sop:
        """The newest version published for the district in effect ``at`` (default now), else
        its SOP file.

        Asked of the database for every case (one indexed row), so every routing replica
        applies a new version from its effective date on; parsed once per version.
        """
        newest = await store.newest_sop(conn, district, at or self.clock())
        if newest is None:
            return self.sop_for(district)
        version, sha256 = newest
        key = (district, version, sha256)
        sop = self._published.get(key)
        if sop is None:
            stored = await store.get_sop(conn, district, version)
            assert stored is not None
            try:
                sop = parse_sop(stored.yaml, origin=f"published {district} v{version}")
            except SopError as exc:  # valid when published; this routing reads it otherwise
                raise Unroutable(
                    UnroutedReason.SOP_INVALID,
                    f"SOP {district} v{version} tidak terbaca / the published SOP {district} "
                    f"v{version} cannot be read now: {exc.issues[0]}"[:500],
                ) from exc
            self._published[key] = sop
        return sop

    async def documents_in_force(self, conn: Connection) -> dict[str, InForce]:
        """District -> the SOP in force (published, else the file); a published version that
        can no longer be read is left out (its cases are recorded unrouted, with the reason)."""
        in_force = {
            district: InForce(sop, SopOrigin.FILE, self.library.sha256[district])
            for district, sop in self.library.sops.items()
        }
        for stored in await store.newest_sops(conn, self.clock()):
            try:
                sop = await self.sop_in_force(conn, stored.district_code)
            except Unroutable as exc:
                log.error("sop in force unreadable", district=stored.district_code,
                          reason=exc.reason)  # fmt: skip
                in_force.pop(stored.district_code, None)
                continue
            in_force[stored.district_code] = InForce(sop, SopOrigin.PUBLISHED, stored.sha256)
        return in_force

    async def sops_in_force(self, conn: Connection) -> dict[str, tuple[Sop, str]]:
        """District -> (SOP in force, where it came from: 'published' or 'file')."""
        return {
            district: (found.sop, found.origin.value)
            for district, found in (await self.documents_in_force(conn)).items()
        }

    async def announce_in_force(
        self, conn: Connection, clock: Clock, *, at_start: bool = True
    ) -> list[str]:
        """Stage ``sop.in_force`` for each SOP in force not announced before (the files, the
        versions published before routing announced them, a version whose effective date
        has come); return their labels. The deadline watcher calls it on its ticks."""
        announced = []
        now = clock()
        for district, found in sorted((await self.documents_in_force(conn)).items()):
            if at_start:
                self.in_force_at_start[district] = found.sop.version
            if await self._announce(conn, found, now):
                announced.append(found.sop.label)
        return announced

    async def _announce(self, conn: Connection, found: InForce, now: datetime) -> bool:
        sop = found.sop
        if not await store.add_sop_announcement(
            conn, sop.district_code, sop.version, found.sha256, now
        ):
            return False
        await add_to_outbox(
            conn, sop_in_force(sop, found.sha256, found.origin, now, current_traceparent())
        )
        return True

    async def log_in_force(self, conn: Connection) -> None:
        for district, (sop, origin) in sorted((await self.sops_in_force(conn)).items()):
            log.info("sop in force", district=district, sop_id=sop.sop_id,
                     sop_version=sop.version, origin=origin)  # fmt: skip

    async def publish_sop(
        self,
        conn: Connection,
        text: str,
        published_by: str,
        clock: Clock,
        *,
        districts: Collection[str] | None,
        override: OverrideReason | None = None,
    ) -> PublishedSop:
        """Publish a version directly (no proposal). Allowed when it asks no agency more than
        the version in force does; otherwise ``override`` must say why it binds them without
        their sign-off (recorded in ``sop.published``), else NeedsSignOff. The publisher
        serves ``districts`` (None: every district).

        Raises SopError (every problem, with its line), SopNotServed, SopConflict or
        NeedsSignOff; nothing changes then, and the version in force stays.
        """
        sop = parse_sop(text, origin="published document", run_examples=example_problems)
        if districts is not None and sop.district_code not in districts:
            raise SopNotServed(sop.district_code)
        sha256 = hashlib.sha256(text.encode()).hexdigest()
        await store.lock_district_sops(conn, sop.district_code)
        existing = await store.get_sop(conn, sop.district_code, sop.version)
        if existing is not None and existing.sha256 == sha256:
            return PublishedSop(sop, sha256, existing.published_at, False, existing.effective_at)
        current = await self.latest_version(
            conn, sop.district_code, await self.check_follows(conn, sop)
        )
        asked = duty_changes(current, sop)
        if asked and override is None:
            raise NeedsSignOff(sop.label, asked)
        publication = Publication(
            override_reason=override if asked else None,
            agencies_not_agreed=tuple(a.agency_id for a in asked),
        )
        published = await self.store_published(
            conn, sop, text, sha256, published_by, clock, publication
        )
        await supersede_open_proposal(
            conn, sop.district_code, at=published.published_at, by=published_by
        )
        return published

    async def latest_version(
        self, conn: Connection, district: str, current: Sop | None
    ) -> Sop | None:
        """What a new version is compared with: the newest published, even one in force only
        from a later date, else ``current`` (the one in force). Comparing with the one in force
        alone would let a proposal undo, unasked, what a scheduled version relaxed."""
        highest = await store.newest_published_version(conn, district)
        if highest is None or (current is not None and highest <= current.version):
            return current
        stored = await store.get_sop(conn, district, highest)
        assert stored is not None
        return parse_sop(stored.yaml, origin=f"published {district} v{highest}")

    async def check_follows(self, conn: Connection, sop: Sop) -> Sop | None:
        """The SOP in force for the district (None: none), once sure ``sop``'s version follows
        it and every version published (in effect or still to come); else SopConflict."""
        existing = await store.get_sop(conn, sop.district_code, sop.version)
        if existing is not None:
            raise SopConflict(
                f"{sop.label} was already published with other content: raise the version"
            )
        try:
            current: Sop | None = await self.sop_in_force(conn, sop.district_code)
        except Rejected:
            current = None
        if current is not None and sop.version <= current.version:
            raise SopConflict(
                f"{current.label} is in force: publish a version above {current.version}, "
                f"not {sop.version}"
            )
        highest = await store.newest_published_version(conn, sop.district_code)
        if highest is not None and sop.version <= highest:
            raise SopConflict(
                f"SOP {sop.district_code} v{highest} is published, in force from a later date: "
                f"publish a version above {highest}, not {sop.version}"
            )
        return current

    async def store_published(
        self,
        conn: Connection,
        sop: Sop,
        text: str,
        sha256: str,
        published_by: str,
        clock: Clock,
        publication: Publication,
    ) -> PublishedSop:
        """Store a checked version and stage ``sop.published``; ``sop.in_force`` is staged now
        if it takes effect now, else by the deadline watcher once its date has come."""
        now = clock()
        effective_at = max(publication.effective_at or now, now)
        await store.add_sop(
            conn,
            store.StoredSop(
                district_code=sop.district_code,
                version=sop.version,
                sop_id=sop.sop_id,
                yaml=text,
                sha256=sha256,
                published_by=published_by,
                published_at=now,
                effective_at=effective_at,
                proposal_id=publication.proposal_id,
                override_reason=publication.override_reason,
                agencies_not_agreed=list(publication.agencies_not_agreed),
            ),
        )
        await add_to_outbox(
            conn,
            sop_published(
                sop,
                sha256,
                published_by,
                now,
                current_traceparent(),
                effective_at=effective_at,
                proposal_id=publication.proposal_id,
                override_reason=publication.override_reason,
                agencies_not_agreed=publication.agencies_not_agreed,
            ),
        )
        if effective_at <= now:
            await self._announce(conn, InForce(sop, SopOrigin.PUBLISHED, sha256), now)
        log.info(
            "sop published",
            sop_id=sop.sop_id,
            sop_version=sop.version,
            district=sop.district_code,
            sha256=sha256,
            published_by=published_by,
            effective_at=effective_at.isoformat(),
            proposal_id=publication.proposal_id,
            override_reason=publication.override_reason,
        )
        return PublishedSop(sop, sha256, now, True, effective_at)


async def supersede_open_proposal(
    conn: Connection, district: str, *, at: datetime, by: str, superseded_by: str | None = None
) -> None:
    """Close the district's open proposal as superseded (by a newer proposal, or by a version
    published directly) and say so in ``sop.proposal_withdrawn``: the ledger shows why it
    ended, and notify tells the agencies it asked that they need not answer."""
    open_one = await store.open_proposal(conn, district)
    if open_one is None:
        return
    await store.close_proposals(
        conn, district, "superseded", at=at, by=by, proposal_id=open_one.proposal_id
    )
    await add_to_outbox(
        conn,
        sop_proposal_withdrawn(
            open_one, by, at, current_traceparent(), superseded_by=superseded_by
        ),
    )
