"""The plugin manager and the registry of everything plugins provide.

Built-in plugins are the modules in :data:`BUILTIN_PLUGINS`; third-party ones are
found through the entry-point group ``restore``.  Each plugin is imported,
registered and asked for its items on its own, so a broken plugin is reported by
name (:attr:`Registry.failures`) and never takes the others down.

Plugins are disabled by name with the environment variable
``RESTORE_DISABLE_PLUGINS`` (comma-separated) or the CLI option
``--disable-plugin``.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable

import pluggy

from restore import hookspecs
from restore.docstrings import summary

ENTRY_POINT_GROUP = "restore"
DISABLE_ENV = "RESTORE_DISABLE_PLUGINS"

#: Built-in plugins, by the name they are listed and disabled under: one ``plugin.py``
#: registration module per built-in package, the only modules of the package that hold
#: hook implementations.  Each gathers the ``OPERATORS`` / ``SAMPLERS`` / ``PRIOR_FORMATS`` /
#: ``STRATEGIES`` / ``METRICS`` mappings of the modules it lists in ``MODULES`` (:func:`gather`);
#: the prior loaders of ``restore.priors.plugin`` are defined in it.
BUILTIN_PLUGINS = {
    "builtin-operators": "restore.operators.plugin",
    "builtin-samplers": "restore.diffusion.plugin",
    "builtin-priors": "restore.priors.plugin",
    "builtin-strategies": "restore.strategies.plugin",
    "builtin-metrics": "restore.metrics.plugin",
}

#: Registration hook of each kind of item.
KINDS = {
    "operator": "restore_operators",
    "prior": "restore_prior_formats",
    "strategy": "restore_strategies",
    "sampler": "restore_samplers",
    "metric": "restore_metrics",
}


class UnknownItemError(KeyError):
    """A name that no plugin registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    """One registered item: its kind, name, the object itself and the plugin that gave it."""

    kind: str
    name: str
    obj: Callable[..., Any]
    plugin: str

    @property
    def summary(self) -> str:
        """The first sentence of the item's docstring as plain text (no reST markup)."""
        return summary(getattr(self.obj, "__doc__", None))

    def to_json(self) -> dict[str, str]:
        """What ``restore list --json`` prints for the item."""
        return {"name": self.name, "kind": self.kind, "plugin": self.plugin, "summary": self.summary}


@dataclass
class Registry:
    """Everything the loaded plugins registered, and what failed to load."""

    manager: pluggy.PluginManager
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: dict[str, str] = field(default_factory=dict)
    disabled: tuple[str, ...] = ()

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        """The item ``name`` of ``kind``; :class:`UnknownItemError` names the known ones."""
        try:
            return self.entries[kind][name].obj
        except KeyError:
            known = ", ".join(sorted(self.entries[kind])) or "none"
            raise UnknownItemError(f"unknown {kind} {name!r}; registered {kind}s: {known}") from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    @property
    def hook(self) -> Any:
        return self.manager.hook

    def listens(self, hook_name: str) -> bool:
        """Whether any plugin implements the observer hook ``hook_name``."""
        return bool(getattr(self.manager.hook, hook_name).get_hookimpls())


class RunObservers:
    """Who observes one sampling run: the registry's plugins, which observe every run, and the
    run's own ``listeners`` (objects or modules with ``@hookimpl`` observer methods:
    ``restore_run_start``, ``restore_step``, ``restore_run_end``), which observe this run only::

        solve(problem, strategy, registry=registry, listeners=[ProgressBar()])

    The listeners are registered on a plugin manager made for the run, never on the registry's,
    so a run in another thread (or a later run) does not reach them, and they are not asked for
    items.  :meth:`call` calls the registry's implementations first, then the listeners'."""

    def __init__(self, registry: Registry, listeners: Iterable[Any] = ()) -> None:
        self.hooks = [registry.manager.hook]
        listeners = list(listeners)
        if listeners:
            manager = _plugin_manager()
            for listener in listeners:
                manager.register(listener)
            self.hooks.append(manager.hook)

    def listens(self, hook_name: str) -> bool:
        """Whether a plugin or a listener of the run implements the observer hook ``hook_name``."""
        return any(getattr(hook, hook_name).get_hookimpls() for hook in self.hooks)

    def call(self, hook_name: str, **arguments: Any) -> None:
        """Call the observer hook ``hook_name`` of the plugins, then of the run's listeners."""
        for hook in self.hooks:
            getattr(hook, hook_name)(**arguments)


