"""The maintenance Pod and the Service selector switch and restore.

Names are loaded on first use (``__getattr__``): a command that switches nothing (``notice
list``, ``status``) never imports the selector protocol or the preflight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maint import lazy

if TYPE_CHECKING:
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

_NAMES = {  # name -> (module, name there)
    "ContainerPort": ("pod", "ContainerPort"),
    "MoveOutcome": ("selector", "MoveOutcome"),
    "RestoreOutcome": ("selector", "RestoreOutcome"),
    "RestorePlan": ("selector", "RestorePlan"),
    "Restored": ("selector", "Restored"),
    "SwitchPlan": ("selector", "SwitchPlan"),
    "Switched": ("selector", "Switched"),
    "apply_restore": ("selector", "apply_restore"),
    "apply_switch": ("selector", "apply_switch"),
    "drop_annotations": ("selector", "drop_annotations"),
    "hand_back": ("selector", "hand_back"),
    "move_deadline": ("selector", "move_deadline"),
    "move_page": ("selector", "move_page"),
    "page_pod": ("pod", "page_pod"),
    "plan_ports": ("pod", "plan_ports"),
    "plan_restore": ("selector", "plan_restore"),
    "plan_switch": ("selector", "plan_switch"),
    "restore": ("selector", "restore"),
    "saved_state": ("selector", "saved_state"),
    "switch": ("selector", "switch"),
    "switchable": ("rules", "switchable"),
}

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


__getattr__ = lazy.loader(__name__, _NAMES)
