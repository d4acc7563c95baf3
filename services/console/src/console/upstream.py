"""The console's only way to the services: their public HTTP APIs, one client per service,
always with the signed-in person's own bearer token. Failures become typed errors the pages
turn into something a person can act on."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from console.settings import ConsoleSettings

SERVICES = ("intake", "routing", "notify", "audit")
ONCALL_PAGE = 500  # routing's largest page
ONCALL_PAGES_AT_MOST = 20  # 10,000 open alerts: a bound on calls, far past any real count


@dataclass
class UpstreamError(Exception):
    service: str
    status: int
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.service} answered {self.status}: {self.detail}"


class SignInNeeded(UpstreamError):
    """401: the token is unknown, revoked or missing."""


class NotAllowed(UpstreamError):
    """403: the role or agency may not do this."""


class NotFound(UpstreamError):
    """404 (or 410: the case's data was erased)."""


@dataclass
class Invalid(UpstreamError):
    """422: the body or query was refused, field by field."""

    problems: list[dict[str, Any]] = field(default_factory=list)


class Unavailable(UpstreamError):
    """The service cannot be reached, timed out, or failed (5xx)."""


@dataclass
class SopRefused(UpstreamError):
    """422 for an SOP document: every problem routing found in it, each with its line."""

    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Download:
    content: bytes
    media_type: str
    filename: str | None


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return body.get("detail", body) if isinstance(body, dict) else body


def _raise_for(service: str, response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = _detail(response)
    text = detail if isinstance(detail, str) else ""
    if status == 401:
        raise SignInNeeded(service, status, text)
    if status == 403:
        raise NotAllowed(service, status, text)
    if status in (404, 410):
        raise NotFound(service, status, text)
    if status == 422:
        problems = detail if isinstance(detail, list) else [{"field": "", "problem": str(detail)}]
        raise Invalid(
            service, status, "; ".join(str(p.get("problem")) for p in problems), problems=problems
        )
    if status >= 500:
        raise Unavailable(service, status, text)
    raise UpstreamError(service, status, text or str(detail))


def _segment(value: str) -> str:
    return quote(value, safe="")


class Upstreams:
    """One ``httpx.AsyncClient`` per service; ``transports`` lets tests stand in for them."""

    def __init__(
        self,
        settings: ConsoleSettings,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        urls = {
            "intake": settings.intake_url,
            "routing": settings.routing_url,
            "notify": settings.notify_url,
            "audit": settings.audit_url,
        }
        transports = transports or {}
        self._clients = {
            name: httpx.AsyncClient(
                base_url=url.rstrip("/"),
                timeout=settings.upstream_timeout_seconds,
                transport=transports.get(name),
            )
            for name, url in urls.items()
        }

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def _send(
        self,
        service: str,
        method: str,
        path: str,
        token: str,
        *,
        ok: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        try:
            response = await self._clients[service].request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(service, 0, type(exc).__name__) from exc
        if response.status_code not in ok:
            _raise_for(service, response)
        return response

    async def _json(self, service: str, method: str, path: str, token: str, **kwargs: Any) -> Any:
        response = await self._send(service, method, path, token, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise Unavailable(service, response.status_code, "not JSON") from exc

    # --- intake ---------------------------------------------------------------------------

    async def whoami(self, token: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._json("intake", "GET", "/v1/whoami", token)
        return found

    async def token_valid(self, token: str) -> bool | None:
        """Intake's verdict on a token: True valid, False refused (unknown or revoked),
        None when intake gave no answer (down, timed out, or anything but 200 and 401)."""
        try:
            await self.whoami(token)
        except SignInNeeded:
            return False
        except UpstreamError:
            return None
        return True

    async def file_report(
        self, token: str, body: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        accepted: dict[str, Any] = await self._json(
            "intake",
            "POST",
            "/v1/reports",
            token,
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        return accepted

    async def case_status(self, token: str, case_id: str) -> dict[str, Any]:
        status: dict[str, Any] = await self._json(
            "intake", "GET", f"/v1/cases/{_segment(case_id)}", token
        )
        return status

    async def case_details(
        self, token: str, case_id: str, purpose: str, note_ref: str | None = None
    ) -> dict[str, Any]:
        params = {"purpose": purpose, **({"note_ref": note_ref} if note_ref else {})}
        details: dict[str, Any] = await self._json(
            "intake", "GET", f"/v1/cases/{_segment(case_id)}/details", token, params=params
        )
        return details

    async def write_note(self, token: str, case_id: str, kind: str, text: str) -> dict[str, Any]:
        """Keep free text at intake, sealed under the case's key; its ``note_id`` is what an
        action sends (``note_ref``), never the text."""
        written: dict[str, Any] = await self._json(
            "intake",
            "POST",
            f"/v1/cases/{_segment(case_id)}/notes",
            token,
            json={"kind": kind, "text": text},
        )
        return written

    # --- routing --------------------------------------------------------------------------

    async def referrals(self, token: str, **filters: str | int | bool | None) -> list[Any]:
        params = {
            k: str(v).lower() if isinstance(v, bool) else v
            for k, v in filters.items()
            if v is not None
        }
        found = await self._json("routing", "GET", "/v1/referrals", token, params=params)
        items = found.get("items", found.get("referrals")) if isinstance(found, dict) else found
        return list(items or [])

    async def unrouted_cases(self, token: str) -> list[Any]:
        """Cases routing could not route, in the districts the token serves, oldest first."""
        found = await self._json("routing", "GET", "/v1/cases/unrouted", token)
        cases = found.get("cases") if isinstance(found, dict) else None
        return list(cases or [])

    async def route_case(self, token: str, case_id: str) -> dict[str, Any]:
        """Route an unrouted case again; 409 (UpstreamError) says why it still cannot be."""
        routed: dict[str, Any] = await self._json(
            "routing", "POST", f"/v1/cases/{_segment(case_id)}/route", token
        )
        return routed

    async def oncall_alerts(self, token: str) -> list[Any]:
        """Every on-call alert nobody has acknowledged yet, in the districts the token serves,
        oldest first: each page of routing's list, so none is left out."""
        alerts: list[Any] = []
        offset: object = 0
        for _ in range(ONCALL_PAGES_AT_MOST):
            found = await self._json(
                "routing",
                "GET",
                "/v1/oncall/alerts",
                token,
                params={"open": "true", "limit": ONCALL_PAGE, "offset": offset},
            )
            if not isinstance(found, dict):
                break
            alerts.extend(found.get("alerts") or [])
            offset = found.get("next_offset")
            if not isinstance(offset, int):
                break
        return alerts

    async def acknowledge_alert(self, token: str, alert_id: str) -> dict[str, Any]:
        """Acknowledge an on-call alert: its pages stop. ``first`` is false when someone
        had acknowledged it already; 404 (NotFound) for one the token does not see."""
        answer: dict[str, Any] = await self._json(
            "routing", "POST", f"/v1/oncall/alerts/{_segment(alert_id)}/acknowledge", token
        )
        return answer

    async def stats(
        self, token: str, since: str, until: str, district: str | None = None
    ) -> dict[str, Any]:
        stats: dict[str, Any] = await self._json(
            "routing", "GET", "/v1/stats", token, params=_period(since, until, district)
        )
        return stats

    async def stats_csv(
        self, token: str, since: str, until: str, district: str | None = None
    ) -> Download:
        response = await self._send(
            "routing", "GET", "/v1/stats.csv", token, params=_period(since, until, district)
        )
        return _download(response, f"rujuk-stats-{since}-{until}.csv")

    async def monitoring(
        self, token: str, since: str, until: str, district: str | None = None
    ) -> dict[str, Any]:
        """The rakor's figures (routing's GET /v1/monitoring) for the period and district."""
        figures: dict[str, Any] = await self._json(
            "routing", "GET", "/v1/monitoring", token, params=_period(since, until, district)
        )
        return figures

    async def monitoring_csv(
        self, token: str, since: str, until: str, district: str | None = None
    ) -> Download:
        response = await self._send(
            "routing", "GET", "/v1/monitoring.csv", token, params=_period(since, until, district)
        )
        return _download(response, f"rujuk-monitoring-{since}-{until}.csv")

    async def districts_in_force(self, token: str) -> list[str]:
        """The districts with an SOP in force that the token may see (routing's GET /v1/sops,
        which any role may read), sorted."""
        found = await self._json("routing", "GET", "/v1/sops", token)
        in_force = found.get("in_force") if isinstance(found, dict) else None
        return sorted(str(code) for code in in_force) if isinstance(in_force, dict) else []

    async def sops_in_force(self, token: str) -> dict[str, Any]:
        """The SOP in force per district the token may see (routing's GET /v1/sops)."""
        found = await self._json("routing", "GET", "/v1/sops", token)
        in_force = found.get("in_force") if isinstance(found, dict) else None
        return in_force if isinstance(in_force, dict) else {}

    # --- routing: SOP proposals and impact simulations -------------------------------------

    async def sop_proposals(
        self, token: str, district: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Proposals the token sees, newest first (a partner: those naming its agency)."""
        params: dict[str, str | int] = {"limit": limit}
        if district is not None:
            params["district"] = district
        found = await self._json("routing", "GET", "/v1/sop-proposals", token, params=params)
        listed = found.get("proposals") if isinstance(found, dict) else None
        return [p for p in listed or [] if isinstance(p, dict)]

    async def sop_proposal(self, token: str, proposal_id: str) -> dict[str, Any]:
        """One proposal: who is asked and why, their answers, the rule-by-rule diff."""
        found: dict[str, Any] = await self._json(
            "routing", "GET", f"/v1/sop-proposals/{_segment(proposal_id)}", token
        )
        return found

    async def sop_proposal_document(self, token: str, proposal_id: str) -> str:
        response = await self._send(
            "routing", "GET", f"/v1/sop-proposals/{_segment(proposal_id)}/document", token
        )
        return response.text

    async def propose_sop(self, token: str, document: str) -> dict[str, Any]:
        """Propose an SOP version (YAML). A refused document raises SopRefused with every
        error routing found, each with its line."""
        response = await self._send(
            "routing",
            "POST",
            "/v1/sop-proposals",
            token,
            ok=(200, 201, 422),
            content=document.encode("utf-8"),
            headers={"Content-Type": "application/yaml"},
        )
        body = _json_of("routing", response)
        if response.status_code == 422:
            raise SopRefused("routing", 422, str(body.get("detail", "")), _errors_of(body))
        return body

    async def answer_proposal(
        self, token: str, proposal_id: str, decision: str, reason: str | None
    ) -> dict[str, Any]:
        """A partner's answer, given in the console (``via: console``)."""
        body: dict[str, Any] = {"decision": decision, "via": "console"}
        if reason is not None:
            body["reason"] = reason
        answered: dict[str, Any] = await self._json(
            "routing",
            "POST",
            f"/v1/sop-proposals/{_segment(proposal_id)}/answers",
            token,
            json=body,
        )
        return answered

    async def publish_proposal(
        self, token: str, proposal_id: str, effective_at: str | None, override: str | None
    ) -> dict[str, Any]:
        """Publish; 409 (UpstreamError) names who objected or has yet to answer."""
        body = {
            key: value
            for key, value in (("effective_at", effective_at), ("override_reason", override))
            if value is not None
        }
        published: dict[str, Any] = await self._json(
            "routing",
            "POST",
            f"/v1/sop-proposals/{_segment(proposal_id)}/publish",
            token,
            json=body,
        )
        return published

    async def withdraw_proposal(self, token: str, proposal_id: str) -> dict[str, Any]:
        withdrawn: dict[str, Any] = await self._json(
            "routing", "POST", f"/v1/sop-proposals/{_segment(proposal_id)}/withdraw", token
        )
        return withdrawn

    async def start_simulation(
        self, token: str, document: str, params: Mapping[str, str | int]
    ) -> dict[str, Any]:
        """Queue an impact simulation of ``document`` (``days``, or ``from`` and ``to``);
        202 with its id. A refused document raises SopRefused."""
        response = await self._send(
            "routing",
            "POST",
            "/v1/sops/simulations",
            token,
            ok=(202, 422),
            params=dict(params),
            content=document.encode("utf-8"),
            headers={"Content-Type": "application/yaml"},
        )
        body = _json_of("routing", response)
        if response.status_code == 422:
            errors = _errors_of(body)
            if not errors:  # the period, field by field
                _raise_for("routing", response)
            raise SopRefused("routing", 422, str(body.get("detail", "")), errors)
        return body

    async def simulation(self, token: str, simulation_id: str) -> dict[str, Any]:
        """A simulation's state and progress; its result once done."""
        found: dict[str, Any] = await self._json(
            "routing", "GET", f"/v1/sops/simulations/{_segment(simulation_id)}", token
        )
        return found

    # --- notify ---------------------------------------------------------------------------

    async def reply(self, token: str, referral_id: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await self._json(
            "notify", "POST", f"/v1/referrals/{_segment(referral_id)}/replies", token, json=body
        )
        return answer

    # --- audit ----------------------------------------------------------------------------

    async def case_history(self, token: str, case_id: str) -> dict[str, Any]:
        history: dict[str, Any] = await self._json(
            "audit", "GET", f"/v1/cases/{_segment(case_id)}/history", token
        )
        return history

    async def verify_case(self, token: str, case_id: str) -> dict[str, Any]:
        """One case's verdict from its own inclusion proofs against the newest signed head
        (not the whole ledger's verify, which reads every entry): 200 when they hold, 409
        (also a verdict) naming the first entry that does not."""
        verdict: dict[str, Any] = await self._json(
            "audit", "GET", f"/v1/cases/{_segment(case_id)}/verify", token, ok=(200, 409)
        )
        return verdict

    async def case_bundle(self, token: str, case_id: str) -> Download:
        response = await self._send("audit", "GET", f"/v1/cases/{_segment(case_id)}/bundle", token)
        return _download(response, f"rujuk-bundle-{case_id}.json")


def _json_of(service: str, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise Unavailable(service, response.status_code, "not JSON") from exc
    if not isinstance(body, dict):
        raise Unavailable(service, response.status_code, "not a JSON object")
    return body


def _errors_of(body: Mapping[str, Any]) -> list[str]:
    errors = body.get("errors")
    return [str(error) for error in errors] if isinstance(errors, list) else []


def _period(since: str, until: str, district: str | None) -> dict[str, str]:
    """The query of routing's figures: a period, narrowed to one district when asked."""
    params = {"from": since, "to": until}
    if district is not None:
        params["district"] = district
    return params


def _download(response: httpx.Response, fallback_name: str) -> Download:
    disposition = response.headers.get("content-disposition", "")
    _, _, name = disposition.partition("filename=")
    return Download(
        content=response.content,
        media_type=response.headers.get("content-type", "application/octet-stream"),
        filename=name.strip('"; ') or fallback_name,
    )
