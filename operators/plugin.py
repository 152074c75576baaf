"""The built-in operators, registered through the same hook as any third-party plugin.

Each operator module exposes ``OPERATORS = {name: factory}``; this plugin
gathers them.
"""
from __future__ import annotations

from restore.hookspecs import hookimpl
from restore.plugins import gather

#: Operator modules of this package, each with an ``OPERATORS`` mapping.
MODULES = ("inpaint", "blur", "resize", "colorize", "identity", "sensing", "nonlinear", "jpeg", "matrix")


@hookimpl
def restore_operators():
    return gather("restore.operators", MODULES, "OPERATORS")
