#!/usr/bin/env python3
"""Plot the loss log of tools/train_prior.py.

Usage:  python3 tools/plot_loss.py --log prior.csv --out loss.png [--title T]

Reads the CSV that train_prior.py writes (header ``step,loss,ema_loss,lr,seconds``; only
``step``, ``loss`` and ``ema_loss`` are used) and draws the raw per-step loss (thin, light)
and its exponential moving average ``ema_loss`` (bold) against the step, on a log-scale y
axis. The log may belong to a run still in progress. Needs matplotlib (an optional tool
dependency, see tools/requirements.txt); it renders with the Agg backend, so no display is
needed.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from typing import List, Tuple

REQUIRED = ("step", "loss", "ema_loss")


def read_log(path: str) -> Tuple[List[int], List[float], List[float]]:
    """Returns (steps, loss, ema_loss) sorted by step; rows with a non-finite or
    non-positive value are dropped (they cannot be drawn on a log axis)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; "
                             f"expected a header with {', '.join(REQUIRED)}")
        rows = []
        for i, r in enumerate(reader, start=2):
            if not r.get("step"):
                continue  # blank line
            try:
                s, lv, ev = int(r["step"]), float(r["loss"]), float(r["ema_loss"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: line {i}: {e}") from None
            if all(math.isfinite(v) and v > 0 for v in (lv, ev)):
                rows.append((s, lv, ev))
    rows.sort()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def plot(steps, loss, ema_loss, out: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ax.plot(steps, loss, color="tab:blue", alpha=0.35, linewidth=0.9, label="loss (logged step)")
    ax.plot(steps, ema_loss, color="tab:blue", linewidth=2.2,
            label=f"ema_loss (smoothed), last {ema_loss[-1]:.4g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("noise-prediction MSE (log scale)")
    ax.set_title(title)
    ax.set_xlim(left=0)
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", axis="y", alpha=0.15)
    ax.legend(loc="upper right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", required=True, help="loss log CSV written by train_prior.py")
    p.add_argument("--out", required=True, help="output image (PNG; any matplotlib format)")
    p.add_argument("--title", default=None, help="plot title (default: the log's file name)")
    a = p.parse_args(argv)
    try:
        steps, loss, ema_loss = read_log(a.log)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not steps:
        print(f"error: {a.log} holds no plottable rows", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("error: plot_loss.py needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    title = a.title if a.title is not None else f"training loss: {os.path.basename(a.log)}"
    plot(steps, loss, ema_loss, a.out, title)
    print(f"{a.out}: {len(steps)} points, steps {steps[0]}..{steps[-1]}, "
          f"last ema_loss {ema_loss[-1]:.6g}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
