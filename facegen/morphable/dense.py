"""Dense landmarks for any face model: MediaPipe's 468-point face mesh registered onto a model's mean face, so
each dense point becomes a triangle of the model and barycentric weights in it.

The registration (:func:`register_dense`): a similarity from the inner 51 iBUG landmarks (brows, nose, eyes,
mouth, through :data:`~facegen.geometry.landmarks.MEDIAPIPE_INNER`; the jaw points mean something else on the
two meshes), then non-rigid ICP: per-point displacements of the canonical mesh pulled to their closest points on
the model's face surface, with a Laplacian smoothness term over the canonical mesh whose stiffness is lowered
step by step (Amberg et al., "Optimal Step Nonrigid ICP Algorithms for Surface Registration", CVPR 2007, with
per-vertex translations instead of affine transforms), and the inner landmarks kept on their model vertices.
Each registered point is finally projected onto the closest model triangle.

MediaPipe's canonical face model (``canonical_face_model.obj``, Apache-2.0, 468 vertices, 898 triangles,
centimetres, Y up, the face looking along +Z) is downloaded from MediaPipe's repository at a pinned tag on first
use (:func:`fetch_canonical_mesh`) or read from a given file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from facegen.errors import BadFileError, ConfigError
from facegen.geometry.landmarks import INNER, MEDIAPIPE_INNER
from facegen.morphable.download import DownloadError, download_file
from facegen.morphable.model import MorphableModel

#: Points of MediaPipe's face mesh, the dense landmark scheme facegen registers.
MEDIAPIPE_POINTS = 468
CANONICAL_URL = (
    "https://raw.githubusercontent.com/google-ai-edge/mediapipe/v0.10.21/"
    "mediapipe/modules/face_geometry/data/canonical_face_model.obj"
)
#: iBUG points that anchor the registration: all but the jaw contour (0-16).
ANCHORS = INNER


class CanonicalMesh(NamedTuple):
    """A dense landmark scheme's own mesh: vertices (N, 3) in millimetres (Y up, face along +Z), triangles
    (T, 3) 0-based."""

    vertices: np.ndarray
    faces: np.ndarray


class DenseCorrespondence(NamedTuple):
    """Per dense point: the model triangle (N,) and barycentric weights (N, 3) in it; ``distance_mm`` (N,) from
    the registered canonical point to that surface point, a measure of how well the meshes agreed."""

    triangles: np.ndarray
    barycentrics: np.ndarray
    distance_mm: np.ndarray


def read_canonical_mesh(path: str | Path, points: int = MEDIAPIPE_POINTS) -> CanonicalMesh:
    """The vertices and triangles of an ``.obj`` (``v``, ``f`` with optional ``/vt`` indices), in centimetres as
    MediaPipe writes it, returned in millimetres.

    Raises:
        BadFileError: naming the file, when it is not an OBJ of ``points`` vertices with triangles.
    """
    vertices, faces = [], []
    try:
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "v":
                vertices.append([float(x) for x in parts[1:4]])
            elif parts and parts[0] == "f":
                faces.append([int(p.split("/")[0]) - 1 for p in parts[1:4]])
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as error:
        raise BadFileError(f"{path}: not a readable OBJ mesh ({error})") from None
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    if vertices.shape != (points, 3) or faces.ndim != 2 or len(faces) == 0:
        raise BadFileError(
            f"{path}: {len(vertices)} vertices and {len(faces)} triangles; MediaPipe's canonical face model has "
            f"{points} vertices"
        )
    if faces.min() < 0 or faces.max() >= points:
        raise BadFileError(f"{path}: triangle indices outside 1..{points}")
    return CanonicalMesh(vertices * 10.0, faces)


def fetch_canonical_mesh(cache: Path) -> Path:
    """MediaPipe's canonical face model in ``cache`` (downloaded once; its structure is checked).

    Raises:
        ConfigError: offline or blocked, naming the URL and where to put the file by hand.
        BadFileError: the download is not the canonical mesh (it is removed).
    """
    target = Path(cache) / "mediapipe" / "canonical_face_model.obj"
    if target.is_file():
        return target
    try:
        download_file(CANONICAL_URL, target, timeout=60)
    except DownloadError as error:
        raise ConfigError(
            f"{error}; download it by hand and give it as --dense-landmarks FILE.obj, or place it at {target}"
        ) from None
    try:
        read_canonical_mesh(target)
    except BadFileError:
        target.unlink()
        raise
    return target


# ------------------------------------------------------------------------------------------- geometry
def closest_on_triangles(points: Tensor, a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Closest points on triangles (a, b, c) to ``points``, all broadcast to (..., 3); returns the points and
    their barycentric weights (..., 3) (Ericson, "Real-Time Collision Detection", 5.1.5)."""

    def dot(u: Tensor, v: Tensor) -> Tensor:
        return (u * v).sum(-1)

    ab, ac, ap = b - a, c - a, points - a
    bp, cp = points - b, points - c
    d1, d2, d3, d4 = dot(ab, ap), dot(ac, ap), dot(ab, bp), dot(ac, bp)
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    tiny = torch.finfo(points.dtype).tiny

    def safe(numerator: Tensor, denominator: Tensor) -> Tensor:
        return numerator / torch.where(
            denominator.abs() > tiny, denominator, torch.full_like(denominator, tiny)
        )

    total = va + vb + vc
    v, w = safe(vb, total), safe(vc, total)
    bary = torch.stack([1 - v - w, v, w], -1)  # inside the triangle
    zero, one = torch.zeros_like(d1), torch.ones_like(d1)
    t = safe(d4 - d3, (d4 - d3) + (d5 - d6))
    regions = [  # Ericson's tests in reverse order: the first that holds there wins
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), torch.stack([zero, 1 - t, t], -1)),
        (
            (vb <= 0) & (d2 >= 0) & (d6 <= 0),
            torch.stack([1 - safe(d2, d2 - d6), zero, safe(d2, d2 - d6)], -1),
        ),
        ((d6 >= 0) & (d5 <= d6), torch.stack([zero, zero, one], -1)),
        (
            (vc <= 0) & (d1 >= 0) & (d3 <= 0),
            torch.stack([1 - safe(d1, d1 - d3), safe(d1, d1 - d3), zero], -1),
        ),
        ((d3 >= 0) & (d4 <= d3), torch.stack([zero, one, zero], -1)),
        ((d1 <= 0) & (d2 <= 0), torch.stack([one, zero, zero], -1)),
    ]
    for region, weights in regions:
        bary = torch.where(region[..., None], weights, bary)
    closest = bary[..., :1] * a + bary[..., 1:2] * b + bary[..., 2:] * c
    return closest, bary


