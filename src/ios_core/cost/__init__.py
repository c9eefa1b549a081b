"""Stage costs: the one question the optimizer asks -- how long does this stage take?

The optimizer sees only the `StageCost` protocol. How the answer is obtained (an analytical
roofline, a table read from JSON, a measurement on the GPU) is the implementation's business;
``kind`` names it so that every number can be labelled ``simulated``, ``table`` or ``measured``.

Implementations: `SimulatedCost` (``.simulated``), `TableCost` (``.table``), and ``measured``
(``.measured``: stages timed on the GPU by the engine, imported only when built, ``.factory``).
`critical_path` (``.bound``) is the dependency-chain lower bound of any schedule under a cost. `CachedCost` (``.cache``)
wraps any of them so that each canonical stage key (``.key``) is costed once, on disk in the cost's
``space``: a digest of everything its numbers depend on (`content_space`). `build_cost` makes
a cached cost from a `CostSpec` and a `DeviceProfile`, by kind.
"""

from ios_core.cost.cache import CachedCost
from ios_core.cost.device import DeviceError, DeviceProfile
from ios_core.cost.factory import COSTS, CostSpec, CostUnavailableError, build_cost
from ios_core.cost.key import StageKey, content_space, digest, stage_key
from ios_core.cost.protocol import StageCost, schedule_latency, stage_latencies
from ios_core.cost.simulated import SimulatedCost
from ios_core.cost.table import MissingStageError, TableCost

__all__ = [
    "COSTS", "CachedCost", "CostSpec", "CostUnavailableError", "DeviceError", "DeviceProfile", "MissingStageError",
    "SimulatedCost", "StageCost", "StageKey", "TableCost", "build_cost", "content_space", "digest",
    "schedule_latency", "stage_key", "stage_latencies",
]
