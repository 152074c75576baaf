"""The plugin system: built-ins register through the hooks from one registration module per
package, broken plugins are reported by name and never take the rest down, plugins can be
disabled, `restore list` (and `--json`) shows plain first sentences, the top-level exports
resolve lazily, and the observer hooks receive what their specifications say."""
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from restore.cli import app
from restore.hookspecs import hookimpl
from restore.plugins import BUILTIN_PLUGINS, DISABLE_ENV, load_registry


def _plugin(**hooks):
    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def test_builtins_register_through_the_hooks():
    registry = load_registry()
    assert registry.failures == {}
    assert {"ddpm", "ddim", "euler-maruyama", "euler", "heun", "pc"} <= set(registry.names("sampler"))
    assert registry.entries["sampler"]["heun"].plugin == "builtin-samplers"
    assert registry.entries["prior"]["gmm"].plugin == "builtin-priors"
    assert registry.entries["metric"]["sliced-wasserstein"].plugin == "builtin-metrics"


REGISTRATION_HOOK = re.compile(r"^\s*@hookimpl\S*\s+def (restore_operators|restore_prior_formats|restore_strategies"
                               r"|restore_samplers|restore_metrics)\(", re.M)


def test_builtins_register_in_one_style():
    """Every built-in plugin is the ``plugin.py`` module of its package, and no other module
    of restore defines a registration hook."""
    root = Path(__file__).resolve().parents[1]
    sources = {"restore": root / "restore", "restore.operators": root / "operators", "restore.priors": root / "priors"}
    registering = set()
    for package, folder in sources.items():
        for path in folder.rglob("*.py"):
            if REGISTRATION_HOOK.search(path.read_text()):
                parts = path.relative_to(folder).with_suffix("").parts
                registering.add(".".join((package, *parts)))
    assert registering == set(BUILTIN_PLUGINS.values())
    assert all(module.endswith(".plugin") for module in BUILTIN_PLUGINS.values())


def test_third_party_items_are_listed_with_their_plugin():
    def my_operator():
        """Doubles the image."""

    good = _plugin(restore_operators=lambda: {"double": my_operator})
    registry = load_registry(extra_plugins=[("my-plugin", good)])
    assert registry.entries["operator"]["double"].plugin == "my-plugin"
    assert registry.get("operator", "double") is my_operator


def test_a_broken_plugin_is_reported_and_the_rest_keep_working():
    def explode():
        raise RuntimeError("boom")

    broken = _plugin(restore_samplers=explode)
    not_callable = _plugin(restore_metrics=lambda: {"psnr2": 3})
    registry = load_registry(extra_plugins=[("broken", broken), ("bad-item", not_callable)])
    assert "boom" in registry.failures["broken"]
    assert "not callable" in registry.failures["bad-item"]
    assert "heun" in registry.names("sampler") and "psnr2" not in registry.names("metric")


def test_name_clash_keeps_the_first_and_reports_the_second():
    clash = _plugin(restore_samplers=lambda: {"heun": lambda *a, **k: None})
    registry = load_registry(extra_plugins=[("clash", clash)])
    assert registry.entries["sampler"]["heun"].plugin == "builtin-samplers"
    assert "already registered" in registry.failures["clash"]


def test_unknown_names_list_the_known_ones():
    registry = load_registry()
    try:
        registry.get("sampler", "nope")
    except KeyError as exc:
        assert "unknown sampler 'nope'" in str(exc) and "heun" in str(exc)
    else:
        raise AssertionError("expected UnknownItemError")


def test_disable_by_environment(monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "builtin-samplers")
    registry = load_registry()
    assert registry.names("sampler") == [] and "builtin-samplers" in registry.disabled


def test_cli_list_survives_a_broken_entry_point(monkeypatch):
    import importlib.metadata as md

    import restore.plugins as plugins

    broken = md.EntryPoint(name="broken-ep", value="restore_no_such_module:plugin", group="restore")
    monkeypatch.setattr(plugins, "_entry_points", lambda: [broken])
    monkeypatch.setattr(plugins, "_DEFAULT", {})
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert "heun" in result.output and "builtin-samplers" in result.output
    assert "broken-ep" in result.output and "ModuleNotFoundError" in result.output


