"""Static pages every node serves next to its JSON-RPC: ``GET /verify``.

The public verification page (``rpc/static/verify.html``) is one
self-contained file: HTML, one inline ``<style>`` and one inline ``<script>``,
nothing loaded from anywhere else. The browser hashes the chosen file itself
(WebCrypto), asks this node ``evidence.verify`` and ``evidence.getProof`` over
same-origin ``POST /`` and checks each proof in the page (docs/PROOFS.md).

``PAGES`` maps a path to ``(content_type, body)``. ``HEADERS`` is the full set
of response headers a page is served with; ``rpc.server`` already puts
``BASE_HEADERS`` on every response, so it adds only ``EXTRA_HEADERS``.

The Content-Security-Policy allows nothing but this page's own inline style
and script, named by their SHA-256 (computed here from the file, so editing
the page cannot desynchronise them), and same-origin ``fetch`` for the RPC.
No other origin, no inline event handlers, no framing, no form posts.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

__all__ = ["BASE_HEADERS", "CSP", "EXTRA_HEADERS", "HEADERS", "PAGES", "VERIFY_PAGE"]

HTML = "text/html; charset=utf-8"


def _load(name: str) -> bytes:
    return resources.files("rpc").joinpath("static", name).read_bytes()


def _inline_hash(html: str, tag: str) -> str:
    """CSP source for the page's single inline <tag> element."""
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    if len(found) != 1:
        raise RuntimeError(f"verify.html must hold exactly one inline <{tag}>, found {len(found)}")
    digest = hashlib.sha256(found[0].encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


VERIFY_PAGE = _load("verify.html")
_text = VERIFY_PAGE.decode("utf-8")

CSP = "; ".join([
    "default-src 'none'",
    f"script-src {_inline_hash(_text, 'script')}",
    f"style-src {_inline_hash(_text, 'style')}",
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

# What rpc.server._send puts on every response already.
BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),                 # the verdict is never cached
    (b"x-content-type-options", b"nosniff"),
)
EXTRA_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode("ascii")),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
HEADERS = BASE_HEADERS + EXTRA_HEADERS

PAGES: dict[str, tuple[str, bytes]] = {"/verify": (HTML, VERIFY_PAGE)}
