"""When each round of on-call pages is due (routing.paging), and the plan read from an SOP."""

from datetime import UTC, datetime, timedelta

import pytest

from routing.oncall import plan_of
from routing.paging import OnCallAlert, PagePlan, Round, alert_id_for, round_due
from routing.settings import SHIPPED_SOPS
from routing.sop import load_sop
from rujuk_contracts.events import (
    DeliveryChannel,
    EscalationReason,
    OnCallAckVia,
    OnCallContact,
    Priority,
)

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
EVERY = timedelta(minutes=10)
PLAN = PagePlan(
    sop_id="sop-3514",
    sop_version=1,
    contacts=(OnCallContact(contact_id="piket-test", channels=[DeliveryChannel.SMS]),),
    rounds=3,
    every=EVERY,
)


def alert(
    rounds_paged: int = 0, next_page_at: datetime | None = T0, **changes: object
) -> OnCallAlert:
    fields: dict[str, object] = {
        "alert_id": alert_id_for("3514-0C0000000A-01-e1"),
        "case_id": "3514-0C0000000A",
        "district_code": "3514",
        "referral_id": "3514-0C0000000A-01-e1",
        "agency_id": "coord-test",
        "priority": Priority.EMERGENCY,
        "reason": EscalationReason.DEADLINE_MISSED,
        "opened_at": T0,
        "plan": PLAN,
        "rounds_paged": rounds_paged,
        "next_page_at": next_page_at,
    }
    return OnCallAlert(**{**fields, **changes})  # type: ignore[arg-type]


def test_one_alert_per_referral() -> None:
    assert alert_id_for("3514-0C0000000A-01-e1") == "3514-0C0000000A-01-e1-oncall"


def test_round_one_is_due_at_once_and_names_the_next() -> None:
    assert round_due(alert(), PLAN, T0) == Round(1, T0 + EVERY)


def test_a_round_is_not_due_before_its_time() -> None:
    assert round_due(alert(1, T0 + EVERY), PLAN, T0 + EVERY - timedelta(seconds=1)) is None
    assert round_due(alert(1, T0 + EVERY), PLAN, T0 + EVERY) == Round(2, T0 + 2 * EVERY)


def test_a_late_round_is_paged_once_and_the_next_counts_from_it() -> None:
    late = T0 + 3 * EVERY + timedelta(minutes=1)  # routing was down for rounds 2 and 3's times
    assert round_due(alert(1, T0 + EVERY), PLAN, late) == Round(2, late + EVERY)


def test_the_last_round_has_no_next_and_none_follows() -> None:
    assert round_due(alert(2, T0 + 2 * EVERY), PLAN, T0 + 2 * EVERY) == Round(3, None)
    assert round_due(alert(3, T0 + 3 * EVERY), PLAN, T0 + 4 * EVERY) is None
    assert round_due(alert(3, None), PLAN, T0 + 4 * EVERY) is None


def test_an_acknowledged_alert_pages_no_more() -> None:
    acknowledged = alert(
        1,
        T0 + EVERY,
        acknowledged_at=T0 + timedelta(minutes=1),
        acknowledged_by="coordinator:tok-1",
        acknowledged_via=OnCallAckVia.CONSOLE,
    )
    assert not acknowledged.open
    assert round_due(acknowledged, PLAN, T0 + EVERY) is None


def test_nothing_scheduled_is_nothing_due() -> None:
    assert round_due(alert(1, None), PLAN, T0 + EVERY) is None


@pytest.mark.parametrize("minute", [timedelta(minutes=1), timedelta(seconds=0.5)])
def test_the_plan_is_the_sops_on_call_list_and_policy(minute: timedelta) -> None:
    sop = load_sop(SHIPPED_SOPS / "3514.yaml")
    plan = plan_of(sop, minute)
    assert (plan.sop_id, plan.sop_version, plan.rounds) == ("sop-3514", 1, 3)
    assert plan.every == 10 * minute
    assert [(c.contact_id, [str(x) for x in c.channels]) for c in plan.contacts] == [
        ("piket-uptppa-pasuruan", ["sms", "webhook"]),
        ("kepala-dp3ap2kb-pasuruan", ["sms", "email"]),
    ]
