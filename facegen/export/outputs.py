"""The files ``facegen predict`` can write per face (``--outputs``); ``code.json`` is always written, last."""

from __future__ import annotations

from typing import Literal, get_args

#: meshes with vertex colours, the photo texture with its textured mesh, the reflectance texture with its mesh,
#: the overlay picture, depth and normal maps, and ``code.npz``.
Output = Literal["mesh", "texture", "albedo", "overlay", "maps", "code"]
OUTPUTS: tuple[Output, ...] = get_args(Output)
