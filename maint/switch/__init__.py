"""The maintenance Pod and the Service selector switch and restore."""

from maint.switch.pod import ContainerPort, page_pod, plan_ports
from maint.switch.rules import switchable
from maint.switch.selector import (
    MoveOutcome,
    Restored,
    RestoreOutcome,
    Switched,
    drop_annotations,
    move_deadline,
    move_page,
    restore,
    saved_state,
    switch,
)

__all__ = [
    "ContainerPort",
    "MoveOutcome",
    "RestoreOutcome",
    "Restored",
    "Switched",
    "drop_annotations",
    "move_deadline",
    "move_page",
    "page_pod",
    "plan_ports",
    "restore",
    "saved_state",
    "switch",
    "switchable",
]
