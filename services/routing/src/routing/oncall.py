"""On call past the coordinator, the aggregate: an alert opened when a referral's chain runs
out, its rounds of pages (``paging`` decides when), and its acknowledgement, in the console or
by a reply notify relays. Each change is made on the locked alert row and its event staged in
the outbox in the same transaction, so every round is paged once."""

from datetime import datetime, timedelta

from prometheus_client import Counter

from routing import store
from routing.events import oncall_acknowledged, oncall_paged
from routing.lifecycle import StoredReferral
from routing.paging import OnCallAlert, PagePlan, alert_id_for, round_due
from routing.sop import Sop
from routing.sops import SopsInForce
from rujuk_contracts.events import (
    EscalationReason,
    OnCallAcknowledged,
    OnCallAckVia,
    OnCallContact,
    district_of,
)
from rujuk_runtime.consumer import Rejected
from rujuk_runtime.db import Connection
from rujuk_runtime.logs import get_logger
from rujuk_runtime.outbox import add_to_outbox
from rujuk_runtime.telemetry import current_traceparent

log = get_logger(__name__)

PAGES = Counter(
    "rujuk_oncall_pages_total",
    "Rounds of on-call pages staged, by district and round",
    ["district", "round"],
)
RETRY_WITHOUT_SOP = timedelta(minutes=1)


class AlertNotFound(Exception):
    """No alert with that id in the districts the principal serves."""


def plan_of(sop: Sop, minute: timedelta) -> PagePlan:
    """The on-call list and repeat policy of an SOP (``minute``: compressed in tests)."""
    return PagePlan(
        sop_id=sop.sop_id,
        sop_version=sop.version,
        contacts=tuple(
            OnCallContact(contact_id=entry.id, channels=entry.page_channels())
            for entry in sop.on_call.contacts
        ),
        rounds=sop.on_call.repeat.rounds,
        every=sop.on_call.repeat.every_minutes * minute,
    )


async def open_alert(
    conn: Connection, referral: StoredReferral, reason: EscalationReason, now: datetime
) -> bool:
    """A referral's chain ran out: open its alert, the first round due at once."""
    alert = OnCallAlert(
        alert_id=alert_id_for(referral.referral_id),
        case_id=referral.case_id,
        district_code=district_of(referral.case_id),
        referral_id=referral.referral_id,
        agency_id=referral.agency_id,
        priority=referral.priority,
        reason=reason,
        opened_at=now,
        plan=None,
        rounds_paged=0,
        next_page_at=now,
    )
    opened = await store.open_alert(conn, alert)
    if opened:
        log.warning(
            "escalation chain exhausted, paging on call",
            case_id=referral.case_id,
            referral_id=referral.referral_id,
            agency_id=referral.agency_id,
            alert_id=alert.alert_id,
            reason=reason.value,
        )
    return opened


async def page_due(
    conn: Connection, sops: SopsInForce, now: datetime, *, minute: timedelta, limit: int
) -> int:
    """Stage the round due of each due alert (claimed, locked); return how many were paged."""
    paged = 0
    for alert in await store.claim_due_alerts(conn, now, limit):
        plan = alert.plan
        if plan is None:  # the first round: the on-call list of the SOP in force now
            try:
                plan = plan_of(await sops.sop_in_force(conn, alert.district_code), minute)
            except Rejected as exc:
                log.error("no on-call list to page", alert_id=alert.alert_id,
                          case_id=alert.case_id, reason=str(exc)[:200])  # fmt: skip
                await store.postpone_alert(conn, alert.alert_id, now + RETRY_WITHOUT_SOP)
                continue
        round_ = round_due(alert, plan, now)
        if round_ is None:  # the rounds ran out: nothing more is due (the alert stays open)
            await store.postpone_alert_forever(conn, alert.alert_id)
            continue
        await store.record_round(conn, alert.alert_id, plan, round_.number, now, round_.next_at)
        await add_to_outbox(conn, oncall_paged(alert, plan, round_, now, current_traceparent()))
        PAGES.labels(alert.district_code, str(round_.number)).inc()
        log.warning(
            "on call paged",
            case_id=alert.case_id,
            alert_id=alert.alert_id,
            round=round_.number,
            rounds=plan.rounds,
            contacts=[contact.contact_id for contact in plan.contacts],
        )
        paged += 1
    return paged


async def acknowledge_in_console(
    conn: Connection, alert_id: str, by: str, now: datetime, *, districts: list[str] | None
) -> tuple[OnCallAlert, bool]:
    """Acknowledge an alert for a coordinator (``by``: the token id); (the alert as it is now,
    whether this acknowledgement was the first). Another coordinator's later acknowledgement is
    recorded too (its own event); the same one's again changes nothing and stages nothing.
    AlertNotFound for an alert of a district the coordinator does not serve, as for none."""
    alert = await store.lock_alert(conn, alert_id)
    if alert is None or (districts is not None and alert.district_code not in districts):
        raise AlertNotFound(alert_id)
    first = alert.open
    if not first and alert.acknowledged_by == by:  # the same person again: nothing new
        return alert, first
    await store.acknowledge_alert(conn, alert_id, by, OnCallAckVia.CONSOLE.value, now)
    await add_to_outbox(conn, oncall_acknowledged(alert, by, now, current_traceparent()))
    log.info("on-call alert acknowledged", case_id=alert.case_id, alert_id=alert_id,
             via="console", by=by, first=first)  # fmt: skip
    return (await store.lock_alert(conn, alert_id)) or alert, first


async def record_acknowledgement(
    conn: Connection, acknowledged: OnCallAcknowledged, at: datetime
) -> None:
    """An acknowledgement on the bus: a reply notify relays (the console's own come back here
    too and change nothing). The first one counts; an unknown alert is refused."""
    alert = await store.lock_alert(conn, acknowledged.alert_id)
    if alert is None or alert.case_id != acknowledged.case_id:
        raise Rejected(f"unknown on-call alert {acknowledged.alert_id} of {acknowledged.case_id}")
    if not alert.open:
        return
    await store.acknowledge_alert(conn, alert.alert_id, acknowledged.by, acknowledged.via.value, at)
    log.info("on-call alert acknowledged", case_id=alert.case_id, alert_id=alert.alert_id,
             via=acknowledged.via.value, by=acknowledged.by)  # fmt: skip
