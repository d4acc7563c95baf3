"""Who may do what on the bus: the one NATS authorization model every stack rujuk ships uses
(``rujuk up``, ``make demo``, the tests' servers, compose and the three-node cluster).

- No anonymous connection is accepted.
- Each service authenticates with an nkey of its own and may publish only the events it owns,
  use only its own durable consumers, and read replies only on its own inbox prefix.
- Each partner agency authenticates with its own nkey and reaches only its own feed
  (``rujuk.partner.<agency>.out.>`` and its durable consumer) and its own reply subjects.
- The operator (``ops``, a user with a bcrypt-hashed password) administers the bus: streams,
  the dead-letter queue, the ``rujuk`` commands. Its password, like every nkey seed, lives only
  in a 0600 file; the server configuration holds public keys and hashes only.

Partners are added while the server runs: the authorization is an ``include`` file that is
rewritten and the server told to reload its configuration (SIGHUP), which nats-server applies
to new and existing connections without dropping them. Accounts with a JWT resolver would do
the same with an operator key hierarchy and ``nsc`` to run; an auth callout would put a
service of our own on the path of every connection. For one district's few dozen agencies a
reloaded file is the smallest mechanism that does the job, and the one an ops engineer can
read.
"""

import json
import os
import secrets
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import bcrypt
import nkeys  # type: ignore[import-untyped]

from rujuk_contracts import events, subjects
from rujuk_runtime import tls
from rujuk_runtime.private_files import write_private

OPS_USER = "ops"
SERVICE_NAMES = ("intake", "routing", "notify", "audit")
AUTHORIZATION_FILE = "authorization.conf"
PID_FILE = "nats-server.pid"

JS_API = "$JS.API"


def service_inbox_prefix(service: str) -> str:
    """A service's own inbox prefix: replies JetStream sends it land where only it reads.
    The underscore keeps it apart from every partner's ``_INBOX_<agency>`` (agency ids have
    none)."""
    return f"_INBOX_svc_{service}"


def partner_inbox_prefix(agency_id: str) -> str:
    """The inbox prefix a partner's NATS client must use (``inbox_prefix=`` in nats-py)."""
    return f"_INBOX_{subjects.check_agency_id(agency_id)}"


def partner_durable(agency_id: str) -> str:
    """The durable consumer notify creates on RUJUK_PARTNER for one agency."""
    return f"partner-{subjects.check_agency_id(agency_id)}"


@dataclass(frozen=True)
class Consumer:
    """A durable consumer a service creates, binds and pulls from."""

    stream: str
    durable: str


@dataclass(frozen=True)
class ServiceGrant:
    """What one service does on the bus, and so all it may do."""

    service: str
    publishes: tuple[str, ...]  # subjects (wildcards allowed) it publishes on
    consumers: tuple[Consumer, ...]
    # Consumers it manages for others, by stream: ``*`` tokens stand for any durable.
    manages_consumers_on: tuple[str, ...] = ()
    # Streams it reads single messages of, by sequence (audit fills a gap in the ledger).
    reads_messages_of: tuple[str, ...] = ()
    # Streams it erases single messages of, by sequence (notify: a partner's refused reply
    # that carried free text). Never the stream itself, never a purge.
    erases_messages_of: tuple[str, ...] = ()


def _subjects(*payloads: type[events.EventPayload]) -> tuple[str, ...]:
    return tuple(payload.subject() for payload in payloads)


def _events(*durables: str) -> tuple[Consumer, ...]:
    return tuple(Consumer(subjects.EVENTS_STREAM, durable) for durable in durables)


