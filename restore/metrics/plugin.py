"""The built-in metrics, registered through the same hook as any third-party plugin.

Each metric module exposes ``METRICS = {name: metric}``; this plugin gathers them.
"""
from __future__ import annotations

from restore.hookspecs import hookimpl
from restore.plugins import gather

#: Metric modules of this package, each with a ``METRICS`` mapping.
MODULES = ("distribution", "fidelity", "perceptual")


@hookimpl
def restore_metrics():
    return gather("restore.metrics", MODULES, "METRICS")
