"""The maintenance page: a notice rendered into a Kaniko build context, and a preview server.

The only package that uses Jinja2. Rendering is pure: ``render`` returns the files (page,
JSON twin, reload script, nginx.conf, Dockerfile) as bytes, ``context_tarball`` packs them for a ``tar://``
context, and ``serve`` shows the same answers locally. Templates live in
``maint/page/templates`` (``templates/`` at the repository root links there) so they ship with
the package.
"""

from maint.page.model import SUPPORTED_LANGS, BuildContext, PageNotice
from maint.page.preview import make_server, serve
from maint.page.rendering import render, render_nginx_conf
from maint.page.revision import revision
from maint.page.script import SCRIPT_FILE
from maint.page.tarball import context_tarball

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
