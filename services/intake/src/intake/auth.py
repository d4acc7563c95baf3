"""Bearer tokens: their format, whom they may be bound to, and the bootstrap setting (intake
owns tokens). Pure policy: storing, revoking and listing them is ``intake.store``.

A token is ``rujuk_`` + 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits). Only
its sha256 is stored. A slow password hash (bcrypt, argon2) protects *low-entropy* secrets from
guessing after a database leak; a 256-bit random secret cannot be guessed whatever the hash
speed, so a slow hash would only add ~100 ms of CPU to every request (and bcrypt truncates at
72 bytes). sha256 also lets the lookup be one indexed equality query.

Each issue and revocation is announced (``token.issued`` with the hash, never the secret or
the label; ``token.revoked``, both made by ``intake.events``) through the outbox in the same
transaction, so every service's token projection follows; checking a token is
``rujuk_runtime.access``, shared by all.
"""

import re
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from rujuk_contracts.events import DISTRICT_CODE_PATTERN, Role
from rujuk_contracts.subjects import AGENCY_ID_PATTERN

__all__ = [
    "BootstrapToken",
    "Role",
    "TokenError",
    "TokenInfo",
    "cadre_place",
    "check_agency_in_force",
    "check_areas",
    "check_binding",
    "parse_bootstrap_tokens",
    "partner_scope",
]

TOKEN_PREFIX = "rujuk_"  # noqa: S105 (a prefix, not a secret)
BOOTSTRAP_LABEL = "bootstrap (INTAKE_BOOTSTRAP_TOKENS)"
_AGENCY_ID = re.compile(AGENCY_ID_PATTERN)
_DISTRICT = re.compile(DISTRICT_CODE_PATTERN)
PROVINCE = "province"
AREA_SEPARATOR = "/"  # "Kraksaan/Desa Contoh": a village of a kecamatan
AREAS_AT_MOST = 20
PLACE_NAME_CHARS = 64  # as Report.kecamatan and Report.village


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    role: Role
    agency_id: str | None
    districts: tuple[str, ...] | None  # None: province level (or a partner)
    label: str | None
    created_at: datetime
    revoked_at: datetime | None
    areas: tuple[str, ...] | None = None  # a cadre's kecamatan or villages

    @property
    def bound_to(self) -> str:
        """``agency:…``, ``province``, the districts, or a cadre's district and areas
        (``3513:Kraksaan/Desa Contoh``), as `rujuk token list` shows it."""
        if self.role is Role.PARTNER:
            return f"agency:{self.agency_id}"
        if self.role is Role.CADRE and self.districts and self.areas:
            return f"{self.districts[0]}:{';'.join(self.areas)}"
        return PROVINCE if self.districts is None else ",".join(self.districts)


@dataclass(frozen=True)
class BootstrapToken:
    role: Role
    agency_id: str | None
    districts: tuple[str, ...] | None
    secret: str


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    return "tok-" + secrets.token_hex(6)


def bootstrap_token_id(secret_sha256: bytes) -> str:
    """A bootstrap token's id derives from its hash: the next start finds it known."""
    return "boot-" + secret_sha256[:6].hex()


def check_binding(
    role: Role,
    agency_id: str | None,
    districts: Iterable[str] = (),
    *,
    province: bool = False,
) -> tuple[str, ...] | None:
    """What the token is bound to, checked: the districts it serves (sorted, without dots),
    or None for a partner (bound to ``agency_id``) or a province-level token.

    An operator, coordinator or auditor names its districts or is province-level, never
    neither: a token with no stated reach would have to be read as all or nothing. (A
    partner's ``--district`` is not a binding: ``partner_scope``.)
    """
    codes = sorted({code.strip().replace(".", "") for code in districts})
    if role is Role.PARTNER:
        if not agency_id:
            raise TokenError("a partner token needs --agency / token mitra perlu --agency")
        if not _AGENCY_ID.fullmatch(agency_id):
            raise TokenError(
                f"agency id {agency_id!r} must be lowercase letters, digits and dashes"
            )
        if codes or province:
            raise TokenError(
                "token mitra terikat pada lembaganya, bukan kabupaten / a partner token is "
                "bound to its agency, not to districts"
            )
        return None
    if agency_id is not None:
        raise TokenError("only a partner token is bound to an agency")
    if role is Role.CADRE and (province or len(codes) != 1):
        raise TokenError(
            "token kader terikat pada satu kabupaten (--district KODE) / a cadre token is "
            "bound to one district (--district CODE)"
        )
    if province and codes:
        raise TokenError(
            "pilih --district atau --province, bukan keduanya / give --district or --province, "
            "not both"
        )
    if province:
        return None
    if not codes:
        raise TokenError(
            f"token {role.value} perlu --district KODE (bisa diulang) atau --province / "
            f"a {role.value} token needs --district CODE (repeatable) or --province"
        )
    for code in codes:
        if not _DISTRICT.fullmatch(code):
            raise TokenError(
                f"kabupaten {code!r} harus kode BPS seperti 3514 / district {code!r} must be a "
                "BPS regency code such as 3514"
            )
    return tuple(codes)


