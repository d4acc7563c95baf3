"""The console's door: server-rendered pages for each person in the design's table, calling
the services' public APIs with the signed-in person's own token.

Every page is a module-level route on ``router``; what it needs at request time (the sign-ins,
the services' clients, the templates, the settings) it takes from ``app.state`` through the
small dependencies below, which ``bootstrap.py`` fills in. The exception handlers and the
``guard`` middleware turn every failure into a page a person can act on; ``bootstrap.py``
installs them."""

import asyncio
import hashlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from console import cadre, form, monitoring_view, proposal_view, supervision, views
from console.assets import IMMUTABLE, REVALIDATE, Assets, accepts_gzip
from console.i18n import Translator, language_of
from console.session import LANGUAGE_COOKIE, SESSION_COOKIE, Session, same_origin
from console.settings import ConsoleSettings
from console.signins import SignIns
from console.stats_view import stats_view
from console.store import PostgresSessions, SessionsUnavailable
from console.upstream import (
    Invalid,
    NotAllowed,
    NotFound,
    SignInNeeded,
    SopRefused,
    Unavailable,
    UpstreamError,
    Upstreams,
)
from rujuk_contracts.events import (
    CASE_ID_PATTERN,
    PROPOSAL_ID_PATTERN,
    DeclineReason,
    DisclosurePurpose,
    ReplyKind,
)
from rujuk_runtime.logs import get_logger
from rujuk_runtime.webapp import from_app_state

log = get_logger(__name__)

HOME = {
    "operator": "/reports/new",
    "partner": "/inbox",
    "coordinator": "/coordinator",
    "auditor": "/audit",
    "cadre": "/cadre/",
}
CASE_ID = re.compile(CASE_ID_PATTERN)
DISTRICT_CODE = re.compile(r"[0-9]{4}")  # a BPS regency code, such as 3514
REFERRAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ALERT_ID = re.compile(r"[0-9A-Za-z-]{1,100}")  # routing's: `<referral id>-oncall`
NOTE_MAX_CHARS = 1000  # what intake keeps of a note (POST /v1/cases/{case_id}/notes)
TOKEN_SHAPE = re.compile(r"[\x21-\x7e]{1,512}")  # visible ASCII: what a bearer token can be
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
COMPRESS_FROM_BYTES = 1000  # smaller pages gain less from gzip than its framing costs

router = APIRouter()


class SignInRequired(Exception):
    """No session, or one that ended or expired: go to the sign-in page."""


class RoleRefused(Exception):
    """Signed in, but this page is for other roles."""


