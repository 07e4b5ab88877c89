"""Providers' webhooks: where they call, how their signatures are checked, and
how a job being polled learns that its webhook came.

``address(config, provider, op_id)`` is ``PUBLIC_URL/api/webhooks/<provider>/<op id>``,
or None when ``PUBLIC_URL`` is not set (the studio is not reachable: polling only).

Signatures (a bad or missing one raises ``SignatureRefused``):

- Replicate follows Standard Webhooks: ``webhook-signature`` holds
  space-separated ``v1,<base64 HMAC-SHA256>`` of ``"{webhook-id}.{webhook-timestamp}.{body}"``,
  keyed by the base64 after ``whsec_`` of the account's signing secret.
- fal signs ``"{request id}\\n{user id}\\n{timestamp}\\n{sha256 hex of the body}"``
  with ED25519 (``X-Fal-Webhook-*`` headers, the signature in hex), with one
  of the public keys of its JWKS.

Both carry a timestamp: one further than ``WEBHOOK_TOLERANCE_SECONDS`` from our
clock is refused, so a captured webhook cannot be replayed later.

``Arrivals`` wakes the polling loop of a job: at once when the webhook comes
to the process running the job, and within a fraction of a second when it
comes to another process sharing the storage folder (a marker file in
``<STORAGE_DIR>/.webhooks/``), so that the result is fetched without waiting
for the next poll.
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
import time

from .errors import setting

MARKER_CHECK_SECONDS = 0.25
MARKER_KEPT_SECONDS = 3600  # a marker no follower took by then had none (its job ended first)


class WebhookError(Exception):
    """A webhook the studio cannot use (400)."""

    status = 400


class SignatureRefused(WebhookError):
    """A webhook whose signature is missing, malformed, stale or wrong (401)."""

    status = 401


def address(config, provider: str, op_id: str | None) -> str | None:
    base = setting(config, "PUBLIC_URL")
    if not base or not op_id:
        return None
    return f"{base.rstrip('/')}/api/webhooks/{provider}/{op_id}"


def _fresh(timestamp: str, tolerance: float, now: float | None) -> None:
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        raise SignatureRefused("the webhook's timestamp is missing or not a number") from None
    if abs((time.time() if now is None else now) - sent) > tolerance:
        raise SignatureRefused("the webhook's timestamp is too far from now (a replay?)")


def verify_standard(secret: str, headers, body: bytes, tolerance: float,
                    now: float | None = None) -> None:
    """Check a Standard Webhooks signature (Replicate's)."""
    msg_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise SignatureRefused("the webhook has no signature")
    _fresh(timestamp, tolerance, now)
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except binascii.Error:
        raise SignatureRefused("the signing secret is not base64") from None
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for entry in signatures.split():
        version, _, sent = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sent.encode(), expected):
            return
    raise SignatureRefused("the webhook's signature does not match")


def verify_ed25519(public_keys: list[bytes], headers, body: bytes, tolerance: float,
                   now: float | None = None) -> str:
    """Check fal's ED25519 signature; the request id it vouches for."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    names = ("request-id", "user-id", "timestamp", "signature")
    request_id, user_id, timestamp, signature = (
        headers.get(f"X-Fal-Webhook-{name}") for name in names)
    if not request_id or user_id is None or not timestamp or not signature:
        raise SignatureRefused("the webhook has no signature")
    _fresh(timestamp, tolerance, now)
    try:
        signature = bytes.fromhex(signature)
    except ValueError:
        raise SignatureRefused("the webhook's signature is not hexadecimal") from None
    signed = "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()])
    for key in public_keys:
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(signature, signed.encode())
            return request_id
        except (InvalidSignature, ValueError):
            continue
    raise SignatureRefused("the webhook's signature does not match")


def json_object(body: bytes) -> dict:
    """A verified webhook's body, which must be a JSON object."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise WebhookError("the webhook's body is not a JSON object")
    return data


def jwks_keys(jwks: dict) -> list[bytes]:
    """The ED25519 public keys of a JWKS document (``x``, base64url)."""
    keys = []
    for jwk in jwks.get("keys") or []:
        if isinstance(jwk, dict) and jwk.get("crv", "Ed25519") == "Ed25519" and jwk.get("x"):
            x = jwk["x"]
            keys.append(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    return keys


def can_verify_ed25519() -> bool:
    try:
        import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401
    except ImportError:
        return False
    return True


class Cached:
    """What ``fetch()`` gives (a signing secret, public keys), fetched once and
    kept for ``seconds`` (None: for the life of the process)."""

    def __init__(self, fetch, seconds: float | None = None):
        self.fetch, self.seconds = fetch, seconds
        self._value, self._at = None, 0.0
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            stale = self.seconds is not None and time.monotonic() - self._at > self.seconds
            if self._value is None or stale:
                self._value, self._at = self.fetch(), time.monotonic()
            return self._value


class Arrivals:
    """Which followed jobs' webhooks came: an event per operation in this
    process, a marker file for the other processes sharing ``folder``."""

    def __init__(self, folder: str):
        self.folder = folder
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def expect(self, op_id: str) -> None:
        """This process follows ``op_id`` from now on."""
        with self._lock:
            self._events.setdefault(op_id, threading.Event())

    def forget(self, op_id: str) -> None:
        with self._lock:
            self._events.pop(op_id, None)
        self._consume_marker(op_id)

    def wake(self, op_id: str) -> None:
        """Wake whoever follows ``op_id``, here or elsewhere: its webhook came (or
        anything else that should not wait for the next poll, a cancel say)."""
        with self._lock:
            event = self._events.get(op_id)
        if event is not None:
            event.set()
            return
        os.makedirs(self.folder, exist_ok=True)
        with open(self._marker(op_id), "a"):
            pass
        self._prune()

    def _prune(self) -> None:
        cutoff = time.time() - MARKER_KEPT_SECONDS
        for entry in os.scandir(self.folder):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass  # taken meanwhile

    def wait(self, op_id: str | None, seconds: float) -> bool:
        """Sleep ``seconds``, or less when the webhook of ``op_id`` comes meanwhile."""
        event = self._events.get(op_id) if op_id else None
        if event is None:
            time.sleep(seconds)
            return False
        end = time.monotonic() + seconds
        while True:
            if event.wait(max(0.0, min(MARKER_CHECK_SECONDS, end - time.monotonic()))) \
                    or self._consume_marker(op_id):
                event.clear()
                return True
            if time.monotonic() >= end:
                return False

    def _marker(self, op_id: str) -> str:
        return os.path.join(self.folder, op_id)

    def _consume_marker(self, op_id: str) -> bool:
        try:
            os.unlink(self._marker(op_id))
        except FileNotFoundError:
            return False
        return True