def tidy_place(name: str) -> str:
    """A kecamatan's or village's name as compared: spaces collapsed, case kept."""
    return " ".join(name.split())


def same_place(one: str, other: str) -> bool:
    """Names compared as SOP rules compare them: ignoring case and repeated spaces."""
    return tidy_place(one).casefold() == tidy_place(other).casefold()


def partner_scope(role: Role, districts: Iterable[str]) -> tuple[str, ...]:
    """The districts a partner's ``--district`` names: where its agency must be in the
    directory in force or asked by an open proposal. The token stays bound to the agency
    alone (routing and notify fence a partner by agency); for other roles, none."""
    if role is not Role.PARTNER:
        return ()
    codes = sorted({code.strip().replace(".", "") for code in districts})
    for code in codes:
        if not _DISTRICT.fullmatch(code):
            raise TokenError(
                f"kabupaten {code!r} harus kode BPS seperti 3514 / district {code!r} must be a "
                "BPS regency code such as 3514"
            )
    return tuple(codes)


def check_areas(role: Role, areas: Iterable[str]) -> tuple[str, ...] | None:
    """A cadre's areas, tidied: each a kecamatan (``Kraksaan``) or a village of one
    (``Kraksaan/Desa Contoh``), at least one; None for every other role, which names none."""
    given = [a for a in areas if a.strip()]
    if role is not Role.CADRE:
        if given:
            raise TokenError("only a cadre token is bound to kecamatan or villages (--area)")
        return None
    if not given:
        raise TokenError(
            "token kader perlu --area KECAMATAN atau KECAMATAN/DESA (bisa diulang) / a cadre "
            "token needs --area KECAMATAN or KECAMATAN/VILLAGE (repeatable)"
        )
    tidied: list[str] = []
    for area in given:
        parts = [tidy_place(p) for p in area.split(AREA_SEPARATOR)]
        if len(parts) > 2 or not all(parts) or any(len(p) > PLACE_NAME_CHARS for p in parts):
            raise TokenError(
                f"wilayah {area!r} harus KECAMATAN atau KECAMATAN/DESA / area {area!r} must be "
                f"KECAMATAN or KECAMATAN/VILLAGE, each at most {PLACE_NAME_CHARS} characters"
            )
        tidy = AREA_SEPARATOR.join(parts)
        if not any(same_place(tidy, known) for known in tidied):
            tidied.append(tidy)
    if len(tidied) > AREAS_AT_MOST:
        raise TokenError(f"at most {AREAS_AT_MOST} areas for one cadre token")
    return tuple(sorted(tidied, key=str.casefold))


@dataclass(frozen=True)
class PlaceRefused:
    """A cadre's report names a place outside its areas: which field, and why."""

    field: str  # kecamatan or village
    reason: str


def _area(area: str) -> tuple[str, str | None]:
    kecamatan, _, village = area.partition(AREA_SEPARATOR)
    return kecamatan, village or None


