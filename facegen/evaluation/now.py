"""The NoW benchmark (Sanyal, Bolkart, Feng, Black, "Learning to Regress 3D Face Shape and Expression from an
Image without 3D Supervision", CVPR 2019): neutral 3D shape from photos of 100 subjects, scored against their
scans.

Layout of the download (``--root``): ``imagepathsvalidation.txt`` (one ``subject/challenge/IMG.jpg`` per line),
``iphone_pictures/<subject>/<challenge>/IMG.jpg``, ``scans/<subject>/*.obj`` (one scan per subject, millimetres)
and ``scans_lmks_onlypp/<subject>/*.pp`` (the scan's 7 landmarks, MeshLab picked points).

Predictions in the challenge's layout: ``predicted_meshes/<subject>/<challenge>/IMG.obj`` (the neutral mesh) and
``IMG.npy`` (its 7 landmarks (7, 3), in the mesh's coordinates) — the files the challenge accepts.

The metric, as the paper describes it: the predicted mesh is aligned to the scan by a similarity transform on the
7 landmarks, the alignment refined by rigid ICP minimising the scan-to-mesh distance, and the error is the
distance from every scan vertex to the closest point of the predicted surface; median, mean and standard
deviation (mm) over all vertices of all scans.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from facegen.errors import BadFileError
from facegen.evaluation.geometry import similarity_transform

#: The 7 NoW landmarks as iBUG-68 indices (0-based): the outer and inner corners of the eyes (image left to
#: right), the nose tip, the mouth corners (image left to right).
NOW_FROM_IBUG = (36, 39, 42, 45, 30, 48, 54)
#: Triangles tested exactly per scan vertex (those nearest by centroid).
CANDIDATES = 24
#: Scan vertices per batch of the closest-point search (bounds its memory).
CHUNK = 20_000


def read_pp(path: str | Path) -> np.ndarray:
    """The points (N, 3) of a MeshLab ``.pp`` (picked points) file, in file order."""
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
        points = [[float(p.attrib[k]) for k in ("x", "y", "z")] for p in root.iter("point")]
    except (ElementTree.ParseError, KeyError, ValueError, OSError) as error:
        raise BadFileError(
            f"{path}: not a MeshLab picked-points file ({type(error).__name__}: {error})"
        ) from None
    if not points:
        raise BadFileError(f"{path}: no <point> in this picked-points file")
    return np.asarray(points, dtype=np.float64)


def _closest_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest points (..., 3) on triangles (a, b, c) (..., 3) to ``points`` (..., 3) (Ericson, Real-Time
    Collision Detection, 5.1.5), vectorised over the leading dimensions."""
    ab, ac, ap = b - a, c - a, points - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = points - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = points - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = 1.0 / (va + vb + vc)
        v, w = vb * denominator, vc * denominator
        inside = a + ab * v[..., None] + ac * w[..., None]
        on_ab = a + ab * (d1 / (d1 - d3))[..., None]
        on_ac = a + ac * (d2 / (d2 - d6))[..., None]
        on_bc = b + (c - b) * ((d4 - d3) / ((d4 - d3) + (d5 - d6)))[..., None]
    regions = [  # (condition, point), first match wins, as the reference's early returns
        ((d1 <= 0) & (d2 <= 0), a),
        ((d3 >= 0) & (d4 <= d3), b),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), on_ab),
        ((d6 >= 0) & (d5 <= d6), c),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), on_ac),
        ((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), on_bc),
    ]
    out = inside
    for condition, point in reversed(regions):
        out = np.where(condition[..., None], point, out)
    return out


def closest_points(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """For each of ``points`` (N, 3), the closest point (N, 3) on the surface (``vertices`` (V, 3), ``faces``
    (F, 3)), searched among the :data:`CANDIDATES` triangles whose centroids are nearest."""
    corners = vertices[faces]  # (F, 3, 3)
    k = min(CANDIDATES, len(faces))
    tree = cKDTree(corners.mean(1))
    out = np.empty_like(points)
    for start in range(0, len(points), CHUNK):
        chunk = points[start : start + CHUNK]
        _, index = tree.query(chunk, k=k)
        candidates = corners[index.reshape(len(chunk), k)]  # (n, k, 3, 3)
        closest = _closest_on_triangles(
            chunk[:, None], candidates[..., 0, :], candidates[..., 1, :], candidates[..., 2, :]
        )
        best = np.linalg.norm(closest - chunk[:, None], axis=-1).argmin(1)
        out[start : start + CHUNK] = closest[np.arange(len(chunk)), best]
    return out


def _fitted(points: np.ndarray, source: np.ndarray, target: np.ndarray, scale: bool) -> np.ndarray:
    """``points`` (N, 3) moved by the least-squares rigid (``scale``: similarity) transform of ``source`` onto
    ``target`` (M, 3) (:func:`similarity_transform`)."""
    rotation, translation, factor = (
        t[0].numpy()
        for t in similarity_transform(
            torch.from_numpy(np.ascontiguousarray(source, dtype=np.float64))[None],
            torch.from_numpy(np.ascontiguousarray(target, dtype=np.float64))[None],
            scale=scale,
        )
    )
    return float(factor.reshape(())) * points @ rotation.T + translation.reshape(3)


def scan_to_mesh_errors(
    vertices: np.ndarray,
    faces: np.ndarray,
    landmarks: np.ndarray,
    scan: np.ndarray,
    scan_landmarks: np.ndarray,
    icp_iterations: int = 10,
) -> np.ndarray:
    """Distances (N,) from every ``scan`` vertex (N, 3) to the predicted surface (``vertices`` (V, 3), ``faces``)
    after the similarity alignment of its 7 ``landmarks`` onto ``scan_landmarks`` (7, 3) and rigid ICP."""
    aligned = _fitted(vertices, landmarks, scan_landmarks, scale=True)
    for _ in range(icp_iterations):
        aligned = _fitted(aligned, closest_points(scan, aligned, faces), scan, scale=False)
    return np.linalg.norm(closest_points(scan, aligned, faces) - scan, axis=1)


def summarise_now(errors: list[np.ndarray], items: int, failures: list[dict]) -> dict:
    """Median, mean and standard deviation (mm) over all scan vertices of all scored images."""
    summary: dict = {"items": items, "scored": items - len(failures), "failures": len(failures)}
    if errors:
        every = np.concatenate(errors)
        summary.update(
            median_mm=float(np.median(every)), mean_mm=float(every.mean()), std_mm=float(every.std())
        )
    return summary
