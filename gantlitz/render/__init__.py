"""Lit previews of texture maps: on a head mesh (several views) and in UV space (any layout).

Rendering runs on moderngl with a standalone EGL context, so it needs neither a GPU nor a display: on a
machine without a GPU Mesa's llvmpipe rasterises on the CPU (Debian packages ``libgl1 libegl1 libegl-mesa0
libgl1-mesa-dri``).

Shading (all in linear light, then an ACES-fitted filmic curve and sRGB encoding):

- albedo: sRGB-encoded on disk, decoded to linear before upload;
- normals: tangent-space map encoded ``n * 0.5 + 0.5``, OpenGL convention (green = +v, image up) unless
  ``convention="directx"``; the tangent frame comes from the mesh's UVs (per-triangle accumulation,
  Gram-Schmidt, handedness in ``tangent.w``, the same frame :mod:`gantlitz.export` writes);
- Lambert diffuse plus a GGX specular lobe (Smith height-correlated visibility, Schlick Fresnel) whose
  normal-incidence reflectance is ``F0 = specular_map * specular_scale``;
- a key, a fill and a rim light (directional, fixed relative to the camera, as in a turntable studio)
  plus a little hemispherical ambient.

UV convention: mesh UVs are handled as OpenGL UVs (v = 0 at the bottom row of the image), which is what
trimesh gives for both OBJ and glTF files. The bundled Lee Perry-Smith scan stores its TEXCOORD_0 with
v upside down with respect to the glTF rule (it was made for three.js' ``TextureLoader``), so its v is
flipped on load; ``flip_v`` overrides the automatic choice for other meshes.

Modules: `assets` (texture maps and the mesh), `gl` (context, shaders, lights, `Shading`), `views` (mesh
views, UV-space view, the `render` command's files).
"""

from __future__ import annotations

from .assets import (
    DEFAULT_MESH,
    DEFAULT_SPECULAR,
    MAP_NAMES,
    Maps,
    MapsError,
    Mesh,
    MeshError,
    RenderError,
    compute_tangents,
    find_map_sets,
    find_maps,
    load_maps,
    load_mesh,
)
from .gl import APT_PACKAGES, Light, Lighting, Shading, default_lighting, gl_context
from .views import (MapSet, map_inputs, map_sets, render_uv, render_views, save_png, tile_rows, view_yaws,
                    write_previews)



__all__ = [
    "DEFAULT_MESH",
    "MAP_NAMES",
    "RenderError",
    "MeshError",
    "MapsError",
    "Maps",
    "Mesh",
    "Light",
    "Lighting",
    "default_lighting",
    "Shading",
    "map_sets",
    "map_inputs",
    "write_previews",
    "find_maps",
    "find_map_sets",
    "load_maps",
    "load_mesh",
    "compute_tangents",
    "view_yaws",
    "render_views",
    "render_uv",
    "save_png",
    "tile_rows",
    "gl_context",
    "DEFAULT_SPECULAR",
    "APT_PACKAGES",
    "MapSet",
]
