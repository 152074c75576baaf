"""The built-in samplers, registered through the same hook as any third-party plugin.

Each sampler module exposes ``SAMPLERS = {name: sampler}``; this plugin gathers them.
"""
from __future__ import annotations

from restore.hookspecs import hookimpl
from restore.plugins import gather

#: Sampler modules of this package, each with a ``SAMPLERS`` mapping.
MODULES = ("samplers",)


@hookimpl
def restore_samplers():
    return gather("restore.diffusion", MODULES, "SAMPLERS")
