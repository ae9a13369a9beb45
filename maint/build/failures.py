"""Whether a failed Kaniko build may succeed when run again.

Before the switch a transient failure (a registry answering 5xx or 429 during the push, a
network blip, the Job's deadline) is retried with a fresh build until the start; a permanent
one (the base image does not exist, access denied, a broken build context) rolls the window
back at once with the reason. Kaniko only tells us through its log tail, so the decision
reads that text: markers of a permanent failure win over markers of a transient one, and a
message with neither counts as transient (retrying costs a build; a wrong rollback costs the
window).
"""

from __future__ import annotations

import re

from maint.errors import BuildFailed

_PERMANENT = re.compile(
    r"MANIFEST_UNKNOWN|NAME_UNKNOWN|manifest unknown|UNAUTHORIZED|DENIED|"
    r"authentication required|COPY failed|dockerfile parse error|unknown instruction|"
    r"reported no digest",
    re.IGNORECASE,
)


def permanent(error: BuildFailed) -> bool:
    """True when running the same build again cannot help."""
    return _PERMANENT.search(str(error)) is not None
