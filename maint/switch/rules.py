"""The one answer to "can this Service be put behind a page": used by ``notice add``, by the
preparation (before anything is built) and by the switch itself (right before the patch)."""

from __future__ import annotations

from maint.cluster import ServiceInfo
from maint.errors import BehindPage, InvalidInput
from maint.naming import PAGE_LABEL, is_maint_key, page_name
from maint.switch.pod import ContainerPort, plan_ports


def switchable(service: ServiceInfo, *, own_page: str | None = None) -> tuple[ContainerPort, ...]:
    """The page Pod's container ports for ``service``, or ``InvalidInput`` saying why maint
    cannot switch it (no retry fixes any of these: the Service itself must change), but for
    ``BehindPage``: another window's page serves now, and its window ends.

    ``own_page``: the page Pod this target already made. A Service that selects exactly it was
    switched by this target (a switch whose record did not land yet), not by another page.
    A selector on maint's own label keys is refused: the page selector keeps the original's
    keys, and the page Pod carries maint's labels with other values.
    """
    ref = f"{service.namespace}/{service.name}"
    page = page_name(service.selector)
    if own_page is not None and page == own_page:
        return plan_ports(service)
    if service.type == "ExternalName":
        raise InvalidInput(f"Service {ref} is ExternalName; it has no Pods to switch")
    if not service.selector:
        raise InvalidInput(f"Service {ref} has no selector; maint cannot switch it")
    if page is not None or PAGE_LABEL in service.selector:
        raise BehindPage(f"Service {ref} is behind a maintenance page right now")
    own = sorted(key for key in service.selector if is_maint_key(key))
    if own:
        raise InvalidInput(
            f"Service {ref} selects on maint's own label {own[0]}; maint cannot switch it "
            "(select the app's Pods by the app's own labels)"
        )
    return plan_ports(service)
