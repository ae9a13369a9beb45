"""The maintenance Pod and the Service selector switch and restore."""

from maint.switch.pod import ContainerPort, page_pod, plan_ports
from maint.switch.rules import switchable
from maint.switch.selector import (
    MoveOutcome,
    Restored,
    RestoreOutcome,
    RestorePlan,
    Switched,
    SwitchPlan,
    apply_restore,
    apply_switch,
    drop_annotations,
    hand_back,
    move_deadline,
    move_page,
    plan_restore,
    plan_switch,
    restore,
    saved_state,
    switch,
)

__all__ = [
    "ContainerPort",
    "MoveOutcome",
    "RestoreOutcome",
    "RestorePlan",
    "Restored",
    "SwitchPlan",
    "Switched",
    "apply_restore",
    "apply_switch",
    "drop_annotations",
    "hand_back",
    "move_deadline",
    "move_page",
    "page_pod",
    "plan_ports",
    "plan_restore",
    "plan_switch",
    "restore",
    "saved_state",
    "switch",
    "switchable",
]