SERVICE_GRANTS: dict[str, ServiceGrant] = {
    grant.service: grant
    for grant in (
        ServiceGrant(
            "intake",
            publishes=_subjects(
                events.CaseReported,
                events.CaseDetailsDisclosed,
                events.CaseNoteRead,
                events.CaseErased,
                events.TokenIssued,
                events.TokenRevoked,
                events.CaseVillageAgencyFound,
            ),
            consumers=_events("intake-projection", "intake-village-agency-asked"),
        ),
        ServiceGrant(
            "routing",
            publishes=_subjects(
                events.CaseRouted,
                events.CaseClosed,
                events.ReferralRequested,
                events.ReferralEscalated,
                events.ReferralReplyRefused,
                events.SopProposed,
                events.SopSignedOff,
                events.SopObjected,
                events.SopProposalWithdrawn,
                events.SopAnswerRefused,
                events.SopPublished,
                events.SopInForce,
                events.OnCallPaged,
                events.OnCallAcknowledged,
                events.CaseVillageAgencyAsked,
            ),
            consumers=_events(
                "routing-case-reported",
                "routing-village-agency-found",
                "routing-referral-delivered",
                "routing-referral-delivery-failed",
                "routing-referral-acknowledged",
                "routing-referral-accepted",
                "routing-referral-declined",
                "routing-referral-completed",
                "routing-oncall-acknowledged",
                "routing-sop-answers",
                "routing-tokens",
            ),
        ),
        ServiceGrant(
            "notify",
            publishes=(
                *_subjects(
                    events.ReferralDelivered,
                    events.ReferralDeliveryFailed,
                    events.ReferralAcknowledged,
                    events.ReferralAccepted,
                    events.ReferralDeclined,
                    events.ReferralCompleted,
                    events.ReferralReplyRefused,
                    events.OnCallPageDelivered,
                    events.OnCallPageFailed,
                    events.OnCallAcknowledged,
                    events.SopAnswerGiven,
                ),
                f"{subjects.PREFIX}.partner.*.out.>",
            ),
            consumers=(
                *_events(
                    "notify-referral-requested",
                    "notify-reply-refused",
                    "notify-oncall-paged",
                    "notify-sop-proposed",
                    "notify-sop-proposal-withdrawn",
                    "notify-sop-published",
                    "notify-sop-answer-refused",
                    "notify-tokens",
                ),
                Consumer(subjects.PARTNER_STREAM, "notify-partner-replies"),
            ),
            manages_consumers_on=(subjects.PARTNER_STREAM,),
            erases_messages_of=(subjects.PARTNER_STREAM,),
        ),
        ServiceGrant(
            "audit",
            publishes=(subjects.CHECKPOINT_SUBJECT, subjects.REPLAY_WILDCARD),
            consumers=(
                *_events("audit-ledger", "audit-tokens"),
                Consumer(subjects.DLQ_STREAM, "audit-dlq"),
            ),
            # Events to fill a gap in the ledger; its own heads, for `rujuk audit verify`.
            reads_messages_of=(subjects.EVENTS_STREAM, subjects.AUDIT_STREAM),
        ),
    )
}

RUJUK_STREAMS = (
    subjects.EVENTS_STREAM,
    subjects.PARTNER_STREAM,
    subjects.AUDIT_STREAM,
    subjects.REPLAY_STREAM,
    subjects.DLQ_STREAM,
)


