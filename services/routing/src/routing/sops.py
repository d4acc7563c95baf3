"""The SOPs in force: the files read at start, and the versions published since (in
PostgreSQL, so every routing replica applies a new version from the moment it is committed);
publishing a new version."""

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from routing import store
from routing.clock import Clock
from routing.events import sop_published
from routing.sop import Sop, SopLibrary, load_sop_folder, parse_sop
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)


class SopConflict(Exception):
    """A published SOP whose version cannot follow the one in force."""


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


class SopsInForce:
    """Which SOP applies to a district: the newest version published, else the district's file.
    Keeps each published version parsed once."""

    def __init__(self, library: SopLibrary | None = None) -> None:
        self.library = library or SopLibrary()  # the files: where nothing was published
        self._published: dict[tuple[str, int, str], Sop] = {}  # (district, version, sha256)

    def load_sops(self, folder: Path) -> SopLibrary:
        """Read every SOP in the folder; a broken one is refused, the others stay."""
        self.library = load_sop_folder(folder)
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
            raise Rejected(f"the SOP for district {district} was refused at start (see the log)")
        raise Rejected(f"no SOP for district {district}")

    async def sop_in_force(self, conn: Connection, district: str) -> Sop:
        """The newest version published for the district, else its SOP file.

        Asked of the database for every case (one indexed row), so every routing replica
        applies a new version from the moment it is committed; parsed once per version.
        """
        newest = await store.newest_sop(conn, district)
        if newest is None:
            return self.sop_for(district)
        version, sha256 = newest
        key = (district, version, sha256)
        sop = self._published.get(key)
        if sop is None:
            stored = await store.get_sop(conn, district, version)
            assert stored is not None
            sop = parse_sop(stored.yaml, origin=f"published {district} v{version}")
            self._published[key] = sop
        return sop

    async def sops_in_force(self, conn: Connection) -> dict[str, tuple[Sop, str]]:
        """District -> (SOP in force, where it came from: 'published' or 'file')."""
        in_force = {district: (sop, "file") for district, sop in self.library.sops.items()}
        for stored in await store.newest_sops(conn):
            in_force[stored.district_code] = (
                await self.sop_in_force(conn, stored.district_code),
                "published",
            )
        return in_force

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
    ) -> PublishedSop:
        """Validate, store and announce a new SOP version; it applies to new cases only.
        The publisher serves ``districts`` (None: every district).

        Raises SopError (every problem, with its line), SopNotServed or SopConflict; nothing
        changes then, and the version in force stays.
        """
        sop = parse_sop(text, origin="published document")
        if districts is not None and sop.district_code not in districts:
            raise SopNotServed(sop.district_code)
        sha256 = hashlib.sha256(text.encode()).hexdigest()
        await store.lock_district_sops(conn, sop.district_code)
        existing = await store.get_sop(conn, sop.district_code, sop.version)
        if existing is not None:
            if existing.sha256 == sha256:
                return PublishedSop(sop, sha256, existing.published_at, created=False)
            raise SopConflict(
                f"{sop.label} was already published with other content: raise the version"
            )
        try:
            current = await self.sop_in_force(conn, sop.district_code)
        except Rejected:
            current = None
        if current is not None and sop.version <= current.version:
            raise SopConflict(
                f"{current.label} is in force: publish a version above {current.version}, "
                f"not {sop.version}"
            )
        now = clock()
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
            ),
        )
        await add_to_outbox(
            conn, sop_published(sop, sha256, published_by, now, current_traceparent())
        )
        log.info(
            "sop published",
            sop_id=sop.sop_id,
            sop_version=sop.version,
            district=sop.district_code,
            sha256=sha256,
            published_by=published_by,
        )
        return PublishedSop(sop, sha256, now, created=True)
