"""Optional HMAC signing of envelopes, so a worker runs only jobs its own producers made.

With ``Settings.signing_key`` (env ``TASKFORGE_SIGNING_KEY``) the producer appends an HMAC-SHA256
of the envelope text as a last JSON member, ``"sig"``; the worker recomputes it over the exact
text before decoding anything and dead-letters an envelope that is unsigned or whose signature
does not match. The envelope stays valid JSON, so records and events still read normally.

Signing guards against anyone who can write to Redis but does not hold the key; it does not
hide the arguments (they stay readable in Redis).
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

from taskforge.errors import SignatureError
from taskforge.settings import Settings

_SIG_OPEN = ',"sig":"'
_SIG_CLOSE = '"}'
_HEX_LEN = 64  # sha256 hexdigest
_SUFFIX_LEN = len(_SIG_OPEN) + _HEX_LEN + len(_SIG_CLOSE)


def signing_key(settings: Settings) -> bytes | None:
    """The configured key as bytes, or None when signing is off."""
    key: SecretStr | None = settings.signing_key
    if key is None or not key.get_secret_value():
        return None
    return key.get_secret_value().encode()


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def sign(text: str, key: bytes) -> str:
    """Append the HMAC of ``text`` (a JSON object) to it as its last member, ``"sig"``."""
    if not text.endswith("}"):
        raise ValueError("only a JSON object can be signed")
    return f"{text[:-1]}{_SIG_OPEN}{_mac(key, text)}{_SIG_CLOSE}"


def verify(text: str, key: bytes) -> str:
    """Check a signed envelope; return the text that was signed.

    Raises:
        SignatureError: no signature, or one that the key did not make.
    """
    sig_at = len(text) - _SUFFIX_LEN
    if sig_at < 1 or not text.endswith(_SIG_CLOSE) or text[sig_at:].find(_SIG_OPEN) != 0:
        raise SignatureError("unsigned envelope (this worker requires signed jobs)")
    signed = text[:sig_at] + "}"
    given = text[sig_at + len(_SIG_OPEN) : -len(_SIG_CLOSE)]
    expected = _mac(key, signed).encode()
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
        raise SignatureError("forged or damaged envelope: signature does not match")
    return signed


__all__ = ["SignatureError", "sign", "signing_key", "verify"]
