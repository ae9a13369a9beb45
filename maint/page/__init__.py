"""The maintenance page: a notice rendered into a Kaniko build context, and a preview server.

The only package that uses Jinja2. Rendering is pure: ``render`` returns the files (page,
JSON twin, reload script, nginx.conf, Dockerfile) as bytes, ``context_tarball`` packs them for a ``tar://``
context, and ``serve`` shows the same answers locally. Templates live in
``maint/page/templates`` (``templates/`` at the repository root links there) so they ship with
the package.

Names are loaded on first use (``__getattr__``): a command that renders nothing never imports
Jinja2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maint import lazy

# Bound now, not on first use: the name is also its module's, which any import of
# ``maint.page.revision`` would otherwise leave in its place.
from maint.page.revision import revision

if TYPE_CHECKING:
    from maint.page.model import SUPPORTED_LANGS, BuildContext, PageNotice
    from maint.page.preview import make_server, serve
    from maint.page.rendering import render, render_nginx_conf
    from maint.page.script import SCRIPT_FILE
    from maint.page.tarball import context_tarball

_NAMES = {  # name -> (module, name there)
    "BuildContext": ("model", "BuildContext"),
    "PageNotice": ("model", "PageNotice"),
    "SCRIPT_FILE": ("script", "SCRIPT_FILE"),
    "SUPPORTED_LANGS": ("model", "SUPPORTED_LANGS"),
    "context_tarball": ("tarball", "context_tarball"),
    "make_server": ("preview", "make_server"),
    "render": ("rendering", "render"),
    "render_nginx_conf": ("rendering", "render_nginx_conf"),
    "serve": ("preview", "serve"),
}

__all__ = [
    "SCRIPT_FILE",
    "SUPPORTED_LANGS",
    "BuildContext",
    "PageNotice",
    "context_tarball",
    "make_server",
    "render",
    "render_nginx_conf",
    "revision",
    "serve",
]


__getattr__ = lazy.loader(__name__, _NAMES)
