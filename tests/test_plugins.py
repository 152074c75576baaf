"""The plugin system: built-ins register through the hooks, broken plugins are reported by name
and never take the rest down, plugins can be disabled."""
import sys
import types

from typer.testing import CliRunner

from restore.cli import app
from restore.hookspecs import hookimpl
from restore.plugins import DISABLE_ENV, load_registry


def _plugin(**hooks):
    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def test_builtins_register_through_the_hooks():
    registry = load_registry()
    assert registry.failures == {}
    assert {"ddpm", "ddim", "euler-maruyama", "euler", "heun", "pc"} <= set(registry.names("sampler"))
    assert registry.entries["sampler"]["heun"].plugin == "builtin-samplers"
    assert registry.entries["prior"]["gmm"].plugin == "builtin-analytic-priors"


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
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    result = CliRunner().invoke(app, ["--disable-plugin", "builtin-samplers", "list"])
    assert result.exit_code == 0, result.output
    assert "disabled plugins: builtin-samplers" in result.output
    assert " heun " not in result.output


def test_import_and_registry_stay_light():
    """`import restore`, the CLI and loading every built-in plugin import no torchvision,
    lpips or diffusers (they are optional and slow to import)."""
    import subprocess

    code = (
        "import sys, restore, restore.cli; from restore.plugins import load_registry; load_registry();"
        "print(sorted(m for m in ('torchvision', 'lpips', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
