"""Scoring restorations against ground truth: pairing files, per-image and mean scores,
and the table / CSV / JSON forms that ``restore eval`` and the benchmark print.

Metrics are looked up by name in the registry (any plugin's metric works); the options
given are passed to each metric that takes them (``channel`` and ``crop`` to PSNR / SSIM,
``weights`` to LPIPS), so one set of conventions serves every metric.

A metric that cannot run on this machine says so by raising ``FileNotFoundError`` (its
weights are missing, e.g. LPIPS before ``restore metrics install-lpips``) or ``ImportError``
(its package is missing); :func:`score_pairs` then leaves it out of every row and reports
it once, so PSNR and SSIM are always printed on a fresh install.
"""
from __future__ import annotations

import csv
import inspect
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from restore.operators.io import READABLE_SUFFIXES

#: Decimals each built-in metric is printed with (others: 4).
DECIMALS = {"psnr": 2, "ssim": 4, "lpips-alex": 4, "lpips-vgg": 4}


def image_files(folder: Path) -> dict[str, Path]:
    """The readable image files of ``folder`` by stem; two files with one stem are an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in READABLE_SUFFIXES:
            if path.stem in found:
                raise ValueError(f"{folder}: {found[path.stem].name} and {path.name} share the name {path.stem!r}")
            found[path.stem] = path
    return found


def pair_files(pred: Path, truth: Path) -> list[tuple[str, Path, Path]]:
    """(name, prediction, ground truth) for two files, or for two folders matched by file
    name without its suffix; a missing path, a file against a folder, or a name present on
    one side only is an error naming it."""
    for path in (pred, truth):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
    if pred.is_file() and truth.is_file():
        return [(pred.stem, pred, truth)]
    if not (pred.is_dir() and truth.is_dir()):
        raise ValueError(f"give two files or two folders, not {'a folder' if pred.is_dir() else 'a file'} "
                         f"({pred}) and {'a folder' if truth.is_dir() else 'a file'} ({truth})")
    preds, truths = image_files(pred), image_files(truth)
    for side, only in ((pred, sorted(set(preds) - set(truths))), (truth, sorted(set(truths) - set(preds)))):
        if only:
            shown = ", ".join(only[:5]) + (f" and {len(only) - 5} more" if len(only) > 5 else "")
            raise ValueError(f"unmatched names: {shown} only in {side}")
    if not preds:
        raise ValueError(f"no image files ({', '.join(READABLE_SUFFIXES)}) in {pred} or {truth}")
    return [(name, preds[name], truths[name]) for name in sorted(preds)]


def accepted_options(metric: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that ``metric`` takes as keywords (all of them for a metric
    with ``**options``); entries that are None are left out."""
    params = inspect.signature(metric).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return {k: v for k, v in options.items() if (takes_all or k in params) and v is not None}


def score(pred: Tensor, truth: Tensor, metrics: Mapping[str, Callable[..., Any]],
          options: Mapping[str, Any]) -> dict[str, float]:
    """Each metric's value for one (1, C, H, W) pair."""
    if pred.shape != truth.shape:
        raise ValueError(f"size mismatch: prediction {tuple(pred.shape[1:])} vs ground truth {tuple(truth.shape[1:])} "
                         "(C, H, W)")
    return {name: float(torch.as_tensor(fn(pred, truth, **accepted_options(fn, options))).reshape(-1)[0])
            for name, fn in metrics.items()}


#: What a metric raises when it cannot run here (missing weights or package).
UNAVAILABLE = (FileNotFoundError, ImportError)


def score_pairs(pairs: Sequence[tuple[str, Path, Path]], metrics: Mapping[str, Callable[..., Any]],
                options: Mapping[str, Any], *, keep: bool = False,
                note: Callable[[str, Exception], None] = lambda name, exc: None,
                ) -> tuple[list[dict[str, Any]], list[tuple[str, Tensor, Tensor, dict[str, float]]], list[str]]:
    """Score each (name, prediction, ground truth) pair: the rows ``{"image": name, metric:
    value, ...}``, the images with their values when ``keep`` (for figures), and the metrics
    that ran.  A metric that cannot run here (:data:`UNAVAILABLE`) is dropped with
    ``note(name, exception)``; a ValueError names the pair."""
    from restore.operators.io import read_image

    active = dict(metrics)
    rows, kept = [], []
    for name, pred_path, truth_path in pairs:
        x, ref = read_image(pred_path), read_image(truth_path)
        values: dict[str, float] = {}
        for metric, fn in list(active.items()):
            try:
                values.update(score(x, ref, {metric: fn}, options))
            except UNAVAILABLE as exc:
                note(metric, exc)
                del active[metric]
                for row in rows:
                    row.pop(metric, None)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if not active:
            raise ValueError(f"none of the metrics {', '.join(metrics)} can run here")
        rows.append({"image": name, **values})
        if keep:
            kept.append((name, x, ref, values))
    for _, _, _, values in kept:
        for metric in set(values) - set(active):
            del values[metric]
    return rows, kept, list(active)


def mean_row(rows: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict[str, Any]:
    """The mean of each metric over ``rows`` (PSNR of identical images, +inf, stays +inf)."""
    return {"image": "mean", **{n: math.fsum(r[n] for r in rows) / len(rows) for n in names}}


def format_values(values: Mapping[str, float]) -> str:
    """``psnr 28.31  ssim 0.8123  lpips-alex 0.2130``: one line of metric values."""
    return "  ".join(f"{name} {value:.{DECIMALS.get(name, 4)}f}" for name, value in values.items())


def format_table(rows: Sequence[Mapping[str, Any]], names: Sequence[str], first: str = "image") -> str:
    """A plain-text table: one line per row, columns aligned, numbers rounded per metric."""
    cells = [[first, *names]]
    for row in rows:
        cells.append([str(row[first]), *(f"{row[n]:.{DECIMALS.get(n, 4)}f}" for n in names)])
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in cells)


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_json(rows: Sequence[Mapping[str, Any]], mean: Mapping[str, Any], conventions: Mapping[str, Any]) -> str:
    """``{"conventions": ..., "images": [...], "mean": {...}}``; +inf PSNR is written as null."""
    def clean(row: Mapping[str, Any]) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}

    doc = {"conventions": dict(conventions), "images": [clean(r) for r in rows], "mean": clean(mean)}
    return json.dumps(doc, indent=2) + "\n"
