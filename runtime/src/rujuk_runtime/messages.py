"""What a JetStream message says about itself, for logs and dead-letter records: its id, its
place in the stream and how often it was delivered. A message not from JetStream (a core NATS
request, a test's fake) has no metadata: each answer then says so rather than raising."""

from nats.aio.msg import Msg


def message_id(message: Msg) -> str | None:
    """The publisher's ``Nats-Msg-Id``, else ``<stream>:<sequence>``, else None."""
    if message.headers and "Nats-Msg-Id" in message.headers:
        return message.headers["Nats-Msg-Id"]
    sequence = stream_sequence(message)
    return None if sequence is None else f"{message.metadata.stream}:{sequence}"


def stream_sequence(message: Msg) -> int | None:
    """The message's sequence in its stream, or None when it did not come from JetStream."""
    try:
        return int(message.metadata.sequence.stream)
    except Exception:  # nats-py raises NotJSMessageError, or a fake lacks the attribute
        return None


def deliveries(message: Msg) -> int:
    """How many times JetStream has delivered this message (1 when it cannot say)."""
    try:
        return int(message.metadata.num_delivered)
    except Exception:
        return 1
