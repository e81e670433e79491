"""The encoder's learning curve: does MoFA's encoder learn shape with more steps? One training run per call,
self-supervised (the config's objective) or supervised (``supervised_upper_bound.py``'s losses: ``supervised``,
the squared error of each code part against the truth; ``supervised-vertices``, shape and expression through the
mean squared distance of the predicted to the true neutral mesh instead), validated on the held-out synthetic
faces at each step budget of ``--steps``; the encoder alone, no fit after it. Appends one JSON line per budget to
``OUT/curve.jsonl`` (and prints it): the run's settings and its ``val/vertex_error_ratio`` (1: the mean face's
error, lower: shape learnt), vertex error, landmark error and rotation error. ``--stream`` trains on new faces
rendered on the fly (``data.synthetic.stream``) instead of the config's training data (``data``:
``config``).

    python benchmarks/learning_curve.py --config configs/mofa.yaml --steps 1000 4000 --size 64 --stream \\
        --out runs/curve
    python benchmarks/learning_curve.py --config configs/mofa.yaml --steps 1000 4000 --size 64 --mode supervised \\
        --out runs/curve
    python benchmarks/learning_curve.py --plot runs/curve/curve.jsonl --figure docs/learning_curve.png

``--plot`` draws the ratio against the steps (log scale), one line per run and length (``max_steps``, the
last budget: it sets the learning-rate schedule), from any such files.

A run keeps its ``last.ckpt`` (written at every validation, and when the run is stopped by a signal) in
``OUT/<run>/checkpoints``: the same command run again resumes it there, so a curve longer than one sitting is
trained in several (each adds a ``version_*`` log; the budgets are read from all of them). A sitting stopped by
SIGTERM reports the budgets reached so far and exits naming the rest.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from lightning.pytorch.utilities.exceptions import SIGTERMException
from PIL import Image, ImageDraw

from facegen.atomic import write_bytes_atomic
from facegen.cli import FacegenCLI

#: The validation metrics reported at each budget.
REPORTED = ("vertex_error_ratio", "vertex_error_mm", "landmark_error_px", "rotation_error_deg")
#: Colours of the plotted runs, in order.
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207))


def fit_arguments(args) -> list[str]:
    """The ``facegen fit`` command line of one run (configs, then the run's settings over them)."""
    budgets = sorted(set(args.steps))
    every = math.gcd(*budgets)
    out = Path(args.out)
    argv = ["fit"]
    for config in args.config:
        argv += ["--config", config]
    if args.mode != "self":
        here = str(Path(__file__).parent)  # supervised_upper_bound, imported by class_path
        if here not in sys.path:
            sys.path.insert(0, here)
        from supervised_upper_bound import SupervisedMoFA

        SupervisedMoFA.supervision = "vertices" if args.mode == "supervised-vertices" else "code"
        argv += ["--model.class_path", "supervised_upper_bound.SupervisedMoFA"]
        argv += ["--data.init_args.augment", "null", "--data.init_args.train_ground_truth", "true"]
    argv += ["--model.init_args.fit", "null", "--model.init_args.validate_fitted", "0"]
    if args.size:
        argv += ["--model.init_args.image_size", str(args.size)]
    if args.face_model:
        argv += ["--model.init_args.face_model", args.face_model]
    name = run_name(args)
    if args.face_model or args.size:  # the config's synthetic shards are of its own model and size
        argv += [
            "--data.init_args.synthetic.root",
            str(out / f"synth-{args.face_model or 'config'}-{args.size}"),
        ]
    if args.stream:
        argv += ["--data.init_args.synthetic.stream", "true"]
    argv += ["--trainer.max_steps", str(budgets[-1]), "--trainer.val_check_interval", str(every)]
    checkpoints = out / name / "checkpoints"
    keep_last = {
        "class_path": "facegen.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(checkpoints), "save_last": True, "save_top_k": 0},
    }
    argv += ["--trainer.check_val_every_n_epoch", "null", "--trainer.callbacks", json.dumps([keep_last])]
    argv += ["--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(out / name)]
    logger = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(out), "name": name},
    }
    argv += ["--trainer.logger", json.dumps(logger)]
    if (checkpoints / "last.ckpt").is_file():  # an earlier sitting of this run: go on from its last state
        argv += ["--ckpt_path", str(checkpoints / "last.ckpt")]
    return argv


def run_name(args) -> str:
    """The run's folder and its name in the plot: mode, configs, face model, size and data, so that runs of
    different configs never share one."""
    data = "stream" if args.stream else "config"
    configs = "+".join(Path(config).stem for config in args.config)
    return f"{args.mode}-{configs}-{args.face_model or 'config'}-{args.size or 'config'}-{data}"


def validations(run: Path) -> dict[int, dict]:
    """The validation rows by the number of steps trained before them, from the ``metrics.csv`` of every sitting
    of the run (``run/version_*``; a later sitting's row replaces an earlier one's)."""
    logs = sorted(run.glob("version_*/metrics.csv"), key=lambda path: int(path.parent.name.split("_")[-1]))
    rows = {}
    for metrics in logs:
        with metrics.open() as handle:
            for row in csv.DictReader(handle):
                if row.get("val/vertex_error_ratio"):
                    rows[int(row["step"]) + 1] = row
    return rows