def project_to_mesh(
    points: Tensor, vertices: Tensor, faces: Tensor, candidates: int = 48
) -> tuple[Tensor, Tensor, Tensor]:
    """For each of ``points`` (N, 3): the closest point on the mesh (``vertices`` (V, 3), ``faces`` (F, 3)), its
    triangle (N,) and barycentric weights (N, 3), searched among the ``candidates`` triangles whose centroids
    are nearest (a k-d tree; all triangles when there are fewer)."""
    from scipy.spatial import cKDTree

    corners = vertices[faces]  # (F, 3, 3)
    count = min(candidates, len(faces))
    _, nearest = cKDTree(corners.mean(1).numpy()).query(points.detach().numpy(), k=count)
    nearest = torch.as_tensor(nearest.reshape(len(points), count))
    triangle = corners[nearest]  # (N, K, 3, 3)
    on, bary = closest_on_triangles(
        points[:, None], triangle[..., 0, :], triangle[..., 1, :], triangle[..., 2, :]
    )
    best = (on - points[:, None]).pow(2).sum(-1).argmin(1)
    rows = torch.arange(len(points))
    return on[rows, best], nearest[rows, best], bary[rows, best]


def similarity(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(scale, rotation (3, 3), translation (3,)) minimising |scale R source + t - target|² over (K, 3) pairs
    (Umeyama 1991)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    u, sigma, vt = torch.linalg.svd(xt.T @ xs / len(source))
    sign = torch.ones(3, dtype=source.dtype)
    sign[2] = torch.sign(torch.linalg.det(u @ vt))
    rotation = u @ torch.diag(sign) @ vt
    scale = (sigma * sign).sum() / xs.pow(2).sum(1).mean()
    return scale, rotation, mu_t - scale * rotation @ mu_s


def laplacian(faces: Tensor, count: int) -> Tensor:
    """(N, N) uniform graph Laplacian (I - mean of the neighbours) of a triangle mesh."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = torch.zeros(count, count, dtype=torch.float64)
    adjacency[edges[:, 0], edges[:, 1]] = 1
    adjacency[edges[:, 1], edges[:, 0]] = 1
    degree = adjacency.sum(1).clamp(min=1)
    return torch.eye(count, dtype=torch.float64) - adjacency / degree[:, None]


def register_dense(
    canonical: CanonicalMesh,
    vertices: Tensor,
    faces: Tensor,
    landmark_indices: Tensor,
    stiffness: tuple[float, ...] = (50.0, 20.0, 5.0, 2.0, 0.5),
    iterations: int = 3,
) -> DenseCorrespondence:
    """Register ``canonical`` onto the surface (``vertices`` (V, 3) in mm, ``faces`` (F, 3)) whose iBUG-68
    landmarks are ``landmark_indices``; see the module docstring. ``stiffness``: the smoothness weights of the
    non-rigid steps (relative to the data term per point), ``iterations`` closest-point updates at each."""
    target = vertices.double()
    source = torch.as_tensor(canonical.vertices, dtype=torch.float64)
    anchors_source = torch.as_tensor(MEDIAPIPE_INNER)
    anchors_target = target[landmark_indices[ANCHORS]]
    scale, rotation, shift = similarity(source[anchors_source], anchors_target)
    start = source @ (scale * rotation).T + shift
    count = len(start)
    smooth = laplacian(torch.as_tensor(canonical.faces), count)
    smooth = smooth.T @ smooth
    anchor_weight = torch.zeros(count, dtype=torch.float64)
    anchor_weight[anchors_source] = 1.0
    displacement = torch.zeros_like(start)
    for alpha in stiffness:
        for _ in range(iterations):
            closest, _, _ = project_to_mesh(start + displacement, target, faces)
            gap = (closest - start - displacement).norm(dim=1)
            data = (gap <= 3 * gap.median().clamp(min=1e-9)).double()  # outliers pull nothing
            system = torch.diag(data + anchor_weight) + alpha * smooth
            rhs = data[:, None] * (closest - start)
            rhs[anchors_source] += anchors_target - start[anchors_source]
            displacement = torch.linalg.solve(system, rhs)
    registered = start + displacement
    closest, triangles, weights = project_to_mesh(registered, target, faces)
    return DenseCorrespondence(
        triangles.numpy().astype(np.int32),
        weights.clamp(0, 1).numpy().astype(np.float32),
        (closest - registered).norm(dim=1).numpy().astype(np.float32),
    )


def with_dense_landmarks(
    model: MorphableModel, canonical: CanonicalMesh, scheme: str = "mediapipe"
) -> tuple[MorphableModel, DenseCorrespondence]:
    """A copy of ``model`` carrying ``canonical``'s points registered onto its mean face (on the triangles of
    its ``face`` region when it has one), and the correspondence."""
    faces = model.faces
    keep = (
        model.mask("face")[faces].all(1).nonzero()[:, 0]
        if "face" in model.mask_names
        else torch.arange(len(faces))
    )
    found = register_dense(canonical, model.mean * model.mm_per_unit, faces[keep], model.landmark_indices)
    arrays = model.to_arrays()
    arrays["dense_triangles"] = keep.numpy()[found.triangles].astype(np.int32)
    arrays["dense_barycentrics"] = found.barycentrics
    arrays["dense_scheme"] = np.array(scheme)
    return MorphableModel.from_arrays(arrays, source=model.name), found._replace(
        triangles=arrays["dense_triangles"]
    )


def dense_report(model: MorphableModel, found: DenseCorrespondence) -> str:
    """One line: how closely the registered points sit on the surface, and the inner iBUG landmarks' distance
    from the model's own landmark vertices."""
    points = model.dense_points(model.mean[None])[0] * model.mm_per_unit
    inner = points[torch.as_tensor(MEDIAPIPE_INNER)]
    own = model.mean[model.landmark_indices[ANCHORS]] * model.mm_per_unit
    offset = (inner - own).norm(dim=1)
    distance = np.sort(found.distance_mm)
    return (
        f"dense landmarks ({model.dense_scheme}, {model.num_dense} points): registered points off the model's "
        f"surface by {np.median(distance):.2f} mm median, {distance[int(0.95 * (len(distance) - 1))]:.2f} mm at "
        f"95%; its 51 inner iBUG points {offset.mean():.2f} mm from the model's landmark vertices on average"
    )
