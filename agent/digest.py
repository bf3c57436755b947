"""Short sha256 digests (alert fingerprints, group keys, report occurrences, a remote receiver's
key) computed by CPython's own sha256, not OpenSSL's.

Why: `import hashlib` loads libcrypto, ~3.6 MiB of the agent's RSS, for a few hundred short
digests a day. CPython carries its own sha256 (the module hashlib itself falls back to when
built without OpenSSL); its digests are the same bytes, so fingerprints already in state.db
keep their meaning (tests/unit/test_digest.py compares it with hashlib's). Where neither
builtin exists (another interpreter), hashlib serves.
"""

from __future__ import annotations

try:  # CPython 3.12+
    from _sha2 import sha256 as _sha256
except ImportError:
    try:  # CPython 3.9-3.11
        from _sha256 import sha256 as _sha256
    except ImportError:
        from hashlib import sha256 as _sha256


def sha256_hex(text: str, length: int = 64) -> str:
    """The first `length` hex digits of the sha256 of `text` (UTF-8)."""
    return _sha256(text.encode()).hexdigest()[:length]
