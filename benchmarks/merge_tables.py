"""Combine tables of ``benchmarks/restoration.py --table`` that scored disjoint images of one
test set (an interrupted run and the run that completed it with ``--skip``) into the table of
their union, or (``--join``) tables of other rows on the same images into one table with
every row.

    .venv/bin/python benchmarks/merge_tables.py PART.md PART.md [...] --out TABLE.md [--note LINE]
    .venv/bin/python benchmarks/merge_tables.py --join TABLE.md MORE_ROWS.md [...] --out TABLE.md

A row's metrics, seconds and NFE are the image-weighted means of the parts' rows (exact for
means, up to the printed rounding of the parts and of the result: 0.01 dB of PSNR, 1e-4 of
SSIM and LPIPS), its peak memory the largest, its image count the sum.  A task is merged from
the parts that have it, which must have the same rows; the rule line is recomputed
(``restoration.rule_line``).  The parts must not share images: the merge cannot see image
names, so the parts' headers (kept in the output) say which they scored.

``--join``: each task gets the rows of every part that has it (the first part's order, then
the new rows).  A row in more than one part (a baseline both runs scored) must have the same
metrics (to one unit of the printed last digit: a merged table's means carry its parts'
rounding), NFE, target and image count in each: the check that the parts scored the same
images (the measurements are seeded per image, so a row's mean is a fingerprint of its
images).  Its seconds and peak memory are the first part's.  The rule line is recomputed over all rows.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from restoration import format_rows, rule_line  # noqa: E402

FIXED = ("method", "target", "NFE")
TAIL = ("s / image", "peak MiB", "images")


def parse_table(text: str) -> tuple[list[str], dict[str, tuple[str, list[str], dict[str, dict[str, Any]]]]]:
    """(header lines, {task: (its title line, metric names, {row label: row})}) of one table file."""
    header = [line[2:] for line in text.splitlines() if line.startswith("# ")]
    tasks = {}
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith("# ")]
        if len(lines) < 3 or not lines[1].startswith("| method |"):
            continue
        columns = [c.strip() for c in lines[1].strip("|").split("|")]
        metrics = columns[len(FIXED):-len(TAIL)]
        if tuple(columns[:len(FIXED)]) != FIXED or tuple(columns[-len(TAIL):]) != TAIL or not metrics:
            raise ValueError(f"unexpected columns {columns}")
        rows = {}
        for line in lines[3:]:
            if not line.startswith("|"):
                continue
            cells = dict(zip(columns, (c.strip() for c in line.strip("|").split("|"))))
            rows[cells["method"]] = {"target": cells["target"],
                                     "nfe": None if cells["NFE"] == "-" else float(cells["NFE"]),
                                     **{m: float(cells[m]) for m in metrics},
                                     "seconds": float(cells["s / image"]), "peak_mib": float(cells["peak MiB"]),
                                     "images": int(cells["images"])}
        tasks[lines[0].split(":", 1)[0]] = (lines[0], metrics, rows)
    if not tasks:
        raise ValueError("no task tables found")
    return header, tasks


def merge_rows(parts: list[dict[str, Any]], metrics: list[str]) -> dict[str, Any]:
    """One row from the same row of every part (module docstring)."""
    total = sum(p["images"] for p in parts)
    row: dict[str, Any] = {k: sum(p[k] * p["images"] for p in parts) / total for k in [*metrics, "seconds"]}
    nfe = [p["nfe"] for p in parts]
    row["nfe"] = None if None in nfe else sum(n * p["images"] for n, p in zip(nfe, parts)) / total
    targets = {p["target"] for p in parts}
    if len(targets) != 1:
        raise ValueError(f"the parts disagree on the row's target: {sorted(targets)}")
    return {**row, "target": targets.pop(), "peak_mib": max(p["peak_mib"] for p in parts), "images": total}


def merge(texts: list[str]) -> tuple[list[list[str]], list[str]]:
    """(the parts' headers, the merged task blocks) of the table files' ``texts``: each task
    from the parts that have it (the runs completing a set may each cover some tasks)."""
    parsed = [parse_table(t) for t in texts]
    blocks = []
    for task in dict.fromkeys(t for _, tasks in parsed for t in tasks):
        having = [(k, tasks[task]) for k, (_, tasks) in enumerate(parsed, start=1) if task in tasks]
        k0, (title, metrics, rows) = having[0]
        for k, (_, other_metrics, other_rows) in having[1:]:
            if other_metrics != metrics or list(other_rows) != list(rows):
                raise ValueError(f"part {k} has other rows or metrics for {task} than part {k0}")
        merged = {label: merge_rows([part[2][label] for _, part in having], metrics) for label in rows}
        blocks.append(f"{title}\n{format_rows(merged, metrics)}\n{rule_line(merged)}")
    return [header for header, _ in parsed], blocks


def join(texts: list[str]) -> tuple[list[list[str]], list[str]]:
    """(the parts' headers, the joined task blocks) of the table files' ``texts`` (``--join``:
    module docstring)."""
    parsed = [parse_table(t) for t in texts]
    blocks = []
    for task in dict.fromkeys(t for _, tasks in parsed for t in tasks):
        having = [(k, tasks[task]) for k, (_, tasks) in enumerate(parsed, start=1) if task in tasks]
        k0, (title, metrics, rows) = having[0]
        joined, source = dict(rows), dict.fromkeys(rows, k0)
        for k, (_, other_metrics, other_rows) in having[1:]:
            if other_metrics != metrics:
                raise ValueError(f"part {k} has other metrics for {task} than part {k0}")
            for label, row in other_rows.items():
                if label not in joined:
                    joined[label], source[label] = row, k
                    continue
                first = joined[label]
                if any(row[key] != first[key] for key in ("target", "nfe", "images")) or any(
                        abs(row[m] - first[m]) > (0.01 if m == "psnr" else 1e-4) + 1e-9 for m in metrics):
                    raise ValueError(f"{task}: row {label!r} of part {k} differs from part {source[label]}'s "
                                     "(metrics, NFE, target or image count): not the same images?")
        blocks.append(f"{title}\n{format_rows(joined, metrics)}\n{rule_line(joined)}")
    return [header for header, _ in parsed], blocks


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("parts", type=Path, nargs="+", help="tables of disjoint images of one set (--join: of the "
                   "same images)")
    p.add_argument("--join", action="store_true", help="unite the rows of tables of the same images")
    p.add_argument("--out", type=Path, required=True, help="the merged table (must not exist, nor be a part)")
    p.add_argument("--note", action="append", default=[], help="a line for the merged table's header")
    args = p.parse_args(argv)
    if len(args.parts) < 2:
        p.error("give at least two parts")
    if args.out.exists() or args.out.resolve() in {q.resolve() for q in args.parts}:
        p.error(f"--out {args.out} exists or is a part; choose a new file")
    try:
        headers, blocks = (join if args.join else merge)([q.read_text() for q in args.parts])
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}")
    command = "benchmarks/merge_tables.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    lines = [command, *args.note]
    for k, (path, header) in enumerate(zip(args.parts, headers)):
        lines += [f"part {k + 1} ({path.name}): {line}" for line in header]
    args.out.write_text("".join(f"# {line}\n" for line in lines) + "\n" + "\n\n".join(blocks) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