def train(args) -> list[dict]:
    """Trains (or goes on with) the run and reports each budget it has reached. A run stopped by SIGTERM (a
    scheduler's pre-emption, ``timeout``, ``kill``; its ``last.ckpt`` saved) reports the budgets it reached and
    exits naming the others, which the same command goes on to."""
    budgets = sorted(set(args.steps))
    run = Path(args.out) / run_name(args)
    try:
        FacegenCLI(args=fit_arguments(args))
        stopped = False
    except SIGTERMException:
        stopped = True
    rows = validations(run)
    results = []
    for steps in [b for b in budgets if b in rows]:
        row = rows[steps]
        result = {
            "run": run_name(args),
            "mode": args.mode,
            "config": args.config,
            "face_model": args.face_model or "config",
            "size": args.size or "config",
            "data": "stream" if args.stream else "config",  # config: the config's own training data
            "max_steps": budgets[-1],  # the length of the run (its learning-rate schedule)
            "steps": steps,
            **{name: round(float(row[f"val/{name}"]), 4) for name in REPORTED if row.get(f"val/{name}")},
        }
        results.append(result)
        print(json.dumps(result), flush=True)
    with (Path(args.out) / "curve.jsonl").open("a") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in results)
    missing = [b for b in budgets if b not in rows]
    if stopped and missing:
        raise SystemExit(
            f"{run}: stopped by SIGTERM before the budgets {missing}; the same command goes on from "
            f"{run / 'checkpoints' / 'last.ckpt'}"
        )
    if missing:
        raise SystemExit(f"{run}: no validation after step {missing[0]}; validated at {sorted(rows)}")
    return results


def legend(row: dict) -> str:
    """A run's line in the plot: its mode, configs, what it changed over them and its length (runs that differ
    only in their length have different learning-rate schedules, so they are drawn apart; rows written before
    the length was reported have none)."""
    bound = {"supervised": "supervised bound (code)", "supervised-vertices": "supervised bound (vertices)"}
    parts = [bound.get(row["mode"], "self-supervised")]
    parts.append("+".join(Path(config).stem for config in row["config"]))
    if row["face_model"] != "config":
        parts.append(row["face_model"])
    if row["size"] != "config":
        parts.append(f"{row['size']}px")
    if row["data"] == "stream":
        parts.append("stream")
    length = f"; {row['max_steps']:,} steps" if "max_steps" in row else ""
    return f"{parts[0]}: {', '.join(parts[1:])}{length}"


def plot(files: list[str], size: tuple[int, int] = (640, 400)) -> Image.Image:
    """The vertex error ratio against the steps (log scale), one line per run of the JSON-line ``files``."""
    points_of: dict[str, dict[int, float]] = {}  # a budget reported again (a run resumed) is drawn once
    for file in files:
        for line in Path(file).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                points_of.setdefault(legend(row), {})[row["steps"]] = row["vertex_error_ratio"]
    runs = {name: sorted(points.items()) for name, points in points_of.items()}
    if not runs:
        raise SystemExit(f"--plot {' '.join(files)}: no results in these files")
    steps = [s for points in runs.values() for s, _ in points]
    ratios = [r for points in runs.values() for _, r in points] + [1.0]
    low, high = math.log10(min(steps)) - 0.1, math.log10(max(steps)) + 0.1
    bottom, top = 0.0, max(ratios) * 1.1
    width, height = size
    left, right, upper, lower = 60, width - 20, 20, height - 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)

    def at(step: float, ratio: float) -> tuple[float, float]:
        x = left + (math.log10(step) - low) / (high - low) * (right - left)
        return x, lower - (ratio - bottom) / (top - bottom) * (lower - upper)

    draw.rectangle([left, upper, right, lower], outline="black")
    for tick in sorted(set(steps)):
        x, _ = at(tick, 0)
        draw.line([x, lower, x, lower + 5], fill="black")
        draw.text((x - 12, lower + 8), f"{tick:,}", fill="black")
    for k in range(6):
        value = bottom + (top - bottom) * k / 5
        _, y = at(10**low, value)
        draw.line([left - 5, y, left, y], fill="black")
        draw.text((8, y - 6), f"{value:.2f}", fill="black")
    _, one = at(10**low, 1.0)
    draw.line([left, one, right, one], fill=(150, 150, 150))
    draw.text((right - 90, one - 14), "mean face", fill=(120, 120, 120))
    draw.text((left, height - 22), "training steps (log)   |   y: vertex error / mean face's", fill="black")
    for index, (name, points) in enumerate(sorted(runs.items())):
        colour = COLOURS[index % len(COLOURS)]
        xy = [at(s, r) for s, r in sorted(points)]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.text(
            (left + 10, lower - 6 - 14 * (len(runs) - index)), name, fill=colour
        )  # low: below the lines
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", nargs="+", default=["configs/mofa.yaml"], help="MoFA configs, merged in order"
    )
    parser.add_argument("--steps", nargs="+", type=int, default=[1000, 4000, 16000], help="step budgets")
    parser.add_argument("--size", type=int, default=None, help="crop size (default: the config's)")
    parser.add_argument("--face_model", default=None, help="face model (default: the config's)")
    parser.add_argument("--mode", choices=("self", "supervised", "supervised-vertices"), default="self")
    parser.add_argument("--stream", action="store_true", help="train on faces rendered on the fly")
    parser.add_argument("--out", default="runs/learning_curve", help="run folders and curve.jsonl")
    parser.add_argument(
        "--plot", nargs="+", default=None, help="curve.jsonl files to draw instead of training"
    )
    parser.add_argument("--figure", default="learning_curve.png", help="the picture --plot writes")
    args = parser.parse_args(argv)
    if args.plot:
        image = plot(args.plot)
        from io import BytesIO

        buffer = BytesIO()
        image.save(buffer, format="PNG")
        write_bytes_atomic(Path(args.figure), buffer.getvalue())
        print(json.dumps({"wrote": args.figure}))
        return 0
    if min(args.steps) < 1:
        raise SystemExit(f"--steps {args.steps}: budgets are positive step counts")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
