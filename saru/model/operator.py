"""An operator's overrides of a real (pure values): drained, disabled, or at a weight of their choosing.

``drain``: weight 0 while its check passes, so existing connections stay and new ones go elsewhere;
``disable``: out of the table whatever its check says (as a ``maintenancedir`` file does);
``weight``: the operator's weight instead of the configured one while its check passes. ``enable``
removes the override: the real is back at its configured weight once its check passes. The planner
(``saru.planner``) applies them; the daemon keeps them across reloads and restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from saru.model.core import RealRef

OverrideState = Literal["drain", "disable", "weight"]
OVERRIDE_STATES: tuple[OverrideState, ...] = ("drain", "disable", "weight")


@dataclass(frozen=True)
class Override:
    """One real's override: ``state``, the weight for ``"weight"``, and when it was set (wall clock)."""

    state: OverrideState
    weight: int | None = None
    since: float = 0.0

    def planned_weight(self, configured: int) -> int | None:
        """The weight the real gets while its check passes; None: out of the table."""
        if self.state == "disable":
            return None
        if self.state == "drain":
            return 0
        return configured if self.weight is None else self.weight


Overrides = Mapping[RealRef, Override]
