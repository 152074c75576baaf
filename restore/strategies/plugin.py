"""The built-in conditioning strategies, registered through the same hook as any plugin.

Each strategy module exposes ``STRATEGIES = {name: factory}``; this plugin gathers them.
"""
from __future__ import annotations

from restore.hookspecs import hookimpl
from restore.plugins import gather

#: Strategy modules of this package, each with a ``STRATEGIES`` mapping.
MODULES = ("dps", "repaint", "guidance", "conditional", "pigdm", "ddrm", "ddnm", "diffpir", "dpir", "daps", "tweedie",
           "reverse_from_y")


@hookimpl
def restore_strategies():
    return gather("restore.strategies", MODULES, "STRATEGIES")