def _consumer_api(stream: str, durable: str) -> list[str]:
    """Create (both forms nats-py and other clients use), look up, pull from, acknowledge."""
    return [
        f"{JS_API}.CONSUMER.CREATE.{stream}.{durable}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.{durable}.>",
        f"{JS_API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
        f"{JS_API}.CONSUMER.INFO.{stream}.{durable}",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def service_permissions(grant: ServiceGrant) -> dict[str, Any]:
    """The nats-server permissions of one service: its events, its dead-letter subject, the
    streams it declares (create, update, look up: never delete or purge), its consumers, and
    single messages it reads or erases by sequence."""
    publish = [*grant.publishes, subjects.dead_letter(grant.service), f"{JS_API}.INFO"]
    for stream in RUJUK_STREAMS:
        publish += [f"{JS_API}.STREAM.{verb}.{stream}" for verb in ("CREATE", "UPDATE", "INFO")]
    for consumer in grant.consumers:
        publish += _consumer_api(consumer.stream, consumer.durable)
    for stream in grant.manages_consumers_on:
        publish += _consumer_api(stream, "*")
    for stream in grant.reads_messages_of:
        publish += [f"{JS_API}.STREAM.MSG.GET.{stream}", f"{JS_API}.DIRECT.GET.{stream}.>",
                    f"{JS_API}.DIRECT.GET.{stream}"]  # fmt: skip
    publish += [f"{JS_API}.STREAM.MSG.DELETE.{stream}" for stream in grant.erases_messages_of]
    return {
        "publish": {"allow": publish},
        "subscribe": {"allow": [f"{service_inbox_prefix(grant.service)}.>"]},
    }


def partner_permissions(agency_id: str) -> dict[str, Any]:
    """A partner reads its own feed (live, or its durable consumer: look it up, pull,
    acknowledge) and publishes its own replies; nothing else, not even stream info."""
    stream, durable = subjects.PARTNER_STREAM, partner_durable(agency_id)
    return {
        "publish": {
            "allow": [
                subjects.partner_inbound_wildcard(agency_id),
                f"{JS_API}.CONSUMER.INFO.{stream}.{durable}",
                f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
                f"$JS.ACK.{stream}.{durable}.>",
            ]
        },
        "subscribe": {
            "allow": [
                subjects.partner_outbound_wildcard(agency_id),
                f"{partner_inbox_prefix(agency_id)}.>",
            ]
        },
    }


def authorization_block(
    services: dict[str, str], partners: dict[str, str], ops_password_hash: str
) -> str:
    """The nats-server ``authorization {}`` block: the operator, each service's nkey and each
    partner's nkey (public keys and a bcrypt hash: nothing secret), values written as JSON."""
    users: list[dict[str, Any]] = [{"user": OPS_USER, "password": ops_password_hash}]
    for service, public_key in sorted(services.items()):
        permissions = service_permissions(SERVICE_GRANTS[service])
        users.append({"nkey": public_key, "permissions": permissions})
    for agency, public_key in sorted(partners.items()):
        users.append({"nkey": public_key, "permissions": partner_permissions(agency)})
    lines = ["# Generated by rujuk (rujuk_runtime.nats_auth); rewritten when a partner is added.",
             "authorization {", "  timeout: 2", "  users = ["]  # fmt: skip
    lines += [f"    {json.dumps(user, sort_keys=True)}," for user in users]
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def new_seed() -> str:
    """A fresh nkey user seed (``SU…``): the secret half, for one file only."""
    return str(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode())


def public_key_of(seed: str) -> str:
    """The public key (``U…``) of a user seed: what the server configuration holds."""
    return str(nkeys.from_seed(bytearray(seed.encode())).public_key.decode())


def hash_password(password: str) -> str:
    """A bcrypt hash nats-server accepts in place of a plain password."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=11)).decode()


def with_credentials(url: str, user: str, password: str) -> str:
    """Each server of a comma-separated NATS URL with user and password in it."""
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return _each_server(url, lambda host: f"{userinfo}@{host}")


def without_credentials(url: str) -> str:
    """The NATS URL fit to print or hand out: any user and password taken out."""
    return _each_server(url, lambda host: host)


def _each_server(url: str, netloc: Callable[[str], str]) -> str:
    servers = (urlsplit(one.strip()) for one in url.split(",") if one.strip())
    return ",".join(
        urlunsplit(parts._replace(netloc=netloc(f"{parts.hostname}:{parts.port}")))
        for parts in servers
    )


class NatsKeyring:
    """A folder with the bus's credentials, made once per deployment and kept. Laid out so
    that each party can be given (mounted) only its own part:

    ::

        server/authorization.conf    what nats-server includes: public keys and a hash only
        server/tls-cert.pem, tls-key.pem (0600)   the server's certificate, with ``ensure_tls``
        public/ca.pem                the CA that signed it: clients and partners trust it
        ca/ca-key.pem (0600)         the CA's key, to issue the next server certificate
        services/<service>/seed.nk (0600)   one folder per service: its own nkey seed
        partners/<agency>.pub        each admitted partner's public key
        ops.password (0600)          the operator's password (the config holds its hash)
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()

    @property
    def authorization_file(self) -> Path:
        return self.folder / "server" / AUTHORIZATION_FILE

    @property
    def pid_file(self) -> Path:
        return self.folder / PID_FILE

    @property
    def ca_file(self) -> Path:
        return self.folder / "public" / "ca.pem"

    @property
    def server_cert_file(self) -> Path:
        return self.folder / "server" / "tls-cert.pem"

    @property
    def server_key_file(self) -> Path:
        return self.folder / "server" / "tls-key.pem"

    def service_seed_file(self, service: str) -> Path:
        if service not in SERVICE_GRANTS:
            raise ValueError(f"{service!r} is not a rujuk service on the bus")
        return self.folder / "services" / service / "seed.nk"

    def partner_public_file(self, agency_id: str) -> Path:
        return self.folder / "partners" / f"{subjects.check_agency_id(agency_id)}.pub"

    def ops_password(self) -> str:
        return (self.folder / "ops.password").read_text().strip()

    def ensure(self) -> "NatsKeyring":
        """Make whatever credential is missing, then write the authorization file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        for service in SERVICE_GRANTS:
            seed_file = self.service_seed_file(service)
            if not seed_file.exists():
                write_private(seed_file, new_seed() + "\n")
        password_file = self.folder / "ops.password"
        if not password_file.exists():
            write_private(password_file, secrets.token_urlsafe(32) + "\n")
            write_private(self.folder / "ops.password.bcrypt", hash_password(self.ops_password()))
        self.write_authorization()
        return self

    def ensure_tls(self, hosts: Iterable[str]) -> "NatsKeyring":
        """A private CA (made once) and a server certificate for ``hosts`` (names or IP
        addresses), issued anew when the hosts change. A district replaces both with its own
        PKI's for production (README)."""
        wanted = sorted(set(hosts))
        if (
            self.server_cert_file.exists()
            and tls.certificate_hosts(self.server_cert_file.read_bytes()) == wanted
        ):
            return self
        ca_key_file = self.folder / "ca" / "ca-key.pem"
        if not ca_key_file.exists():
            ca_key, ca_cert = tls.new_ca("rujuk NATS CA")
            write_private(ca_key_file, ca_key.decode())
            self.ca_file.parent.mkdir(parents=True, exist_ok=True)
            self.ca_file.write_bytes(ca_cert)
        key, cert = tls.new_server_certificate(
            ca_key_file.read_bytes(), self.ca_file.read_bytes(), wanted
        )
        write_private(self.server_key_file, key.decode())
        self.server_cert_file.write_bytes(cert)
        return self

    def service_public_keys(self) -> dict[str, str]:
        return {
            service: public_key_of(self.service_seed_file(service).read_text().strip())
            for service in SERVICE_GRANTS
        }

    def partner_public_keys(self) -> dict[str, str]:
        folder = self.folder / "partners"
        files = sorted(folder.glob("*.pub")) if folder.is_dir() else []
        return {file.stem: file.read_text().strip() for file in files}

    def write_authorization(self) -> Path:
        block = authorization_block(
            self.service_public_keys(),
            self.partner_public_keys(),
            (self.folder / "ops.password.bcrypt").read_text().strip(),
        )
        self.authorization_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.authorization_file.with_suffix(".partial")
        partial.write_text(block)
        partial.replace(self.authorization_file)  # the server never reads half a file
        return self.authorization_file

    def add_partner(self, agency_id: str, public_key: str) -> None:
        """Admit a partner's public key and rewrite the authorization (``reload`` applies it)."""
        if not public_key.startswith("U"):
            raise ValueError("a partner's public key is an nkey user key (it starts with U)")
        file = self.partner_public_file(agency_id)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(public_key + "\n")
        self.write_authorization()

    def partners(self) -> Iterable[str]:
        return self.partner_public_keys().keys()

    def reload_server(self) -> bool:
        """Ask the running server that uses this keyring to reload its configuration; False
        when none runs (its next start reads the file anyway)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            # A stale pid file (or one written in another container) must never make us
            # signal some other process: only a nats-server of this machine is told.
            if Path(f"/proc/{pid}/comm").read_text().strip() != "nats-server":
                return False
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError):
            return False
        return True

    def ops_url(self, url: str) -> str:
        """The operator's URL for the ``rujuk`` commands and tests: it carries the password, so
        it goes only into 0600 files and environments, never on a screen."""
        return with_credentials(url, OPS_USER, self.ops_password())
