"""Partners' replies: over NATS (rujuk.partner.<agency>.in.<reply>) and over HTTP."""

import base64
import hashlib
import hmac


def partner_token(signing_key: bytes, agency_id: str) -> str:
    """Interim bearer token for an agency's HTTP replies, derived like its webhook secret.

    Partner tokens belong to intake; this derivation goes once intake issues them.
    """
    digest = hmac.new(signing_key, f"reply-token:{agency_id}".encode(), hashlib.sha256).digest()
    return f"rjp_{agency_id}_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
