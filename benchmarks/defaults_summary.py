"""The shipped defaults next to the best classical method on whole test sets, read from the
committed tables of ``benchmarks/restoration.py``: issue 16's summary, generated.

    .venv/bin/python benchmarks/defaults_summary.py [--results benchmarks/results] [--out FILE]

For each task of ``benchmarks/restoration_tasks.json``, each target and each shipped prior
(:data:`PRIORS`): the catalog's ``fast`` default (``restore.strategies.catalog.default_run`` on
the task's operator at the tables' 256 x 256), its row (``restoration.row_label``) in the table
that measured it on every image of the set (:data:`EVIDENCE`), and the best classical row of
the task's evidence tables on the same images (the highest PSNR for ``fidelity``, the lowest
LPIPS-alex for ``perceptual``: the metric of the rule in docs/STRATEGIES.md).  A default that
no evidence table holds on the whole set is an error naming the table and the missing row: a
default changed without its measurement.  The seconds are the tables' (one of two benchmark
processes sharing the two cores, each sample of a mean run alone), not a command's
(``benchmarks/results/commands_cpu.txt``).

Output: the fidelity and perceptual tables of docs/STRATEGIES.md ("The natural-image
benchmark"; ``tests/test_defaults_summary.py`` checks that they are these), then per set every
metric of both targets.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import restoration as bench  # noqa: E402
from merge_tables import parse_table  # noqa: E402

RESULTS = bench.HERE / "results"
#: The test sets and their image counts: a default's row must cover all of them.
SETS = {"kodak24": ("Kodak24", 24), "cbsd68": ("CBSD68", 68)}
#: The shipped priors the summary covers and their tasks (None: every task); a conditional
#: network serves the one operator it was trained for.
PRIORS = {"default": None, "default-sr3x4": ("sr4",)}
#: The table (``{set}``: a key of :data:`SETS`) holding each default's whole-set row, by
#: (prior, task, target): where the rule of docs/STRATEGIES.md last chose it.
EVIDENCE = {
    ("default", "sr4", "fidelity"): "restoration_targets_{set}_cpu.md",
    ("default", "sr4", "perceptual"): "restoration_targets_{set}_cpu.md",
    ("default", "deblur-gaussian", "fidelity"): "restoration_deblur_antithetic_{set}_cpu.md",
    ("default", "deblur-gaussian", "perceptual"): "restoration_targets_{set}_cpu.md",
    ("default", "deblur-motion", "fidelity"): "restoration_deblur_antithetic_{set}_cpu.md",
    ("default", "deblur-motion", "perceptual"): "restoration_targets_{set}_cpu.md",
    ("default", "inpaint-box", "fidelity"): "restoration_box_antithetic_{set}_cpu.md",
    ("default", "inpaint-box", "perceptual"): "restoration_box_cold_{set}_cpu.md",
    ("default", "inpaint-random", "fidelity"): "restoration_random_antithetic_{set}_cpu.md",
    ("default", "inpaint-random", "perceptual"): "restoration_noisy_inpaint_{set}_cpu.md",
    ("default", "inpaint-box96", "fidelity"): "restoration_box96_antithetic_{set}_cpu.md",
    ("default", "inpaint-box96", "perceptual"): "restoration_box_cold_{set}_cpu.md",
    ("default", "inpaint-random-noiseless", "fidelity"): "restoration_dpir_random_{set}_cpu.md",
    ("default", "inpaint-random-noiseless", "perceptual"): "restoration_targets_{set}_cpu.md",
    ("default", "denoise", "fidelity"): "restoration_clip_{set}_cpu.md",
    ("default", "denoise", "perceptual"): "restoration_rfy_clip_{set}_cpu.md",
    ("default-sr3x4", "sr4", "fidelity"): "restoration_sr3_antithetic_{set}_cpu.md",
    ("default-sr3x4", "sr4", "perceptual"): "restoration_sr3_{set}_cpu.md",
}
#: The results file's second header line.
HEADER = ("generated from the tables it names (issue 16's summary of the shipped defaults); seconds per image "
          "are the tables': one of two benchmark processes on the 2-core CPU, each sample of a mean run alone")
#: The rule's metric by target and whether higher is better.
METRIC = {"fidelity": ("psnr", True), "perceptual": ("lpips-alex", False)}


def default_label(prior: str, task: str, target: str, doc: dict[str, Any], registry: Any) -> tuple[str, str]:
    """(the default's spec in words, its row label) for ``task`` and ``target`` with ``prior``."""
    from restore.strategies.catalog import default_run, kind_run

    size = doc["size"]
    if prior == "default":
        choice = default_run(bench.build_operator(registry, doc, task, size), "fast", target, shape=(3, size, size))
    else:
        choice = kind_run(None, "fast", target)
    budget = bench.nfe_budget(choice.method, choice.steps)
    label = bench.row_label(choice.spec, budget, choice.samples if choice.samples > 1 else None, choice.antithetic)
    return f"`{choice.spec}`{choice.mean_phrase}", label


def whole_set_rows(path: Path, task: str, images: int) -> dict[str, dict[str, Any]]:
    """The rows of ``task`` in table ``path`` that cover all ``images`` of the set."""
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing (docs/STRATEGIES.md names the command that writes it)")
    _, tasks = parse_table(path.read_text())
    if task not in tasks:
        raise SystemExit(f"error: {path} has no table of task {task!r}")
    return {label: row for label, row in tasks[task][2].items() if row["images"] == images}


def entry(prior: str, task: str, target: str, set_key: str, words: str, label: str, results: Path) -> dict[str, Any]:
    """One cell group of the summary: the default's row (``label``; ``words``: :func:`default_label`) and the
    best classical row (module docstring)."""
    images = SETS[set_key][1]
    table = results / EVIDENCE[prior, task, target].format(set=set_key)
    row = whole_set_rows(table, task, images).get(label)
    if row is None or row["target"] != target:
        raise SystemExit(f"error: {table.name} has no {target} row {label!r} of {task} on all {images} images: "
                         f"the catalog's default for {prior} is not measured there")
    metric, higher = METRIC[target]
    classical: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(EVIDENCE[prior, task, t] for t in METRIC):
        for other, found in whole_set_rows(results / name.format(set=set_key), task, images).items():
            if found["target"] == "-":
                classical.setdefault(other, found)
    if not classical:
        raise SystemExit(f"error: no classical row of {task} on all {images} images in its tables")
    best = (max if higher else min)(classical, key=lambda k: classical[k][metric])
    return {"words": words, "label": label, "row": row, "classical": best, "classical_row": classical[best],
            "table": table.name}


def collect(results: Path = RESULTS) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """Every entry, by (prior, task, target, set)."""
    from restore.plugins import default_registry

    doc, registry = bench.load_tasks(), default_registry()
    runs = {(prior, task, target): default_label(prior, task, target, doc, registry)
            for prior, tasks in PRIORS.items() for task in (tasks or doc["tasks"]) for target in METRIC}
    return {(*key, s): entry(*key, s, *words_label, results) for key, words_label in runs.items() for s in SETS}


def _task_name(prior: str, task: str) -> str:
    return task if prior == "default" else f"{task} (`{prior}`)"


def _nfe(row: dict[str, Any]) -> str:
    return "-" if row["nfe"] is None else f"{row['nfe']:g}"


def target_table(entries: dict[tuple[str, str, str, str], dict[str, Any]], target: str) -> str:
    """One target's table, the sets side by side: PSNR / SSIM and the gain in dB (fidelity), or
    LPIPS-alex and its ratio to the best classical method's (perceptual)."""
    keys = list(dict.fromkeys((p, t) for p, t, tg, _ in entries if tg == target))
    head = ["task", f"{target} default", "NFE"]
    for name, _ in SETS.values():
        head += [f"{name}: default " + ("PSNR / SSIM" if target == "fidelity" else "LPIPS"), "best classical",
                 "gain dB" if target == "fidelity" else "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for prior, task in keys:
        first = entries[prior, task, target, next(iter(SETS))]
        cells = [_task_name(prior, task), first["words"], _nfe(first["row"])]
        for s in SETS:
            e = entries[prior, task, target, s]
            row, ref = e["row"], e["classical_row"]
            if target == "fidelity":
                cells += [f"{row['psnr']:.2f} / {row['ssim']:.3f}", f"{e['classical']} {ref['psnr']:.2f} / "
                          f"{ref['ssim']:.3f}", f"{row['psnr'] - ref['psnr']:+.2f}"]
            else:
                cells += [f"{row['lpips-alex']:.3f}", f"{e['classical']} {ref['lpips-alex']:.3f}",
                          f"{row['lpips-alex'] / ref['lpips-alex']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def set_table(entries: dict[tuple[str, str, str, str], dict[str, Any]], set_key: str) -> str:
    """Every metric of both targets on one set, with the table each row comes from."""
    head = ["task", "target", "default", "NFE", "s / image", "PSNR", "SSIM", "LPIPS-alex", "best classical",
            "PSNR", "SSIM", "LPIPS-alex", "table"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (prior, task, target, s), e in entries.items():
        if s != set_key:
            continue
        row, ref = e["row"], e["classical_row"]
        lines.append("| " + " | ".join([
            _task_name(prior, task), target, e["words"], _nfe(row), f"{row['seconds']:.1f}",
            f"{row['psnr']:.2f}", f"{row['ssim']:.4f}", f"{row['lpips-alex']:.4f}", e["classical"],
            f"{ref['psnr']:.2f}", f"{ref['ssim']:.4f}", f"{ref['lpips-alex']:.4f}", f"`{e['table']}`"]) + " |")
    return "\n".join(lines)


def summary(results: Path = RESULTS) -> str:
    entries = collect(results)
    parts = [target_table(entries, t) for t in METRIC]
    for s, (name, images) in SETS.items():
        parts.append(f"{name}, all {images} images:\n\n{set_table(entries, s)}")
    return "\n\n".join(parts) + "\n"


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS, help="the folder of the tables")
    p.add_argument("--out", type=Path, help="write the summary here (else print it)")
    args = p.parse_args(argv)
    text = summary(args.results)
    if args.out is None:
        print(text, end="")
    else:
        command = "benchmarks/defaults_summary.py " + " ".join(sys.argv[1:] if argv is None else argv)
        args.out.write_text(f"# {command}\n# {HEADER}\n\n{text}")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
