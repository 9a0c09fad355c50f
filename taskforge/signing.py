"""Optional HMAC signing of jobs, so a worker runs only jobs its own producers made.

With ``Settings.signing_key`` (env ``TASKFORGE_SIGNING_KEY``) the producer stores an
HMAC-SHA256 of the call in the record's ``g`` field: over a canonical text of the job id, the
task, the queue and the record's ``a`` (args), ``k`` (kwargs) and ``o`` (option overrides)
fields exactly as stored. The worker recomputes it before decoding anything and dead-letters a
job that is unsigned or whose signature does not match. The created time, status and counters
are the scripts' own writes, not part of the call, and are not signed.

Signing guards against anyone who can write to Redis but does not hold the key; it does not
hide the arguments (they stay readable in Redis).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence

from pydantic import SecretStr

from taskforge.errors import SignatureError
from taskforge.settings import Settings


def signing_key(settings: Settings) -> bytes | None:
    """The configured key as bytes, or None when signing is off."""
    key: SecretStr | None = settings.signing_key
    if key is None or not key.get_secret_value():
        return None
    return key.get_secret_value().encode()


def canonical(texts: Sequence[str]) -> bytes:
    """The signed text of (id, task, queue, a, k, o): a JSON array, so no two differ in one
    field and agree in the join (``''`` for a field the record leaves out)."""
    return json.dumps(list(texts), ensure_ascii=True, separators=(",", ":")).encode()


def sign_fields(key: bytes, texts: Sequence[str]) -> str:
    """The signature (hex HMAC-SHA256) of a job's (id, task, queue, a, k, o)."""
    return hmac.new(key, canonical(texts), hashlib.sha256).hexdigest()


def verify_fields(key: bytes, texts: Sequence[str], given: str) -> None:
    """Check a job's signature against its (id, task, queue, a, k, o).

    Raises:
        SignatureError: no signature, or one that the key did not make.
    """
    if not given:
        raise SignatureError("unsigned job (this worker requires signed jobs)")
    expected = sign_fields(key, texts)
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
        raise SignatureError("forged or damaged job: signature does not match")


__all__ = ["SignatureError", "canonical", "sign_fields", "signing_key", "verify_fields"]