def gather(package: str, modules: Iterable[str], attribute: str) -> dict[str, Any]:
    """Merge the ``attribute`` mappings of ``package.module`` for each module: how the built-in
    plugin packages (operators, strategies) collect what their modules define."""
    found: dict[str, Any] = {}
    for module in modules:
        found.update(getattr(importlib.import_module(f"{package}.{module}"), attribute))
    return found


def disabled_from_env() -> tuple[str, ...]:
    raw = os.environ.get(DISABLE_ENV, "")
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def unknown_plugins_message(unknown: Iterable[str], known: Iterable[str]) -> str:
    return (f"cannot disable {', '.join(map(repr, unknown))} ({DISABLE_ENV} / --disable-plugin): no such plugin; "
            f"known plugins: {', '.join(sorted(set(known)))}")


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def _plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("restore")
    manager.add_hookspecs(hookspecs)
    return manager


def load_registry(disable: Iterable[str] = (), *, extra_plugins: Iterable[tuple[str, Any]] = ()) -> Registry:
    """Build a fresh registry: built-ins, entry-point plugins, then ``extra_plugins``
    (``(name, module_or_object)`` pairs, for tests and embedding applications).

    ``disable`` adds to the names in ``RESTORE_DISABLE_PLUGINS``; a name that is no
    plugin's (a typo) raises ValueError rather than disabling nothing.
    """
    disabled = tuple(dict.fromkeys([*disabled_from_env(), *disable]))
    manager = _plugin_manager()
    registry = Registry(manager=manager, disabled=disabled)

    candidates: list[tuple[str, Callable[[], Any]]] = [
        (name, lambda module=module: importlib.import_module(module)) for name, module in BUILTIN_PLUGINS.items()
    ]
    candidates += [(ep.name, ep.load) for ep in _entry_points()]
    candidates += [(name, lambda obj=obj: obj) for name, obj in extra_plugins]
    known = {name for name, _ in candidates}
    unknown = [name for name in disabled if name not in known]
    if unknown:
        raise ValueError(unknown_plugins_message(unknown, known))

    for name, load in candidates:
        if name in disabled:
            continue
        try:
            manager.register(load(), name=name)
        except Exception as exc:  # a broken plugin is reported, never fatal
            registry.failures[name] = f"{type(exc).__name__}: {exc}"
            continue
        _collect(registry, name)
    return registry


def _collect(registry: Registry, plugin_name: str) -> None:
    """Ask one plugin for its items; on any error drop the plugin and record why."""
    plugin = registry.manager.get_plugin(plugin_name)
    found: list[Entry] = []
    try:
        for kind, hook_name in KINDS.items():
            for impl in getattr(registry.manager.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                items = impl.function() or {}
                for item_name, obj in dict(items).items():
                    if not callable(obj):
                        raise TypeError(f"{kind} {item_name!r} is not callable")
                    found.append(Entry(kind, item_name, obj, plugin_name))
    except Exception as exc:
        registry.manager.unregister(name=plugin_name)
        registry.failures[plugin_name] = f"{type(exc).__name__}: {exc}"
        return
    for entry in found:
        clash = registry.entries[entry.kind].get(entry.name)
        if clash is not None:
            registry.failures[plugin_name] = (
                f"{entry.kind} {entry.name!r} is already registered by plugin {clash.plugin!r}; kept that one"
            )
            continue
        registry.entries[entry.kind][entry.name] = entry


_DEFAULT: dict[tuple[str, ...], Registry] = {}


def default_registry() -> Registry:
    """The registry for the current ``RESTORE_DISABLE_PLUGINS``, built once per process."""
    key = disabled_from_env()
    if key not in _DEFAULT:
        _DEFAULT[key] = load_registry()
    return _DEFAULT[key]
