"""Renderer speed and memory: rasterize + interpolate, forward and forward+backward, per backend and device.

Prints one JSON object per configuration (one line each) and a final summary with the side-by-side speed-up of
the torch backend over PyTorch3D where both ran on the same scene in this run. Example:

    python benchmarks/render.py                       # default grid (CPU: PyTorch3D only at batch <= 8, 224^2)
    python benchmarks/render.py --sizes 224 --batches 8 --meshes face35k --repeats 5
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch

from facegen.geometry import MODEL_TO_OPENCV, intrinsics_from_focal, transform_points
from facegen.render import RasterSettings, interpolate_vertex_attributes, rasterize
from facegen.render.backends.pytorch3d_raster import pytorch3d_available


def face_like_mesh(num_triangles: int = 35_000) -> tuple[torch.Tensor, torch.Tensor]:
    """A face-sized ellipsoidal cap (mm, model frame) with about ``num_triangles`` triangles."""
    n = int(math.sqrt(num_triangles / 2)) + 1
    u, v = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="xy")
    depth = 85 * torch.sqrt((1 - 0.85 * u**2 - 0.35 * v**2).clamp(min=0.05))
    nose = 24 * torch.exp(-0.5 * (u / 0.1) ** 2 - 0.5 * ((v + 0.05) / 0.17) ** 2)
    vertices = torch.stack([70 * u, 95 * v, depth + nose], -1).reshape(-1, 3)
    index = torch.arange(n * n).reshape(n, n)
    a, b, c, d = (
        index[:-1, :-1].flatten(),
        index[:-1, 1:].flatten(),
        index[1:, 1:].flatten(),
        index[1:, :-1].flatten(),
    )
    return vertices, torch.cat([torch.stack([a, b, c], 1), torch.stack([a, c, d], 1)])


def ict_mesh() -> tuple[torch.Tensor, torch.Tensor] | None:
    import os

    from facegen.morphable.formats.ict import load_ict

    root = Path(os.environ.get("FACEGEN_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets"))
    path = root / "ict" / "ict_face_model.npz"
    if not path.is_file():
        return None
    model = load_ict(path)
    return model.mean * 10.0, model.faces  # centimetres -> millimetres


def scene(vertices: torch.Tensor, batch: int, size: int, device: str):
    """Camera-frame vertices (B, V, 3) of the face 60 cm away filling ~80% of the image height, and K."""
    centred = vertices - vertices.mean(0)
    camera = transform_points(centred[None], MODEL_TO_OPENCV[None], torch.tensor([[0.0, 0.0, 600.0]]))
    height = centred[:, 1].max() - centred[:, 1].min()
    focal = 0.8 * size * 600.0 / float(height)
    K = intrinsics_from_focal(torch.full((batch,), focal), (size, size))
    return camera.expand(batch, -1, -1).contiguous().to(device), K.to(device)


def measure(vertices, faces, K, settings, backward: bool, repeats: int, device: str) -> float:
    """Median seconds of rasterize + interpolate (+ backward)."""
    colours = torch.rand(vertices.shape[0], vertices.shape[1], 3, device=device, requires_grad=backward)
    vertices = vertices.clone().requires_grad_(backward)
    times = []
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            fragments = rasterize(vertices, faces, K, settings)
            image = interpolate_vertex_attributes(fragments, faces, colours)
            if backward:
                image.sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]  # the first run is warm-up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--meshes", nargs="+", default=["face35k", "ict"])
    parser.add_argument("--backends", nargs="+", default=["torch", "pytorch3d"])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--all", action="store_true", help="also run PyTorch3D on CPU beyond batch 8 at 224^2"
    )
    args = parser.parse_args(argv)
    meshes = {"face35k": face_like_mesh(), "ict": ict_mesh()}
    results = []
    for device in [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]:
        for mesh_name in args.meshes:
            if meshes.get(mesh_name) is None:
                print(json.dumps({"mesh": mesh_name, "skipped": "mesh not available"}), flush=True)
                continue
            vertices, faces = meshes[mesh_name]
            for backend in args.backends:
                if backend == "pytorch3d" and not pytorch3d_available():
                    continue
                for size in args.sizes:
                    for batch in args.batches:
                        slow = backend == "pytorch3d" and device == "cpu" and (batch > 8 or size > 224)
                        if slow and not args.all:
                            continue
                        v, K = scene(vertices, batch, size, device)
                        settings = RasterSettings(image_size=(size, size), backend=backend)
                        if device == "cuda":
                            torch.cuda.reset_peak_memory_stats()
                        row = {
                            "device": torch.cuda.get_device_name()
                            if device == "cuda"
                            else f"cpu x{torch.get_num_threads()}",
                            "backend": backend,
                            "mesh": mesh_name,
                            "triangles": int(faces.shape[0]),
                            "size": size,
                            "batch": batch,
                            "forward_ms": 1000
                            * measure(v, faces.to(device), K, settings, False, args.repeats, device),
                            "forward_backward_ms": 1000
                            * measure(v, faces.to(device), K, settings, True, args.repeats, device),
                        }
                        if device == "cuda":
                            row["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
                        else:
                            row["process_peak_rss_mb"] = (
                                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                            )
                        results.append(row)
                        print(
                            json.dumps(
                                {k: round(x, 2) if isinstance(x, float) else x for k, x in row.items()}
                            ),
                            flush=True,
                        )
    speedups = []
    for row in results:
        if row["backend"] != "torch":
            continue
        for other in results:
            same = all(other[k] == row[k] for k in ("device", "mesh", "size", "batch"))
            if same and other["backend"] == "pytorch3d":
                speedups.append(
                    {k: row[k] for k in ("device", "mesh", "size", "batch")}
                    | {
                        "speedup_forward_backward": round(
                            other["forward_backward_ms"] / row["forward_backward_ms"], 1
                        )
                    }
                )
    print(
        json.dumps({"summary": {"configurations": len(results), "torch_vs_pytorch3d": speedups}}), flush=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
