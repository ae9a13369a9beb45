"""The maintenance Pod and the Service selector switch and restore."""

from maint.switch.pod import ContainerPort, page_pod, plan_ports
from maint.switch.selector import Restored, RestoreOutcome, Switched, restore, saved_state, switch

__all__ = [
    "ContainerPort",
    "RestoreOutcome",
    "Restored",
    "Switched",
    "page_pod",
    "plan_ports",
    "restore",
    "saved_state",
    "switch",
]
