"""The numbers the README quotes for ``make demo``: the validation metrics of the quickstart run at its first and
last validation, read from the run's ``metrics.csv`` (Lightning's CSVLogger). Prints one JSON object.

    make demo && python benchmarks/quickstart.py                 # the newest runs/mofa/version_N
    python benchmarks/quickstart.py --metrics runs/mofa/version_3/metrics.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

#: The validation metrics quoted (``val/`` + name): the encoder's and, after the config's fit, ``fitted_``.
QUOTED = ("landmark_error_px", "vertex_error_ratio", "vertex_error_mm", "rotation_error_deg")


def newest_metrics(runs: Path) -> Path:
    """The ``metrics.csv`` of the highest ``version_N`` under ``runs``."""
    found = sorted(runs.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not found:
        raise SystemExit(f"no version_*/metrics.csv under {runs}: run `make demo` first")
    return found[-1]


def quickstart_numbers(metrics: Path) -> dict:
    """First and last validation of ``metrics``: step and each quoted metric, for the encoder and the fit."""
    rows = [row for row in csv.DictReader(metrics.open()) if row.get("val/landmark_error_px")]
    if not rows:
        raise SystemExit(f"{metrics}: no validation rows")

    def numbers(row: dict) -> dict:
        values = {"step": int(row["step"])}
        for prefix, label in (("", "encoder"), ("fitted_", "fitted")):
            values[label] = {
                name: round(float(row[f"val/{prefix}{name}"]), 4)
                for name in QUOTED
                if row.get(f"val/{prefix}{name}")
            }
        return values

    return {"metrics": str(metrics), "first": numbers(rows[0]), "last": numbers(rows[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--metrics", type=Path, default=None, help="a metrics.csv (default: the newest run's)"
    )
    parser.add_argument("--runs", type=Path, default=Path("runs/mofa"), help="where the quickstart logs")
    args = parser.parse_args()
    print(json.dumps(quickstart_numbers(args.metrics or newest_metrics(args.runs))))


if __name__ == "__main__":
    main()