def test_cli_disable_option(monkeypatch):
    import restore.plugins as plugins

    monkeypatch.setattr(plugins, "_DEFAULT", {})
    monkeypatch.setenv(DISABLE_ENV, "")  # the option writes the variable; teardown removes it again
    result = CliRunner().invoke(app, ["--disable-plugin", "builtin-samplers", "list"])
    assert result.exit_code == 0, result.output
    assert "disabled plugins: builtin-samplers" in result.output
    assert " heun " not in result.output


def test_a_mistyped_plugin_name_in_the_environment_is_refused(monkeypatch):
    import restore.plugins as plugins

    monkeypatch.setattr(plugins, "_DEFAULT", {})
    monkeypatch.setenv(DISABLE_ENV, "builtin-samplers,bultin-priors")
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot disable 'bultin-priors'" in result.output and "builtin-priors" in result.output
    with pytest.raises(ValueError, match="cannot disable 'bultin-priors'"):
        plugins.load_registry()
    monkeypatch.setenv(DISABLE_ENV, "builtin-samplers")
    assert plugins.load_registry().disabled == ("builtin-samplers",)
    # plugins given to load_registry are known by their names too
    assert plugins.load_registry(["mine"], extra_plugins=[("mine", object())]).disabled == ("builtin-samplers", "mine")


HEAVY = ("torchvision", "lpips", "diffusers", "skimage", "kornia")


def _imported_after(code: str) -> list[str]:
    """Which of torch and the heavy optional packages a fresh interpreter has imported after ``code``."""
    probe = f"{code}; import sys; print(sorted(m for m in ('torch',) + {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().replace("'", '"'))


def test_import_and_registry_stay_light():
    """`import restore` imports no torch at all (nor does the plugin author's `restore.hookimpl`);
    the CLI and loading every built-in plugin import no torchvision, lpips, diffusers, scikit-image
    or kornia (they are optional and slow to import)."""
    assert _imported_after("import restore") == []
    assert _imported_after("from restore import hookimpl") == []
    assert _imported_after("import restore, restore.cli; from restore.plugins import load_registry; load_registry()") \
        == ["torch"]


def test_every_top_level_export_resolves_to_its_target():
    import importlib

    import restore

    assert {"hookimpl", "Operator", "LinearOperator", "SVDOperator"} <= set(restore.EXPORTS)
    for name, target in restore.EXPORTS.items():
        module, _, attribute = target.partition(":")
        assert getattr(restore, name) is getattr(importlib.import_module(module), attribute), name
        assert name in dir(restore) and name in restore.__all__
    from restore import LinearOperator, Operator, SVDOperator, hookimpl
    from restore.hookspecs import hookimpl as spec_hookimpl

    assert hookimpl is spec_hookimpl
    assert issubclass(SVDOperator, LinearOperator) and issubclass(LinearOperator, Operator)
    try:
        restore.no_such_name
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def _markup_plugin():
    def marked_operator():
        """Blurs with :class:`restore.operators.blur.Blur`, see :func:`~restore.cgls` and ``kernel``, *not*
        **sharp** (Kawar et al. 2022, Sec. 4).  A second sentence that is not shown."""

    def plain_sampler():
        """No markup here! Nothing else."""

    return _plugin(restore_operators=lambda: {"marked": marked_operator},
                   restore_samplers=lambda: {"plain": plain_sampler})


def test_cli_list_prints_whole_first_sentences_without_markup(monkeypatch):
    import restore.plugins as plugins

    registry = load_registry(extra_plugins=[("markup", _markup_plugin())])
    monkeypatch.setattr(plugins, "default_registry", lambda: registry)
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if " marked " in line)
    assert line.endswith("[markup]  Blurs with Blur, see cgls and kernel, not sharp (Kawar et al. 2022, Sec. 4).")
    assert re.search(r"^  plain +\[markup\]  No markup here!$", result.output, re.M)
    for line in result.output.splitlines():
        assert "``" not in line and ":class:" not in line and ":func:" not in line, line