def cadre_place(
    areas: Sequence[str], kecamatan: str | None, village: str | None
) -> tuple[str, str | None] | PlaceRefused:
    """Where a cadre's report happened, within the cadre's areas: the (kecamatan, village)
    the report is filed with, or why it is refused (Bahasa Indonesia / English).

    A kecamatan or village left out is the cadre's own when it has only one; a village
    left out under an area that is a whole kecamatan stays unknown."""
    places = [_area(a) for a in areas]
    if not kecamatan and len({k.casefold() for k, _ in places}) == 1:
        kecamatan = places[0][0]
    if not kecamatan:
        return PlaceRefused(
            "kecamatan", "pilih kecamatan wilayah Anda / name the kecamatan, one of your areas"
        )
    mine = [(k, v) for k, v in places if same_place(k, kecamatan)]
    if not mine:
        return PlaceRefused(
            "kecamatan",
            f"kecamatan {tidy_place(kecamatan)} di luar wilayah Anda / kecamatan "
            f"{tidy_place(kecamatan)} is outside your areas ({'; '.join(areas)})",
        )
    if any(v is None for _, v in mine):  # the whole kecamatan is the cadre's
        return mine[0][0], village
    villages = [v for _, v in mine if v is not None]
    if not village and len(villages) == 1:
        village = villages[0]
    if not village:
        return PlaceRefused(
            "village", "pilih desa wilayah Anda / name the village, one of your areas"
        )
    if not any(same_place(village, v) for v in villages):
        return PlaceRefused(
            "village",
            f"desa {tidy_place(village)} di luar wilayah Anda / village {tidy_place(village)} "
            f"is outside your areas ({'; '.join(areas)})",
        )
    return mine[0][0], next(v for v in villages if same_place(village, v))


def check_agency_in_force(
    agency_id: str,
    named: Mapping[str, Collection[str]],
    asked: Mapping[str, Collection[str]] | None = None,
    districts: Collection[str] = (),
) -> None:
    """A partner's agency must be in the directory of an SOP in force (``named``: district ->
    the agency ids its SOP names) or asked to sign off an open SOP proposal (``asked``:
    district -> the agency ids its open proposals ask), in ``districts`` when given; else
    TokenError saying which districts were checked and never listing the agencies they name."""
    asked = asked or {}
    if districts:
        named = {d: named[d] for d in districts if d in named}
        asked = {d: asked[d] for d in districts if d in asked}
    if any(agency_id in agencies for agencies in (*named.values(), *asked.values())):
        return
    if not named and not asked and not districts:
        raise TokenError(
            "intake belum mengetahui SOP yang berlaku / intake knows no SOP in force yet: "
            "routing announces them when it starts (`rujuk up`); try again then"
        )
    in_force = ", ".join(sorted(named)) or "-"
    proposing = ", ".join(sorted(asked)) or "-"
    raise TokenError(
        f"lembaga {agency_id} tidak ada di direktori SOP yang berlaku dan tidak diminta "
        f"menyetujui usulan SOP yang terbuka / agency {agency_id} is not in the directory of "
        f"any SOP in force (SOPs checked: districts {in_force}) nor asked to sign off an open "
        f"SOP proposal (open proposals: districts {proposing}); check the id, or publish or "
        "propose an SOP that names it"
    )


def parse_bootstrap_tokens(spec: str) -> list[BootstrapToken]:
    """``ROLE:BINDING=SECRET``, comma-separated. BINDING is the agency of a partner, and
    ``province`` or district codes joined by ``+`` (``3514+3513``) for the other roles.

    For deployments and local stacks that must start with a working token (e.g. the demo's
    operator). Secrets shorter than 32 characters are refused.
    """
    tokens: list[BootstrapToken] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        who, sep, secret = part.partition("=")
        role_name, _, binding = who.partition(":")
        if not sep or len(secret) < 32:
            raise TokenError(
                "bootstrap tokens are ROLE:BINDING=SECRET (BINDING: a partner's agency, or "
                "province, or districts as 3514+3513), secret ≥ 32 characters"
            )
        try:
            role = Role(role_name.strip())
        except ValueError as exc:
            raise TokenError(f"unknown role {role_name!r} in bootstrap tokens") from exc
        if role is Role.CADRE:
            raise TokenError(
                "a cadre token is made with `rujuk token create --role cadre --district … "
                "--area …`, one per cadre, not as a bootstrap token"
            )
        binding = binding.strip()
        if role is Role.PARTNER:
            districts = check_binding(role, binding or None)
            agency = binding or None
        else:
            codes = [] if binding in ("", PROVINCE) else binding.split("+")
            try:
                districts = check_binding(role, None, codes, province=binding == PROVINCE)
            except TokenError as exc:
                raise TokenError(
                    f"bootstrap {role.value} token: {exc} (write {role.value}:province=… or "
                    f"{role.value}:3514=…)"
                ) from exc
            agency = None
        tokens.append(BootstrapToken(role, agency, districts, secret.strip()))
    return tokens
