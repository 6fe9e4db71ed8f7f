"""One-click decision links: a notification carries an approve and a reject link, each holding a token the notifier
signs and the API checks. A token is bound to the workflow, the event that entered the waiting state (so it is void
once the workflow moves on, even into the same state again), the person and the decision; it expires, and the API
takes each one once (its `nonce` is kept in the `<prefix>_links` bucket).

Format: `<payload>.<signature>`, both base64url without padding; the payload is JSON, the signature HMAC-SHA256 of the
payload's text under WF_LINK_SECRET, which the notifier and the API share."""

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from contracts.notifications import Decision


class LinkRefused(ValueError):
    """A token that is not ours: malformed, or signed with another key."""


class DecisionLink(BaseModel):
    model_config = ConfigDict(frozen=True)

    workflow_id: str
    entered_sequence: int
    person: str
    decision: Decision
    expires_at: AwareDatetime
    nonce: str

    @classmethod
    def new(
        cls, workflow_id: str, entered_sequence: int, person: str, decision: Decision, expires_at: datetime
    ) -> "DecisionLink":
        return cls(
            workflow_id=workflow_id,
            entered_sequence=entered_sequence,
            person=person,
            decision=decision,
            expires_at=expires_at,
            nonce=secrets.token_urlsafe(16),
        )

    def sign(self, secret: bytes) -> str:
        payload = _encode(self.model_dump_json().encode())
        return f"{payload}.{_encode(_mac(secret, payload))}"

    @classmethod
    def verified(cls, token: str, secret: bytes) -> "DecisionLink":
        """The link a token holds, if `secret` signed it (LinkRefused otherwise). Expiry is the caller's to check."""
        payload, _, signature = token.partition(".")
        try:
            given = _decode(signature)
        except ValueError as error:
            raise LinkRefused("the link is malformed") from error
        if not hmac.compare_digest(given, _mac(secret, payload)):
            raise LinkRefused("the link's signature does not match: it was not issued here, or was altered")
        try:
            return cls.model_validate(json.loads(_decode(payload)))
        except (ValueError, ValidationError) as error:
            raise LinkRefused("the link is malformed") from error


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, payload.encode(), hashlib.sha256).digest()


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as error:
        raise ValueError(str(error)) from error
