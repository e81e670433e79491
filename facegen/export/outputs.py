"""The files ``facegen predict`` can write per face (``--outputs``); ``code.json`` is always written, last."""

from __future__ import annotations

from typing import Literal, get_args

#: meshes with vertex colours, the photo texture with its textured mesh, the reflectance texture with its mesh,
#: the overlay picture, depth and normal maps, ``code.npz``, and one binary glTF (``face.glb``: the mesh with the
#: photo texture embedded and the expressions as morph targets).
Output = Literal["mesh", "texture", "albedo", "overlay", "maps", "code", "glb"]
#: Every output facegen can write.
OUTPUTS: tuple[Output, ...] = get_args(Output)
#: The outputs made from the faces' render (its image, coverage and fragments): without them, predict renders
#: nothing.
RENDERED: frozenset[Output] = frozenset({"texture", "albedo", "overlay", "maps", "glb"})
#: What ``facegen predict`` writes unless ``--outputs`` says otherwise (the GLB is asked for by name).
DEFAULT_OUTPUTS: tuple[Output, ...] = tuple(output for output in OUTPUTS if output != "glb")
