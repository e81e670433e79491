"""The PyTorch3D backend: MeshRasterizer behind facegen's contract (OpenCV camera in, Fragments out)."""

from __future__ import annotations

import torch
from torch import Tensor

from facegen.geometry.camera import upright_intrinsics
from facegen.render.settings import Fragments, RasterSettings


def pytorch3d_available() -> bool:
    try:
        import pytorch3d.renderer  # noqa: F401
    except ImportError:
        return False
    return True


def opencv_to_pytorch3d_cameras(K: Tensor, image_size: tuple[int, int], pixel_centres: bool = True):
    """PyTorch3D cameras (+X left, +Y up, NDC) for identity-pose OpenCV cameras with intrinsics K (B, 3, 3); a
    turned pinhole camera's K (:func:`~facegen.geometry.camera.photo_intrinsics` of a turned crop) becomes an
    upright camera rolled about its optical axis, since PyTorch3D reads only the focal lengths and principal point.

    ``cameras_from_opencv_projection`` maps the image plane like OpenCV's projection, but PyTorch3D's rasterizer
    samples pixel (i, j) at screen point (j + 0.5, i + 0.5), where OpenCV's pixel centre is (j, i). With
    ``pixel_centres`` the principal point moves by half a pixel so the rasterizer samples OpenCV's centres.
    """
    from pytorch3d.utils import cameras_from_opencv_projection

    if bool((K[:, 0, 1] != 0).any() or (K[:, 1, 0] != 0).any()):  # turned (or skewed: refused)
        K, roll = upright_intrinsics(K)
    else:  # upright, focal lengths as they are
        K, roll = K.clone(), torch.eye(3, dtype=K.dtype, device=K.device).expand(K.shape[0], 3, 3)
    if pixel_centres:
        K[:, :2, 2] += 0.5
    batch = K.shape[0]
    size = torch.tensor([image_size], dtype=K.dtype, device=K.device).expand(batch, 2)
    return cameras_from_opencv_projection(
        roll, torch.zeros(batch, 3, dtype=K.dtype, device=K.device), K, size
    )


def rasterize_pytorch3d(vertices: Tensor, faces: Tensor, K: Tensor, settings: RasterSettings) -> Fragments:
    """Rasterize camera-frame ``vertices`` (B, V, 3) with PyTorch3D's MeshRasterizer (naive, exact, 1 face/pixel)."""
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes

    batch = vertices.shape[0]
    meshes = Meshes(verts=list(vertices), faces=[faces] * batch)
    # PyTorch3D's screen is mirrored in x and y relative to OpenCV's, which keeps the winding: a face whose
    # counter-clockwise side looks at the camera is front-facing in both, so cull_backfaces means the same.
    raster_settings = RasterizationSettings(
        image_size=settings.image_size,
        blur_radius=0.0,
        faces_per_pixel=1,
        bin_size=0,
        perspective_correct=settings.perspective_correct,
        cull_backfaces=settings.cull_backfaces,
        z_clip_value=None,
    )
    cameras = opencv_to_pytorch3d_cameras(K, settings.image_size)
    raw = MeshRasterizer(cameras=cameras, raster_settings=raster_settings)(meshes)
    pix_to_face = raw.pix_to_face[..., 0]
    covered = (pix_to_face >= 0).unsqueeze(-1)
    bary = torch.where(covered, raw.bary_coords[..., 0, :], torch.zeros_like(raw.bary_coords[..., 0, :]))
    return Fragments(pix_to_face, bary, raw.zbuf[..., 0])
