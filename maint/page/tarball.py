"""The build context as a tar.gz for Kaniko's ``tar://`` context.

Deterministic: same context, same bytes (fixed order, mtimes, owners, modes, no gzip name or
time), so a retried prepare step produces an identical ConfigMap and an unchanged context
is visibly unchanged.
"""

from __future__ import annotations

import gzip
import io
import tarfile

from maint.page.model import BuildContext

_FILE_MODE = 0o644  # readable by nginx's UID 101 after Kaniko's COPY (owner root)


def context_tarball(context: BuildContext) -> bytes:
    """The files of ``context`` as a reproducible gzip-compressed tar archive."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.USTAR_FORMAT) as archive,
    ):
        for name in sorted(context.files):
            data = context.files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = _FILE_MODE
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
