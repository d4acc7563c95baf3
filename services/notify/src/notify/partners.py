"""Partner credentials for the NATS feed: one nkey user per agency, fenced to its own subjects.

Why nkeys rather than user/password: the server's configuration holds only the partner's
public key, the seed (the secret) is made once and handed to the partner, and nothing secret
about a partner is stored by rujuk. The internal services share one user/password account whose
password is stored as a bcrypt hash in the configuration.

What a partner may do, and nothing else:

- subscribe to its own feed ``rujuk.partner.<agency>.out.>`` (live, without JetStream);
- consume the durable JetStream consumer notify made for it (``partner-<agency>`` on the
  ``RUJUK_PARTNER`` stream): ``$JS.API.CONSUMER.INFO`` and ``…MSG.NEXT`` on that consumer only,
  and acknowledge its messages (``$JS.ACK.RUJUK_PARTNER.partner-<agency>.>``);
- receive replies on its own inbox prefix ``_INBOX_<agency>.>`` (a shared ``_INBOX.>`` would let
  one partner read the messages JetStream hands another partner);
- publish its replies on ``rujuk.partner.<agency>.in.>``.
"""

import json
import os
from dataclasses import dataclass
from typing import Any

import bcrypt
import nkeys  # type: ignore[import-untyped]
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from rujuk_contracts import subjects

ACK_WAIT_SECONDS = 60.0
MAX_DELIVER = 50


def durable_name(agency_id: str) -> str:
    """The durable consumer notify creates on RUJUK_PARTNER for one agency."""
    return f"partner-{subjects.check_agency_id(agency_id)}"


def inbox_prefix(agency_id: str) -> str:
    """The inbox prefix the partner's NATS client must use (``inbox_prefix=`` in nats-py)."""
    return f"_INBOX_{subjects.check_agency_id(agency_id)}"


def partner_permissions(agency_id: str) -> dict[str, Any]:
    stream = subjects.PARTNER_STREAM
    durable = durable_name(agency_id)
    return {
        "publish": {
            "allow": [
                subjects.partner_inbound_wildcard(agency_id),
                f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
                f"$JS.ACK.{stream}.{durable}.>",
            ]
        },
        "subscribe": {
            "allow": [subjects.partner_outbound_wildcard(agency_id), f"{inbox_prefix(agency_id)}.>"]
        },
    }


@dataclass(frozen=True)
class PartnerKey:
    agency_id: str
    public_key: str  # U…: goes into the server configuration
    seed: str | None = None  # SU…: the secret, given to the partner only

    def user_entry(self) -> dict[str, Any]:
        return {"nkey": self.public_key, "permissions": partner_permissions(self.agency_id)}


def new_partner_key(agency_id: str) -> PartnerKey:
    subjects.check_agency_id(agency_id)
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key
    return PartnerKey(agency_id, public.decode(), seed.decode())


def public_key_of(seed: str) -> str:
    return str(nkeys.from_seed(bytearray(seed.encode())).public_key.decode())


def hash_password(password: str) -> str:
    """A bcrypt hash nats-server accepts in place of a plain password."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=11)).decode()


def service_user_entry(user: str, password_or_hash: str) -> dict[str, Any]:
    """The internal services' user: every subject (no ``permissions`` block)."""
    return {"user": user, "password": password_or_hash}


def authorization_block(users: list[dict[str, Any]]) -> str:
    """A nats-server ``authorization { users = [...] }`` block (values written as JSON)."""
    lines = ["authorization {", "  users = ["]
    for user in users:
        lines.append("    " + json.dumps(user, sort_keys=True) + ",")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


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