def test_cli_list_json_has_items_failures_and_disabled(monkeypatch):
    import restore.plugins as plugins

    monkeypatch.delenv(DISABLE_ENV, raising=False)
    broken = _plugin(restore_metrics=lambda: {"bad": 3})
    registry = load_registry(disable=["builtin-metrics"], extra_plugins=[("markup", _markup_plugin()),
                                                                         ("broken", broken)])
    monkeypatch.setattr(plugins, "default_registry", lambda: registry)
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report) == {"items", "failures", "disabled"}
    assert report["disabled"] == ["builtin-metrics"]
    assert "not callable" in report["failures"]["broken"]
    items = {(i["kind"], i["name"]): i for i in report["items"]}
    assert items[("operator", "marked")] == {
        "name": "marked", "kind": "operator", "plugin": "markup",
        "summary": "Blurs with Blur, see cgls and kernel, not sharp (Kawar et al. 2022, Sec. 4)."}
    assert items[("sampler", "heun")]["plugin"] == "builtin-samplers"
    assert not any(kind == "metric" for kind, _ in items)
    assert len(items) == sum(len(registry.names(kind)) for kind in plugins.KINDS)


def test_observer_hooks_receive_what_the_hook_specifications_promise():
    """The keys of ``restore_run_start`` / ``restore_run_end`` infos are those of the TypedDicts in
    restore.hookspecs, and each step event carries the NFE so far."""
    import torch

    from restore.hookspecs import RunEndInfo, RunStartInfo, hookimpl
    from restore.priors.spec import load_prior
    from restore.strategies.base import Problem
    from restore.strategies.engine import solve

    class Recorder:
        def __init__(self):
            self.starts, self.steps, self.ends = [], [], []

        @hookimpl
        def restore_run_start(self, info):
            self.starts.append(info)

        @hookimpl
        def restore_step(self, event):
            self.steps.append(event)

        @hookimpl
        def restore_run_end(self, info):
            self.ends.append(info)

    registry = load_registry()
    prior = load_prior("gaussian:1x4x4", registry=registry)
    op = registry.get("operator", "denoise")(noise={"kind": "gaussian", "sigma": 0.1})
    y = op.measure(torch.rand(2, 1, 4, 4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    recorder = Recorder()
    result = solve(Problem(prior, op, y), registry.get("strategy", "ddrm")(), steps=4, registry=registry,
                   generator=torch.Generator().manual_seed(1), listeners=[recorder])
    (start,), (end,) = recorder.starts, recorder.ends
    assert set(start) == set(RunStartInfo.__annotations__) and set(end) == set(RunEndInfo.__annotations__)
    assert start["strategy"] == "ddrm" and start["steps"] == 4 and start["batch"] == 2
    assert tuple(start["shape"]) == (1, 4, 4)
    assert end["nfe"] == result.nfe and len(recorder.steps) == 4
    nfes = [event.nfe for event in recorder.steps]
    assert nfes == sorted(nfes) and nfes[-1] == result.nfe


@pytest.mark.parametrize("doc, expected", [
    ("One line.", "One line."),
    ("Spans\n    two lines. Then more.", "Spans two lines."),
    ("First paragraph\n\nSecond paragraph.", "First paragraph"),
    ("Uses e.g. Tweedie (Efron 2011, Eq. 2) and Chung et al. 2023. Next.",
     "Uses e.g. Tweedie (Efron 2011, Eq. 2) and Chung et al. 2023."),
    ("See :meth:`~restore.Operator.bound_to`, :mod:`restore.priors.spec` and :class:`the contract <restore.Operator>`.",
     "See bound_to, restore.priors.spec and the contract."),
    ("A `link <https://example.org>`_ and `text`. x", "A link and text."),
    ("y = w * x * z, *emphasis* and **strong**! Rest.", "y = w * x * z, emphasis and strong!"),
    ("``a.b`` stays whole. ``shape`` starts the next.", "a.b stays whole."),
    ("Example::\n\n    code", "Example:"),
    (None, ""),
])
def test_summaries_are_first_sentences_in_plain_text(doc, expected):
    from restore.docstrings import summary

    assert summary(doc) == expected
