"""benchmarks/peers.py on tiny inputs: both libraries load one state dict unchanged and run the
same task; skipped where the optional benchmark extra deepinv is not installed."""
import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepinv", reason="deepinv (optional benchmark extra: pip install deepinv==0.5.0) is absent")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_state_dict_loads_unchanged_in_both_libraries(peers, tmp_path):
    import deepinv

    from restore.priors.adm import load_adm

    state = peers.state_dict()
    torch.save(state, tmp_path / "w.pt")
    ours = load_adm(tmp_path / "w.pt", peers.PRESET)  # strict: every key, no renaming
    theirs = deepinv.models.DiffUNet(large_model=False, pretrained=None)
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) == {"sqrt_1m_alphas_cumprod", "sqrt_alphas_cumprod"}  # its schedule
    assert all(torch.equal(ours.state_dict()[k], theirs.state_dict()[k]) for k in state)


def test_the_script_times_both_libraries_on_a_tiny_image(peers, tmp_path):
    table = tmp_path / "peers.txt"
    peers.main(["--size", "32", "--tasks", "sr4", "--runs", "diffpir:2,ddrm:1", "--device", "cpu",
                "--table", str(table)])
    lines = table.read_text().splitlines()
    diffpir = next(line for line in lines if line.split()[:2] == ["sr4", "diffpir"]).split()
    (cpu_theirs, nfe_theirs), (cpu_ours, nfe_ours), ratio = map(float, diffpir[4:6]), map(float, diffpir[9:11]), \
        float(diffpir[14])
    assert nfe_theirs == nfe_ours == 2  # equal network evaluations, counted in each library
    assert cpu_theirs > 0 and cpu_ours > 0  # the table's CPU seconds are rounded to 0.05: the ratio within that
    assert (cpu_ours - 0.05) / (cpu_theirs + 0.05) <= ratio <= (cpu_ours + 0.05) / (cpu_theirs - 0.05)
    ddrm = next(line for line in lines if line.split()[:2] == ["sr4", "ddrm"])
    assert "n/a" in ddrm  # deepinv's DDRM needs a DecomposablePhysics, which its Downsampling is not
    assert "fast path as resolved here" in lines[-1]


@pytest.mark.parametrize("task, kind", [("sr4", "sr"), ("deblur", "deblur")])
def test_the_toolkit_runs_with_the_fast_path_of_its_operator_kind(peers, tmp_path, monkeypatch, task, kind):
    """The fast path is resolved for the operator's kind (catalog.operator_kind), as the commands
    resolve it: on a CPU with bf16 instructions both tasks run the network in bf16."""
    from restore import accel

    monkeypatch.setattr(accel, "fast_bf16", lambda device: (True, ""))
    assert kind in accel.AUTO_BF16_KINDS
    torch.save(peers.state_dict(), tmp_path / "w.pt")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    _, _, used = peers.toolkit_run(task, "ddrm", 1, tmp_path / "w.pt", x, torch.device("cpu"))
    assert used["precision"] == "bf16" and used["channels_last"]