class PageProblem(Exception):
    """A page that cannot be shown, with a reason for a person and an HTTP status."""

    def __init__(self, status: int, message: str, **params: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.params = params


# --- what a page needs, from app.state (set in bootstrap.py) --------------------------------


def signins_of(request: Request) -> SignIns:
    signins: SignIns = request.app.state.signins
    return signins


def templates_of(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


SettingsDep = Annotated[ConsoleSettings, from_app_state("settings")]
ZoneDep = Annotated[ZoneInfo, from_app_state("zone")]  # times shown and typed in (CONSOLE_TIMEZONE)
UpstreamsDep = Annotated[Upstreams, from_app_state("upstreams")]
SignInsDep = Annotated[SignIns, from_app_state("signins")]
DatabaseDep = Annotated[PostgresSessions | None, from_app_state("database")]
AssetsDep = Annotated[Assets, from_app_state("assets")]


# --- rendering ------------------------------------------------------------------------------


def translator(request: Request) -> Translator:
    return Translator(language_of(request.cookies.get(LANGUAGE_COOKIE)))


async def current(request: Request) -> Session | None:
    """The request's live session (looked up once), or None."""
    if not hasattr(request.state, "session"):
        signins = signins_of(request)
        request.state.session = await signins.resume(request.cookies.get(SESSION_COOKIE))
    found: Session | None = request.state.session
    return found


def crash_loops(request: Request) -> list[supervision.CrashLoop]:
    """The processes `rujuk up`'s supervisor says keep crashing (CONSOLE_SUPERVISION_FILE).
    Under compose or systemd there is no such file: none, and no error."""
    settings: ConsoleSettings = request.app.state.settings
    if not settings.supervision_file:
        return []
    try:
        text = Path(settings.supervision_file).read_text()
    except OSError:
        return []
    return supervision.crash_loops(text)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    t = translator(request)
    # The session a dependency of this page found; pages without one show no one.
    session = getattr(request.state, "session", None)
    response = templates_of(request).TemplateResponse(
        request,
        template,
        {
            "t": t,
            "lang": t.language,
            "session": session,
            # A cadre's sign-out, on every page, warns and wipes its queue (cadre-signout.js).
            "cadre_signout": cadre.signout_words(session.token_id)
            if session is not None and session.role == "cadre"
            else None,
            "crash_loops": crash_loops(request),
            **context,
        },
        status_code=status,
    )
    return response


# --- lists that refresh themselves: unchanged, they answer 304 ----------------------------


def build_of(templates: Path, assets: Assets) -> str:
    """A digest of the templates and static files this console serves."""
    digest = hashlib.sha256()
    for path in sorted(templates.rglob("*.html")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for asset in assets:
        digest.update(asset.versioned.encode())
    return digest.hexdigest()[:16]


def etag_of(request: Request, *shown: object) -> str:
    """The ETag of a list: a digest of what it shows (the services' answers, not the rendered
    HTML, whose countdowns change every second while the script keeps them current), in
    which language, by which build of the console."""
    build: str = request.app.state.build
    language = translator(request).language
    text = json.dumps([build, language, shown], sort_keys=True, default=str)
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:24] + '"'


def unchanged(request: Request, etag: str) -> bool:
    asked = request.headers.get("if-none-match", "")
    return etag in (tag.strip() for tag in asked.split(","))


def refreshed_list(request: Request, template: str, etag: str, **context: Any) -> Response:
    """A list's refresh: 304 with no body when the browser shows it already, else the list."""
    if unchanged(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    response = render(request, template, etag=etag, **context)
    response.headers["ETag"] = etag
    return response


# --- who may see what -----------------------------------------------------------------------


def signed_in(*roles: str) -> Callable[[Request], Awaitable[Session]]:
    """A dependency: the request's session, if its role is one of ``roles``."""

    async def dependency(request: Request) -> Session:
        session = await current(request)
        if session is None:
            raise SignInRequired
        if session.role not in roles:
            raise RoleRefused
        return session

    return dependency


Operator = Annotated[Session, Depends(signed_in("operator"))]
CaseReader = Annotated[Session, Depends(signed_in("operator", "coordinator", "cadre"))]
Partner = Annotated[Session, Depends(signed_in("partner"))]
Coordinator = Annotated[Session, Depends(signed_in("coordinator"))]
Auditor = Annotated[Session, Depends(signed_in("auditor", "coordinator"))]
Cadre = Annotated[Session, Depends(signed_in("cadre"))]


def checked_case_id(case_id: str) -> str:
    case_id = case_id.strip().upper()
    if not CASE_ID.fullmatch(case_id):
        raise PageProblem(404, "error.bad_case_id")
    return case_id


# --- errors: never a traceback, always a page a person can act on ---------------------------


def to_sign_in(request: Request, reason: str) -> Response:
    target = f"/signin?{reason}=1"
    if request.headers.get("HX-Request"):  # htmx follows this instead of swapping
        response: Response = Response(status_code=204, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def problem_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "problem.html", status=status, message=message)


async def sign_in_required(request: Request, _: SignInRequired) -> Response:
    return to_sign_in(request, "expired" if request.cookies.get(SESSION_COOKIE) else "first")


async def sessions_unavailable(request: Request, exc: SessionsUnavailable) -> Response:
    log.warning("sessions unavailable", path=request.url.path, error=str(exc))
    return problem_page(request, 503, translator(request)("error.sessions_unavailable"))


async def role_refused(request: Request, _: RoleRefused) -> Response:
    return problem_page(request, 403, translator(request)("error.forbidden"))


async def page_problem(request: Request, exc: PageProblem) -> Response:
    return problem_page(request, exc.status, translator(request)(exc.message, **exc.params))


async def upstream_failed(request: Request, exc: UpstreamError) -> Response:
    t = translator(request)
    log.warning("upstream refused", service=exc.service, status=exc.status, path=request.url.path)
    if isinstance(exc, SignInNeeded):
        await end_sessions_of_refused_token(request)
        return to_sign_in(request, "expired")
    if isinstance(exc, NotAllowed):
        detail = f" ({exc.detail})" if exc.detail else ""
        return problem_page(request, 403, t("error.forbidden") + detail)
    if isinstance(exc, NotFound):
        return problem_page(request, 404, t("error.not_found", what=exc.detail or exc.service))
    if isinstance(exc, Unavailable):
        return problem_page(request, 503, t("error.unavailable", service=exc.service))
    if isinstance(exc, Invalid):
        return problem_page(request, 400, t("error.bad_request", detail=exc.detail))
    status = exc.status if 400 <= exc.status < 500 else 502  # e.g. 409, 413
    return problem_page(
        request, status, t("error.upstream", service=exc.service, detail=exc.detail)
    )


async def end_sessions_of_refused_token(request: Request) -> None:
    session = getattr(request.state, "session", None)
    if session is None:  # refused at sign-in: no session yet
        return
    try:
        await signins_of(request).token_refused(session.token_id)
    except SessionsUnavailable as exc:  # this cookie still goes; the others end on use
        log.warning("sessions unavailable", path=request.url.path, error=str(exc))


async def http_problem(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        return problem_page(
            request, 404, translator(request)("error.not_found", what=request.url.path)
        )
    return problem_page(request, exc.status_code, str(exc.detail))


async def unexpected(request: Request, exc: Exception) -> Response:
    log.error("console page failed", path=request.url.path, error=type(exc).__name__)
    return problem_page(request, 500, translator(request)("error.title"))


# What bootstrap.py installs with ``app.add_exception_handler``.
EXCEPTION_HANDLERS: dict[type[Exception], Callable[..., Awaitable[Response]]] = {
    SignInRequired: sign_in_required,
    SessionsUnavailable: sessions_unavailable,
    RoleRefused: role_refused,
    PageProblem: page_problem,
    UpstreamError: upstream_failed,
    StarletteHTTPException: http_problem,
    Exception: unexpected,
}


async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """The console's one middleware: cross-site POSTs refused, security headers on every
    response."""
    # A POST must come from a page of this console: SameSite=Strict keeps the session
    # cookie off cross-site requests, and this check refuses them outright.
    if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(
        request.headers.get("origin"),
        request.headers.get("referer"),
        request.headers.get("host"),
    ):
        response: Response = problem_page(request, 403, translator(request)("error.cross_site"))
    else:
        response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def set_cookie(
    response: Response, name: str, value: str, max_age: int, *, strict: bool, secure: bool
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=secure,
        samesite="strict" if strict else "lax",
    )


# --- ops, language, sign-in -----------------------------------------------------------------


@router.get("/healthz", include_in_schema=False)
async def healthz(database: DatabaseDep) -> Response:
    checks = {"postgres": await database.healthy()} if database is not None else {}
    ok = all(checks.values())
    return JSONResponse({"service": "console", "ok": ok, **checks}, 200 if ok else 503)


@router.get("/static/{name}", include_in_schema=False)
async def static_file(request: Request, name: str, assets: AssetsDep) -> Response:
    """A static file: by its versioned name kept a year (immutable), by its plain name asked
    about each time; gzip-compressed for the browsers that take it."""
    found = assets.find(name)
    if found is None:
        raise StarletteHTTPException(404)
    asset, versioned = found
    headers = {
        "Cache-Control": IMMUTABLE if versioned else REVALIDATE,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
    }
    if unchanged(request, asset.etag):
        return Response(status_code=304, headers=headers)
    if asset.gzipped is not None and accepts_gzip(request.headers.get("accept-encoding")):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.content, media_type=asset.media_type, headers=headers)


@router.get("/lang")
async def switch_language(settings: SettingsDep, to: str = "id", next: str = "/") -> Response:
    # Only a path of this console: "//host" and "/\\host" would leave it.
    target = next if next.startswith("/") and not next.startswith(("//", "/\\")) else "/"
    response = RedirectResponse(target, status_code=303)
    set_cookie(
        response,
        LANGUAGE_COOKIE,
        language_of(to),
        365 * 86400,
        strict=False,
        secure=settings.secure_cookies,
    )
    return response


@router.get("/")
async def start(request: Request) -> Response:
    session = await current(request)
    return RedirectResponse(HOME[session.role] if session else "/signin", status_code=303)


@router.get("/signin")
async def sign_in_page(request: Request, expired: str = "", signed_out: str = "") -> Response:
    notice = "signin.expired" if expired else "signin.signed_out" if signed_out else ""
    return render(request, "signin.html", notice=notice, error="")


@router.post("/signin")
async def sign_in(
    request: Request,
    upstreams: UpstreamsDep,
    signins: SignInsDep,
    settings: SettingsDep,
    token: Annotated[str, Form()] = "",
) -> Response:
    token = token.strip()
    try:
        # Only what could be a token goes into an Authorization header: no one issued one
        # with spaces, control or non-ASCII characters, which a header cannot carry.
        who = await upstreams.whoami(token) if TOKEN_SHAPE.fullmatch(token) else None
    except SignInNeeded:
        who = None
    if who is None or who.get("role") not in HOME:
        return render(request, "signin.html", status=401, notice="", error="signin.bad_token")
    token_id, role = str(who["token_id"]), str(who["role"])
    agency_id = who.get("agency_id")
    listed = who.get("districts")  # None: province level, or a partner
    districts = [str(code) for code in listed] if isinstance(listed, list) else None
    # A new sign-in in this browser replaces its session: the old cookie opens nothing.
    await signins.sign_out(request.cookies.get(SESSION_COOKIE))
    sealed = await signins.start(
        token, token_id, role, str(agency_id) if agency_id else None, districts
    )
    response = RedirectResponse(HOME[role], status_code=303)
    set_cookie(
        response,
        SESSION_COOKIE,
        sealed,
        signins.max_age_seconds,
        strict=True,
        secure=settings.secure_cookies,
    )
    log.info("signed in", token_id=token_id, role=role, districts=districts)
    return response


@router.post("/signout")
async def sign_out(request: Request, signins: SignInsDep) -> Response:
    # Ended on the server: the cookie, wherever a copy of it went, opens nothing now.
    if await signins.sign_out(request.cookies.get(SESSION_COOKIE)):
        log.info("signed out")
    response = RedirectResponse("/signin?signed_out=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- the districts a person serves -----------------------------------------------------------


async def districts_served(upstreams: Upstreams, session: Session) -> tuple[str, ...]:
    """The districts to offer: the token's own, or for a province-level one every district
    with an SOP in force (routing's GET /v1/sops). Without routing's answer, none: the pages
    then ask for a code as text, and intake and routing still decide."""
    if session.districts is not None:
        return session.districts
    try:
        return tuple(await upstreams.districts_in_force(session.token))
    except SignInNeeded:
        raise
    except UpstreamError as exc:
        log.warning("districts in force unknown", service=exc.service, status=exc.status)
        return ()


def chosen_district(session: Session, asked: str) -> str | None:
    """The district a coordinator narrowed a page to, or None for all it serves. One it
    does not serve is refused here (routing would refuse it too)."""
    asked = asked.strip().replace(".", "")
    if not asked:
        return None
    if not DISTRICT_CODE.fullmatch(asked):
        raise PageProblem(400, "error.bad_district")
    if session.districts is not None and asked not in session.districts:
        raise PageProblem(403, "error.district_not_served", district=asked)
    return asked


# --- operator: file a report, follow its case -----------------------------------------------


async def report_form(
    request: Request,
    upstreams: Upstreams,
    session: Session,
    values: form.FormValues,
    problems: form.PlacedProblems,
    idempotency_key: str,
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "report.html",
        status=status,
        groups=form.groups(),
        values=values,
        problems=problems,
        idempotency_key=idempotency_key,
        districts=await districts_served(upstreams, session),
    )


@router.get("/reports/new")
async def new_report(request: Request, session: Operator, upstreams: UpstreamsDep) -> Response:
    return await report_form(
        request,
        upstreams,
        session,
        {"district_code": ""},
        form.PlacedProblems(),
        secrets.token_urlsafe(18),
    )


@router.post("/reports")
async def file_report(
    request: Request, session: Operator, upstreams: UpstreamsDep, zone: ZoneDep
) -> Response:
    submitted = await request.form()
    pairs = [(k, v) for k, v in submitted.multi_items() if isinstance(v, str)]
    values = form.values_from(pairs)
    key = str(submitted.get("idempotency_key") or secrets.token_urlsafe(18))[:200]
    try:
        accepted = await upstreams.file_report(session.token, form.report_body(values, zone), key)
    except Invalid as refused:
        placed = form.place_problems(refused.problems)
        return await report_form(request, upstreams, session, values, placed, key, status=422)
    case_id = quote(str(accepted["case_id"]), safe="")
    return RedirectResponse(f"/cases/{case_id}?filed=1", status_code=303)


@router.get("/cases")
async def find_case(request: Request, _: CaseReader, case_id: str = "") -> Response:
    if not case_id:
        return render(request, "find_case.html", action="/cases")
    return RedirectResponse(f"/cases/{quote(checked_case_id(case_id), safe='')}", 303)


async def case_context(
    request: Request, upstreams: Upstreams, session: Session, case_id: str
) -> dict[str, Any]:
    status = await upstreams.case_status(session.token, checked_case_id(case_id))
    return {"case": status, "etag": etag_of(request, status)}


@router.get("/cases/{case_id}")
async def case_page(
    request: Request,
    case_id: str,
    session: CaseReader,
    upstreams: UpstreamsDep,
    filed: str = "",
) -> Response:
    context = await case_context(request, upstreams, session, case_id)
    return render(request, "case.html", filed=bool(filed), **context)


@router.get("/cases/{case_id}/status")
async def case_status_fragment(
    request: Request, case_id: str, session: CaseReader, upstreams: UpstreamsDep
) -> Response:
    context = await case_context(request, upstreams, session, case_id)
    return refreshed_list(request, "_case_status.html", **context)


# --- cadre: a report from the village, offline first ----------------------------------------


@router.get("/cadre/")
async def cadre_page(request: Request, session: Cadre, upstreams: UpstreamsDep) -> Response:
    """The cadre's form, which works without signal: its service worker keeps this page,
    and static/cadre.js queues reports on the device, encrypted, until they are sent."""
    who = await upstreams.whoami(session.token)
    return render(
        request,
        "cadre.html",
        areas=cadre.areas_of(who.get("areas")),
        district=(session.districts or ("",))[0],
        owner=cadre.owner_of(session.token_id),
        expires=session.expires_at.isoformat() if session.expires_at else "",
        fields=form.FIELDS_BY_PATH,
    )


@router.get("/cadre/sw.js", include_in_schema=False)
async def cadre_service_worker(request: Request, assets: AssetsDep) -> Response:
    """The service worker that keeps the cadre's page and its files for when there is no
    signal. It holds no one's data; its version is the console's build."""
    body = (
        templates_of(request)
        .get_template("cadre_sw.js")
        .render(build=request.app.state.build, shell=CADRE_SHELL, static_url=assets.url)
    )
    return Response(
        body,
        media_type="application/javascript",
        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/cadre/"},
    )


CADRE_SHELL = (
    "console.css",
    "cadre-queue.js",
    "cadre-signout.js",
    "cadre.js",
    "cadre-icon.svg",
    "cadre-icon-192.png",
)


@router.get("/cadre/manifest.webmanifest", include_in_schema=False)
async def cadre_manifest(request: Request, assets: AssetsDep) -> Response:
    t = translator(request)
    manifest = {
        "name": t("cadre.app_name"),
        "short_name": "rujuk",
        "lang": t.language,
        "start_url": "/cadre/",
        "scope": "/cadre/",
        "display": "standalone",
        "background_color": "#fafafa",
        "theme_color": "#0b5cad",
        "icons": [
            {"src": assets.url("cadre-icon.svg"), "sizes": "any", "type": "image/svg+xml"},
            {"src": assets.url("cadre-icon-192.png"), "sizes": "192x192", "type": "image/png"},
            {"src": assets.url("cadre-icon-512.png"), "sizes": "512x512", "type": "image/png"},
        ],
    }
    return JSONResponse(
        manifest, media_type="application/manifest+json", headers={"Cache-Control": "no-cache"}
    )


@router.post("/cadre/reports")
async def cadre_file_report(request: Request, session: Cadre, upstreams: UpstreamsDep) -> Response:
    """One queued report, sent by the page's script: JSON in, JSON out. 202 with the case
    id; 422 with the reasons in the page's language; 401 when the cadre must sign in again;
    503 when intake cannot be reached (the report stays queued); 409 when the queue it comes
    from (``Rujuk-Queue-Owner``) is another cadre's: a report waiting on a shared phone is
    never filed in the name of whoever signed in next."""
    if request.headers.get("rujuk-queue-owner") != cadre.owner_of(session.token_id):
        return JSONResponse({"signin": True}, 409)
    key = request.headers.get("idempotency-key", "")
    raw = await request.body()
    if not key or len(key) > 200 or len(raw) > cadre.REPORT_MAX_BYTES:
        return JSONResponse({"reasons": [translator(request)("cadre.invalid")]}, 400)
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return JSONResponse({"reasons": [translator(request)("cadre.invalid")]}, 400)
    try:
        accepted = await upstreams.file_report(session.token, body, key)
    except Invalid as refused:
        reasons = cadre.refusal_reasons(refused.problems, translator(request))
        return JSONResponse({"reasons": reasons}, 422)
    except SignInNeeded:
        await end_sessions_of_refused_token(request)
        return JSONResponse({"signin": True}, 401)
    except UpstreamError as exc:
        log.warning("cadre report not sent", service=exc.service, status=exc.status)
        return JSONResponse({"retry": True}, 503)
    log.info("cadre report filed", case_id=accepted.get("case_id"), token_id=session.token_id)
    return JSONResponse({"case_id": accepted.get("case_id")}, 202)


# --- partner: inbox, replies, disclosure ----------------------------------------------------


async def inbox_context(request: Request, upstreams: Upstreams, session: Session) -> dict[str, Any]:
    referrals = await upstreams.referrals(
        session.token, agency_id=session.agency_id, open=True, limit=200
    )
    items = views.inbox(referrals, datetime.now(UTC))
    return {
        "items": items,
        # A deadline passing changes the list (it is marked late) as much as a new referral.
        "etag": etag_of(request, referrals, [item.overdue for item in items]),
        "decline_reasons": [str(r) for r in DeclineReason],
        "note_max_chars": NOTE_MAX_CHARS,
    }


@router.get("/inbox")
async def inbox_page(
    request: Request, session: Partner, upstreams: UpstreamsDep, sent: str = ""
) -> Response:
    sent = sent if sent in {*ReplyKind, "duplicate"} else ""
    context = await inbox_context(request, upstreams, session)
    return render(request, "inbox.html", sent=sent, **context)


@router.get("/inbox/items")
async def inbox_items(request: Request, session: Partner, upstreams: UpstreamsDep) -> Response:
    context = await inbox_context(request, upstreams, session)
    return refreshed_list(request, "_inbox_items.html", **context)


@router.post("/referrals/{referral_id}/reply")
async def reply(
    referral_id: str,
    session: Partner,
    upstreams: UpstreamsDep,
    reply: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    case_id: Annotated[str, Form()] = "",
) -> Response:
    if not REFERRAL_ID.fullmatch(referral_id) or reply not in set(ReplyKind):
        raise PageProblem(400, "error.title")
    body: dict[str, Any] = {"reply": reply}
    if reply == ReplyKind.DECLINE:
        body["reason"] = reason or None
        if note.strip():  # free text goes to intake's vault; the reply names it by id
            if reason not in set(DeclineReason) or not CASE_ID.fullmatch(case_id):
                raise PageProblem(400, "error.title")
            written = await upstreams.write_note(session.token, case_id, "decline_note", note)
            body["note_ref"] = written["note_id"]
    answer = await upstreams.reply(session.token, referral_id, body)
    shown = "duplicate" if answer.get("status") == "duplicate" else reply
    return RedirectResponse(f"/inbox?sent={shown}", status_code=303)


DISCLOSURE_FORM: dict[str, Any] = {
    "purposes": [str(p) for p in DisclosurePurpose],
    "note_max_chars": NOTE_MAX_CHARS,
}


@router.get("/cases/{case_id}/details")
async def details_warning(request: Request, case_id: str, _: Partner) -> Response:
    return render(
        request, "details_confirm.html", case_id=checked_case_id(case_id), **DISCLOSURE_FORM
    )


@router.post("/cases/{case_id}/details")
async def details(
    request: Request,
    case_id: str,
    session: Partner,
    upstreams: UpstreamsDep,
    purpose: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """The purpose is a code; the partner's own words, if any, are kept at intake as a
    disclosure note (sealed under the case's key) and the read names it by id."""
    case_id = checked_case_id(case_id)
    try:
        note_ref = None
        if note.strip() and purpose in set(DisclosurePurpose):
            kept = await upstreams.write_note(session.token, case_id, "disclosure_note", note)
            note_ref = kept["note_id"]
        disclosed = await upstreams.case_details(session.token, case_id, purpose, note_ref)
    except Invalid as refused:
        return render(
            request,
            "details_confirm.html",
            status=422,
            case_id=case_id,
            purpose=purpose,
            note=note,
            problem=refused.detail,
            **DISCLOSURE_FORM,
        )
    return render(request, "details.html", case_id=case_id, disclosure=disclosed)


# --- coordinator: what is open, what is late, monitoring & evaluation -----------------------


def period(since: str, until: str, today: date) -> tuple[str, str]:
    """The ``from``/``to`` dates of a coordinator's query, the last 30 days by default,
    earlier one first."""
    try:
        start = date.fromisoformat(since) if since else today - timedelta(days=29)
        end = date.fromisoformat(until) if until else today
    except ValueError as exc:
        raise PageProblem(400, "error.title") from exc
    return (
        (start.isoformat(), end.isoformat())
        if start <= end
        else (end.isoformat(), start.isoformat())
    )


def asked_period(request: Request, zone: ZoneInfo) -> tuple[str, str]:
    today = datetime.now(zone).date()
    return period(request.query_params.get("from", ""), request.query_params.get("to", ""), today)


async def open_overview(
    upstreams: Upstreams, session: Session, district: str | None
) -> views.OpenOverview:
    referrals = await upstreams.referrals(session.token, open=True, limit=500)
    return views.open_overview(views.in_district(referrals, district))


async def oncall_board(
    upstreams: Upstreams,
    session: Session,
    shown_before: str | None = None,
    unreadable_before: bool = False,
) -> views.OnCallBoard:
    """The open on-call alerts of every district the token serves, whatever ``?district=``
    narrows: an exhausted chain is never out of sight. Without routing's answer the section
    says so instead of showing nothing (or, on a refresh, an old list as if it were now)."""
    try:
        alerts: list[Any] | None = await upstreams.oncall_alerts(session.token)
    except SignInNeeded:
        raise
    except UpstreamError as exc:
        log.warning("on-call alerts unknown", service=exc.service, status=exc.status)
        alerts = None
    return views.oncall_board(alerts, datetime.now(UTC), shown_before, unreadable_before)


def acknowledged_shown(request: Request) -> dict[str, Any]:
    """The confirmation after an acknowledgement: the case id, and whether someone had
    acknowledged the alert before."""
    case_id = request.query_params.get("acknowledged", "")
    return {
        "acknowledged": case_id if CASE_ID.fullmatch(case_id) else "",
        "acknowledged_before": bool(request.query_params.get("before")),
    }


@router.get("/coordinator")
async def coordinator_page(
    request: Request,
    session: Coordinator,
    upstreams: UpstreamsDep,
    zone: ZoneDep,
    district: str = "",
) -> Response:
    start, end = asked_period(request, zone)
    chosen = chosen_district(session, district)
    # The page's five questions are independent: asked at once, the page waits for the
    # slowest (a year's figures), not for the sum of them.
    oncall, stats, overview, unrouted, districts = await asyncio.gather(
        oncall_board(upstreams, session),
        upstreams.stats(session.token, start, end, chosen),
        open_overview(upstreams, session, chosen),
        upstreams.unrouted_cases(session.token),
        districts_served(upstreams, session),
    )
    return render(
        request,
        "coordinator.html",
        oncall=oncall,
        **acknowledged_shown(request),
        start=start,
        end=end,
        district=chosen,
        districts=districts,
        overview=overview,
        open_etag=etag_of(request, overview, chosen),
        charts=stats_view(stats, translator(request)),
        unrouted=unrouted,
        unrouted_etag=etag_of(request, unrouted),
        routed=routed
        if CASE_ID.fullmatch(routed := request.query_params.get("routed", ""))
        else "",
    )


@router.get("/coordinator/open")
async def coordinator_open(
    request: Request, session: Coordinator, upstreams: UpstreamsDep, district: str = ""
) -> Response:
    chosen = chosen_district(session, district)
    overview = await open_overview(upstreams, session, chosen)
    etag = etag_of(request, overview, chosen)
    return refreshed_list(
        request, "_coordinator_open.html", etag, overview=overview, district=chosen
    )


@router.get("/coordinator/unrouted")
async def coordinator_unrouted(
    request: Request, session: Coordinator, upstreams: UpstreamsDep
) -> Response:
    unrouted = await upstreams.unrouted_cases(session.token)
    etag = etag_of(request, unrouted)
    return refreshed_list(request, "_coordinator_unrouted.html", etag, unrouted=unrouted)


@router.post("/coordinator/cases/{case_id}/route")
async def route_case_again(case_id: str, session: Coordinator, upstreams: UpstreamsDep) -> Response:
    """Routing's 409 (still no SOP in force, ...) becomes a page that says why."""
    case_id = checked_case_id(case_id)
    await upstreams.route_case(session.token, case_id)
    return RedirectResponse(f"/coordinator?routed={quote(case_id, safe='')}#unrouted", 303)


@router.get("/coordinator/alerts")
async def coordinator_alerts(
    request: Request,
    session: Coordinator,
    upstreams: UpstreamsDep,
    shown: str = "",
    unreadable: str = "",
) -> Response:
    """The section's refresh: ``shown`` and ``unreadable`` are what it showed last time; a
    confirmation it showed stays."""
    oncall = await oncall_board(upstreams, session, shown, bool(unreadable))
    return render(request, "_coordinator_alerts.html", oncall=oncall, **acknowledged_shown(request))


@router.post("/coordinator/alerts/{alert_id}/acknowledge")
async def acknowledge_alert(
    alert_id: str, session: Coordinator, upstreams: UpstreamsDep
) -> Response:
    """Routing stops paging and records who acknowledged; its 404 (an alert unknown, or of
    a district the token does not serve) becomes the not-found page."""
    if not ALERT_ID.fullmatch(alert_id):
        raise PageProblem(404, "error.not_found", what=alert_id[:100])
    answer = await upstreams.acknowledge_alert(session.token, alert_id)
    alert = answer.get("alert")
    case_id = str(alert.get("case_id", "")) if isinstance(alert, dict) else ""
    query = f"acknowledged={quote(case_id, safe='')}" if CASE_ID.fullmatch(case_id) else ""
    if answer.get("first") is False:
        query += "&before=1"
    log.info("on-call alert acknowledged", alert_id=alert_id, case_id=case_id,
             first=answer.get("first"))  # fmt: skip
    return RedirectResponse(f"/coordinator?{query.lstrip('&')}#oncall", 303)


@router.get("/coordinator/stats.csv")
async def coordinator_csv(
    request: Request,
    session: Coordinator,
    upstreams: UpstreamsDep,
    zone: ZoneDep,
    district: str = "",
) -> Response:
    start, end = asked_period(request, zone)
    chosen = chosen_district(session, district)
    download = await upstreams.stats_csv(session.token, start, end, chosen)
    return Response(
        download.content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"'},
    )


# --- coordinator: the rakor's monitoring summary -------------------------------------------


def asked_monitoring_period(request: Request, zone: ZoneInfo) -> monitoring_view.ChosenPeriod:
    query = request.query_params
    try:
        return monitoring_view.chosen_period(
            query.get("period", ""),
            query.get("month", ""),
            query.get("quarter", ""),
            query.get("year", ""),
            query.get("from", ""),
            query.get("to", ""),
            datetime.now(zone).date(),
        )
    except monitoring_view.BadPeriod as exc:
        raise PageProblem(400, "error.title") from exc


async def monitoring_district(
    upstreams: Upstreams, session: Session, asked: str
) -> tuple[str | None, tuple[str, ...]]:
    """The one district the summary is about (the first the token serves unless one is
    asked for), and the districts to choose from. None only when a province-level token's
    districts are unknown (routing did not answer): then routing counts them all."""
    chosen = chosen_district(session, asked)
    districts = await districts_served(upstreams, session)
    if chosen is None and districts:
        chosen = districts[0]
    return chosen, districts


@router.get("/coordinator/monitoring")
async def monitoring_page(
    request: Request,
    session: Coordinator,
    upstreams: UpstreamsDep,
    zone: ZoneDep,
    district: str = "",
) -> Response:
    """The figures a rakor needs for one district and period; ``?print=1``: the same on one
    printable page, with the district, the period and when it was made."""
    chosen = asked_monitoring_period(request, zone)
    where, districts = await monitoring_district(upstreams, session, district)
    start, end = chosen.start.isoformat(), chosen.end.isoformat()
    figures = await upstreams.monitoring(session.token, start, end, where)
    t = translator(request)
    query = {"period": chosen.kind, "from": start, "to": end}
    query |= {"month": chosen.month, "quarter": chosen.quarter, "year": str(chosen.year)}
    if where:
        query["district"] = where
    printable = request.query_params.get("print") == "1"
    return render(
        request,
        "monitoring_print.html" if printable else "monitoring.html",
        chosen=chosen,
        label=monitoring_view.period_label(chosen, t),
        district=where,
        districts=districts,
        quarters=monitoring_view.quarter_choices(datetime.now(zone).date(), t),
        years=monitoring_view.year_choices(datetime.now(zone).date()),
        view=monitoring_view.monitoring_view(figures, t),
        generated_at=figures.get("generated_at"),
        escalation_reasons=monitoring_view.ESCALATION_REASONS,
        decline_reasons=monitoring_view.DECLINE_REASONS,
        query=urlencode(query),
    )


@router.get("/coordinator/monitoring.csv")
async def monitoring_csv(
    request: Request,
    session: Coordinator,
    upstreams: UpstreamsDep,
    zone: ZoneDep,
    district: str = "",
) -> Response:
    chosen = asked_monitoring_period(request, zone)
    where, _ = await monitoring_district(upstreams, session, district)
    download = await upstreams.monitoring_csv(
        session.token, chosen.start.isoformat(), chosen.end.isoformat(), where
    )
    return Response(
        download.content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"'},
    )


# --- coordinator and partner: SOP proposals ---------------------------------------------------
# A coordinator proposes a version, reads it beside the version in force, runs its impact
# simulation, publishes or withdraws it; a partner reads the proposals naming its agency and
# agrees or objects. Every call is routing's, with the person's own token.

PROPOSAL_ID = re.compile(PROPOSAL_ID_PATTERN)
SIMULATION_ID = re.compile(r"^sim-[0-9a-f]{32}$")  # routing's
MAX_DOCUMENT_BYTES = 512 * 1024  # what routing takes (routing.http.MAX_SOP_BYTES)
NO_PROPOSAL = "sop.no_proposal"


def checked_proposal_id(proposal_id: str) -> str:
    if not PROPOSAL_ID.fullmatch(proposal_id):
        raise PageProblem(404, NO_PROPOSAL)
    return proposal_id


def checked_simulation_id(simulation_id: str) -> str:
    if not SIMULATION_ID.fullmatch(simulation_id):
        raise PageProblem(404, "sim.none")
    return simulation_id


# --- coordinator: the SOPs in force and their proposals -------------------------------------


async def sops_context(upstreams: Upstreams, session: Session) -> dict[str, Any]:
    """Per district served: the SOP in force, its open proposal and its past ones."""
    in_force = await upstreams.sops_in_force(session.token)
    proposals = await upstreams.sop_proposals(session.token)
    codes = sorted(set(await districts_served(upstreams, session)) | set(in_force))
    if session.districts is not None:
        codes = [code for code in codes if code in session.districts]
    districts = [
        {
            "code": code,
            "in_force": in_force.get(code),
            "open": [
                p for p in proposals if p.get("district_code") == code and p.get("state") == "open"
            ],
            "past": [
                p for p in proposals if p.get("district_code") == code and p.get("state") != "open"
            ],
        }
        for code in codes
    ]
    return {"districts": districts, "max_bytes": MAX_DOCUMENT_BYTES}


@router.get("/coordinator/sops")
async def sops_page(request: Request, session: Coordinator, upstreams: UpstreamsDep) -> Response:
    return render(request, "sops.html", **await sops_context(upstreams, session))


async def uploaded_document(request: Request, pasted: str) -> str:
    """The YAML sent: the file chosen, else the text pasted."""
    sent = await request.form()
    chosen = sent.get("file")
    if isinstance(chosen, UploadFile) and chosen.filename:
        raw = await chosen.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise PageProblem(413, "sop.too_large", kib=MAX_DOCUMENT_BYTES // 1024)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PageProblem(400, "sop.not_utf8") from exc
    if len(pasted.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
        raise PageProblem(413, "sop.too_large", kib=MAX_DOCUMENT_BYTES // 1024)
    return pasted


@router.post("/coordinator/sops/proposals")
async def propose(
    request: Request,
    session: Coordinator,
    upstreams: UpstreamsDep,
    document: Annotated[str, Form()] = "",
) -> Response:
    """Routing's 422 (every error with its line) and 409 (the version does not follow the
    one in force) are shown above the form, with the text kept."""
    text = await uploaded_document(request, document)
    if not text.strip():
        problem, errors, status = translator(request)("sop.empty"), [], 422
    else:
        try:
            proposed = await upstreams.propose_sop(session.token, text)
        except SopRefused as refused:
            problem, errors, status = refused.detail, refused.errors, 422
        except UpstreamError as exc:
            if exc.status != 409:
                raise
            problem, errors, status = exc.detail, [], 409
        else:
            proposal_id = str(proposed.get("proposal_id", ""))
            return RedirectResponse(
                f"/coordinator/sops/proposals/{quote(proposal_id, safe='')}", 303
            )
    context = await sops_context(upstreams, session)
    return render(
        request,
        "sops.html",
        status=status,
        problem=problem,
        errors=errors,
        document=text,
        **context,
    )


# --- coordinator: one proposal ---------------------------------------------------------------


async def proposal_context(
    request: Request, upstreams: Upstreams, session: Session, proposal_id: str
) -> dict[str, Any]:
    t = translator(request)
    proposal = await upstreams.sop_proposal(session.token, checked_proposal_id(proposal_id))
    district = str(proposal.get("district_code", ""))
    in_force = (await upstreams.sops_in_force(session.token)).get(district)
    document = await upstreams.sop_proposal_document(session.token, proposal_id)
    return {
        "proposal": proposal_view.proposal_view(proposal, t),
        "raw": proposal,
        "diff": proposal_view.diff_view(proposal.get("diff") or {}),
        "in_force": in_force,
        "document": document,
        "objection_reasons": proposal_view.OBJECTION_REASONS,
    }


async def simulation_shown(
    request: Request,
    upstreams: Upstreams,
    session: Session,
    raw: dict[str, Any],
    simulation_id: str,
) -> proposal_view.SimulationView | None:
    """The simulation of this proposal's document, or None (none asked, or another's)."""
    if not simulation_id:
        return None
    found = await upstreams.simulation(session.token, checked_simulation_id(simulation_id))
    if not proposal_view.simulation_of(found, raw):
        raise PageProblem(404, "sim.not_this_proposal")
    return proposal_view.simulation_view(found, translator(request))


async def coordinator_proposal(
    request: Request,
    upstreams: Upstreams,
    session: Session,
    zone: ZoneInfo,
    proposal_id: str,
    simulation_id: str = "",
    status: int = 200,
    **extra: Any,
) -> Response:
    context = await proposal_context(request, upstreams, session, proposal_id)
    shown = await simulation_shown(request, upstreams, session, context["raw"], simulation_id)
    return render(
        request,
        "proposal.html",
        status=status,
        simulation=shown,
        days_offered=proposal_view.SIMULATION_DAYS,
        default_days=proposal_view.DEFAULT_SIMULATION_DAYS,
        override_reasons=proposal_view.OVERRIDE_REASONS,
        now_local=proposal_view.local_minute(datetime.now(UTC), zone),
        **context,
        **extra,
    )


@router.get("/coordinator/sops/proposals/{proposal_id}")
async def proposal_page(
    request: Request,
    proposal_id: str,
    session: Coordinator,
    upstreams: UpstreamsDep,
    zone: ZoneDep,
    simulation: str = "",
    done: str = "",
) -> Response:
    done = done if done in ("published", "withdrawn") else ""
    return await coordinator_proposal(
        request, upstreams, session, zone, proposal_id, simulation, done=done
    )


@router.post("/coordinator/sops/proposals/{proposal_id}/simulation")
async def start_simulation(
    proposal_id: str,
    session: Coordinator,
    upstreams: UpstreamsDep,
    days: Annotated[str, Form()] = "",
    since: Annotated[str, Form(alias="from")] = "",
    until: Annotated[str, Form(alias="to")] = "",
) -> Response:
    """The proposal's own document, simulated over the district's past cases."""
    proposal_id = checked_proposal_id(proposal_id)
    try:
        params = proposal_view.simulation_period(days.strip(), since.strip(), until.strip())
    except proposal_view.BadInput as exc:
        raise PageProblem(400, "sim.bad_period") from exc
    document = await upstreams.sop_proposal_document(session.token, proposal_id)
    try:
        started = await upstreams.start_simulation(session.token, document, params)
    except SopRefused as refused:
        raise PageProblem(422, "error.bad_request", detail="; ".join(refused.errors)) from refused
    simulation_id = quote(str(started.get("simulation_id", "")), safe="")
    return RedirectResponse(
        f"/coordinator/sops/proposals/{proposal_id}?simulation={simulation_id}#simulation", 303
    )


@router.get("/coordinator/sops/proposals/{proposal_id}/simulation/{simulation_id}")
async def simulation_fragment(
    request: Request,
    proposal_id: str,
    simulation_id: str,
    session: Coordinator,
    upstreams: UpstreamsDep,
) -> Response:
    """The simulation's section, asked for again by htmx while it runs; once done or failed
    it comes back without the trigger, so the polling stops."""
    proposal = await upstreams.sop_proposal(session.token, checked_proposal_id(proposal_id))
    shown = await simulation_shown(request, upstreams, session, proposal, simulation_id)
    return render(request, "_simulation.html", simulation=shown, proposal_id=proposal_id)


@router.post("/coordinator/sops/proposals/{proposal_id}/publish")
async def publish(
    request: Request,
    proposal_id: str,
    session: Coordinator,
    upstreams: UpstreamsDep,
    zone: ZoneDep,
    effective_at: Annotated[str, Form()] = "",
    shown_now: Annotated[str, Form()] = "",
    override_reason: Annotated[str, Form()] = "",
) -> Response:
    """Routing's 409 (who objected, who has yet to answer) and 422 (a date in the past) are
    shown on the proposal's page, above the form."""
    proposal_id = checked_proposal_id(proposal_id)
    if override_reason and override_reason not in proposal_view.OVERRIDE_REASONS:
        raise PageProblem(400, "sop.bad_override")
    try:
        when = proposal_view.effective_at(effective_at, shown_now, zone)
    except proposal_view.BadInput as exc:
        raise PageProblem(400, "sop.bad_effective_at") from exc
    try:
        await upstreams.publish_proposal(session.token, proposal_id, when, override_reason or None)
    except (Invalid, UpstreamError) as exc:
        if not isinstance(exc, Invalid) and exc.status != 409:
            raise
        return await coordinator_proposal(
            request,
            upstreams,
            session,
            zone,
            proposal_id,
            status=exc.status,
            publish_problem=exc.detail,
            typed_effective_at=effective_at[:16],
        )
    return RedirectResponse(f"/coordinator/sops/proposals/{proposal_id}?done=published", 303)


@router.post("/coordinator/sops/proposals/{proposal_id}/withdraw")
async def withdraw(proposal_id: str, session: Coordinator, upstreams: UpstreamsDep) -> Response:
    proposal_id = checked_proposal_id(proposal_id)
    await upstreams.withdraw_proposal(session.token, proposal_id)
    return RedirectResponse(f"/coordinator/sops/proposals/{proposal_id}?done=withdrawn", 303)


# --- partner: the proposals that name its agency --------------------------------------------


@router.get("/sops")
async def partner_sops(request: Request, session: Partner, upstreams: UpstreamsDep) -> Response:
    proposals = await upstreams.sop_proposals(session.token)
    t = translator(request)
    return render(
        request,
        "partner_sops.html",
        proposals=[(p, proposal_view.proposal_view(p, t)) for p in proposals],
    )


@router.get("/sops/proposals/{proposal_id}")
async def partner_proposal(
    request: Request, proposal_id: str, session: Partner, upstreams: UpstreamsDep, sent: str = ""
) -> Response:
    context = await proposal_context(request, upstreams, session, proposal_id)
    duties = context["raw"].get("duty_changes") or {}
    own = duties.get(session.agency_id) if isinstance(duties, dict) else None
    return render(
        request,
        "partner_proposal.html",
        own_duties=[
            proposal_view.duty_line(c, translator(request))
            for c in own or []
            if isinstance(c, dict)
        ],
        sent=sent if sent in ("agree", "object") else "",
        **context,
    )


@router.post("/sops/proposals/{proposal_id}/answer")
async def answer(
    proposal_id: str,
    session: Partner,
    upstreams: UpstreamsDep,
    decision: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Routing refuses an agency the proposal does not ask (403) and a closed proposal
    (409): both become a page that says why."""
    proposal_id = checked_proposal_id(proposal_id)
    if decision not in ("agree", "object"):
        raise PageProblem(400, "sop.bad_answer")
    if decision == "object" and reason not in proposal_view.OBJECTION_REASONS:
        raise PageProblem(400, "sop.reason_needed")
    await upstreams.answer_proposal(
        session.token, proposal_id, decision, reason if decision == "object" else None
    )
    return RedirectResponse(f"/sops/proposals/{proposal_id}?sent={decision}", 303)


# --- auditor: a case's hand-offs from the ledger, the case's proof, the bundle ---------------


@router.get("/audit")
async def audit_lookup(request: Request, _: Auditor, case_id: str = "") -> Response:
    if not case_id:
        return render(request, "find_case.html", action="/audit")
    return RedirectResponse(f"/audit/cases/{quote(checked_case_id(case_id), safe='')}", 303)


@router.get("/audit/cases/{case_id}")
async def audit_case(
    request: Request, case_id: str, session: Auditor, upstreams: UpstreamsDep
) -> Response:
    case_id = checked_case_id(case_id)
    history = await upstreams.case_history(session.token, case_id)
    verdict = await upstreams.verify_case(session.token, case_id)
    return render(
        request,
        "audit_case.html",
        case_id=case_id,
        steps=views.timeline(history),
        verdict=verdict,
    )


@router.get("/audit/cases/{case_id}/bundle")
async def audit_bundle(case_id: str, session: Auditor, upstreams: UpstreamsDep) -> Response:
    case_id = checked_case_id(case_id)
    download = await upstreams.case_bundle(session.token, case_id)
    return Response(
        download.content,
        media_type=download.media_type,
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"'},
    )
