"""Each partner agency's durable feed consumer on RUJUK_PARTNER, which notify makes for it.

Who may read it, and everything else a partner may do on the bus, is in
``rujuk_runtime.nats_auth`` (the one authorization model): its own feed and consumer, its own
inbox prefix, its own reply subjects.
"""

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from rujuk_contracts import subjects
from rujuk_runtime.nats_auth import partner_durable as durable_name
from rujuk_runtime.nats_auth import partner_inbox_prefix as inbox_prefix

__all__ = ["consumer_config", "durable_name", "ensure_partner_consumer", "inbox_prefix"]

ACK_WAIT_SECONDS = 60.0
MAX_DELIVER = 50


def consumer_config(agency_id: str) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable_name(agency_id),
        description=f"feed of {agency_id}: referrals notify sent it",
        filter_subject=subjects.partner_outbound_wildcard(agency_id),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_SECONDS,
        deliver_policy=DeliverPolicy.ALL,
        max_deliver=MAX_DELIVER,
    )


async def ensure_partner_consumer(js: JetStreamContext, agency_id: str) -> None:
    """Create the agency's durable feed consumer unless it exists (safe from every replica)."""
    try:
        await js.consumer_info(subjects.PARTNER_STREAM, durable_name(agency_id))
        return
    except NotFoundError:
        pass
    await js.add_consumer(subjects.PARTNER_STREAM, consumer_config(agency_id))
