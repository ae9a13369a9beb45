"""The project's own error types.

Every layer turns foreign exceptions (Kubernetes API, SQLAlchemy, boto3) into one of these at
its edge, chained with ``from e``, so callers above never catch a library's exception. Each
message says what to do next; the CLI prints it as one line.
"""


class MaintError(Exception):
    """Anything maint could not do. The CLI exits 1."""


class InvalidInput(MaintError):
    """Bad input from the operator: nothing was written. The CLI exits 2."""


class BehindPage(InvalidInput):
    """The Service is behind a maintenance page now. ``notice add`` refuses it; for a window
    already prepared or preparing it passes once the page's window ends (windows of one
    Service never overlap, and the sweep restores a page left behind), so the runner waits."""


class NotFound(MaintError):
    """A notice, target or cluster object that was expected does not exist."""


class Conflict(MaintError):
    """The cluster or database holds something other than what this step expected.

    Raised when a JSON Patch ``test`` fails (someone else changed the selector) or a row
    changed under us. Never retried blindly: the caller decides whether to stop or report.
    """


class ClusterUnavailable(MaintError):
    """The Kubernetes API answered with a server error, timed out or could not be reached."""


class Forbidden(MaintError):
    """The API server refused the request (RBAC): fix the Role, retrying does not help."""


class StepTimeout(MaintError):
    """A wait passed its deadline (Job, Pod Ready, EndpointSlices)."""


class BuildFailed(MaintError):
    """The Kaniko Job failed; the message carries the tail of its log."""


class RegistryError(MaintError):
    """The image registry (ECR or OCI) refused or failed a request."""


class DatabaseUnavailable(MaintError):
    """The notices database could not be reached; cluster-side safety nets still run."""


class ClaimLost(MaintError):
    """This replica no longer holds (or can no longer prove it holds) a target's claim: the
    step stops before its next write; another replica, or the next pass, carries on."""
