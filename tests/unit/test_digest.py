"""agent.digest: the same digests as hashlib's sha256 (fingerprints in state.db keep their
meaning), without loading OpenSSL."""

import hashlib
import subprocess
import sys

from agent.digest import sha256_hex


def test_same_digest_as_hashlib():
    for text in ("", "a", "é" * 1000, '[["alertname", "GpuHot"]]', "x" * 100000):
        assert sha256_hex(text) == hashlib.sha256(text.encode()).hexdigest()
        assert sha256_hex(text, 16) == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_does_not_load_openssl():
    code = "import sys, agent.digest; agent.digest.sha256_hex('x'); print('_hashlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
