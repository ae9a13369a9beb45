"""The page's reload script: a static file of the image, named by its content.

The page's CSP forbids inline script, so the script is a file next to the page, allowed by
``script-src 'self'``. Its name carries a hash of its bytes: nginx lets browsers cache it for
a year (``immutable``), and a changed script is a new name, never a stale cached copy.
"""

from __future__ import annotations

import hashlib
from importlib import resources

SCRIPT_BYTES: bytes = resources.files("maint.page").joinpath("templates/reload.js").read_bytes()
SCRIPT_FILE = f"maint-reload-{hashlib.sha256(SCRIPT_BYTES).hexdigest()[:10]}.js"
"""The script's file name in the docroot and its URL path (``/`` + this)."""
SCRIPT_TYPE = "text/javascript"
"""RFC 9239's type; nginx adds no charset to it (the file is ASCII)."""
SCRIPT_CACHE_CONTROL = "public, max-age=31536000, immutable"
