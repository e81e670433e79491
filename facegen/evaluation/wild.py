"""Landmark scores on in-the-wild annotated faces (:mod:`facegen.data.wild_set` reads the set): photos may show
several faces, of which only some are annotated, so a detected face is matched to an annotation by its box.

Scores per face: ``nme_box`` (:func:`~facegen.evaluation.aflw2000.box_nme`: mean point error over sqrt(w·h) of
the annotation's box, as AFLW2000-3D reports it) and ``nme_io`` (over the outer-eye-corner distance, as 300-W
reports it), binned by absolute yaw; for fits, also the fitted yaw against the pose table's, and the faces fitted
turned the wrong way.
"""

from __future__ import annotations

import math

import numpy as np

from facegen.geometry.boxes import box_iou, points_box

#: Absolute-yaw bins in degrees, [low, high): the development set's near-frontal, moderate and large yaw.
YAW_BINS = ((0.0, 15.0), (15.0, 30.0), (30.0, 90.0))
#: NME_io above this counts as a failed face (300-W's usual failure threshold).
FAILURE_NME_IO = 0.10
#: The pose table's yaw is positive when the nose points toward the image's right; a positive facegen yaw (about
#: the model's Y axis, :func:`facegen.geometry.rotations.euler_to_matrix`) turns it toward the image's left. A
#: facegen yaw in the table's convention is ``TABLE_YAW_SIGN * yaw``.
TABLE_YAW_SIGN = -1.0
#: |table yaw| in degrees from which a fit turned to the other side counts as wrong-way: nearer frontal, the
#: table's own estimate (a mean-face fit) cannot tell the side.
WRONG_WAY_MIN_YAW = 15.0


def nme_io(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean point distance over the distance of ``truth``'s outer eye corners (points 37 and 46, 1-based)."""
    return float(
        np.linalg.norm(predicted - truth, axis=1).mean() / max(np.linalg.norm(truth[36] - truth[45]), 1e-12)
    )


def yaw_bin(yaw: float) -> str:
    """The label of the :data:`YAW_BINS` bin of ``|yaw|`` (degrees), e.g. ``"15-30"``; ``"unknown"`` for NaN."""
    if math.isnan(yaw):
        return "unknown"
    for low, high in YAW_BINS:
        if low <= abs(yaw) < high:
            return f"{low:g}-{high:g}"
    return f"{YAW_BINS[-1][0]:g}-{YAW_BINS[-1][1]:g}"


def overlap(box: tuple[float, float, float, float], points: np.ndarray) -> float | None:
    """Intersection over union of the box (x0, y0, x1, y1) and the box of the annotated face ``points``
    (68, 2), or None when the box does not hold the points' centre."""
    annotated = points_box(points)
    centre = (annotated[:2] + annotated[2:]) / 2
    x0, y0, x1, y1 = box
    if not (x0 <= centre[0] <= x1 and y0 <= centre[1] <= y1):
        return None
    return box_iou(np.asarray(box), annotated)


def match(boxes: list[tuple[float, float, float, float]], points: np.ndarray) -> int | None:
    """The index of the box that best holds the annotated face ``points`` (68, 2) (:func:`overlap`), or None."""
    scored = [
        (score, index) for index, box in enumerate(boxes) if (score := overlap(box, points)) is not None
    ]
    return max(scored)[1] if scored else None


def wrong_way(fitted_yaw: float, yaw: float) -> bool:
    """Whether a face the table turns at least :data:`WRONG_WAY_MIN_YAW` degrees (``yaw``) was fitted turned to
    the other side (``fitted_yaw``: degrees, in the table's convention)."""
    return abs(yaw) >= WRONG_WAY_MIN_YAW and fitted_yaw * yaw < 0


def summarise(rows: list[dict], annotated: int) -> dict:
    """Mean ``nme_box`` and ``nme_io``, and faces over :data:`FAILURE_NME_IO`, overall and per yaw bin, of
    ``rows`` (dicts with ``nme_box``, ``nme_io``, ``yaw``: the table's, degrees); ``annotated``: the faces that
    should have been found (the missing ones are counted). Rows that all carry ``fitted_yaw`` (degrees, in the
    table's convention: ``TABLE_YAW_SIGN *`` facegen's) add the mean absolute yaw difference ``yaw_error_deg``
    and the count of :func:`wrong_way` fits."""

    def block(selected: list[dict]) -> dict:
        if not selected:
            return {"faces": 0}
        scores = {
            "faces": len(selected),
            "nme_box": round(float(np.mean([r["nme_box"] for r in selected])), 5),
            "nme_io": round(float(np.mean([r["nme_io"] for r in selected])), 5),
            "failures": sum(r["nme_io"] > FAILURE_NME_IO for r in selected),
        }
        if all("fitted_yaw" in r for r in selected):
            scores["yaw_error_deg"] = round(
                float(np.mean([abs(r["fitted_yaw"] - r["yaw"]) for r in selected])), 2
            )
            scores["wrong_way"] = sum(wrong_way(r["fitted_yaw"], r["yaw"]) for r in selected)
        return scores

    summary = {"all": block(rows), "missing": annotated - len(rows)}
    for low, high in YAW_BINS:
        label = f"{low:g}-{high:g}"
        summary[label] = block([r for r in rows if yaw_bin(r["yaw"]) == label])
    return summary
