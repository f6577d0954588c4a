"""CLI commands: `render` (lit previews on a head mesh and in UV space) and `export` (glTF 2.0 binary)."""

from __future__ import annotations

from pathlib import Path

from .params import Finite

import click


def _parse_light(_ctx, _param, value: str | None):
    if value is None:
        return None
    try:
        az, el = (Finite().convert(x, None, None) for x in value.split(","))
    except (ValueError, click.BadParameter):
        raise click.BadParameter(f"expected AZIMUTH,ELEVATION in degrees (e.g. 35,30), got {value!r}")
    if not -90.0 <= el <= 90.0:
        raise click.BadParameter(f"elevation must be in [-90, 90] degrees, got {el:g}")
    return az, el


def _map_options(f):
    f = click.option("--normal", "normal", type=click.Path(dir_okay=False, path_type=Path),
                     help="Tangent-space normal map (encoded n*0.5+0.5); overrides SOURCE/normal.*.")(f)
    f = click.option("--specular", "specular", type=click.Path(dir_okay=False, path_type=Path),
                     help="Specular map; overrides SOURCE/specular.*.")(f)
    f = click.option("--albedo", "albedo", type=click.Path(dir_okay=False, path_type=Path),
                     help="Albedo map (sRGB); overrides SOURCE/albedo.*.")(f)
    f = click.option("--convention", type=click.Choice(["opengl", "directx"]), default="opengl",
                     show_default=True, help="Normal map green channel convention.")(f)
    f = click.option("--mesh", type=click.Path(path_type=Path), default=None,
                     help="UV-mapped mesh (.glb/.gltf/.obj). Default: the bundled Lee Perry-Smith head scan.")(f)
    f = click.option("--flip-v/--no-flip-v", "flip_v", default=None,
                     help="Flip the mesh's v coordinate. Default: only for the Lee Perry-Smith scan.")(f)
    f = click.option("--specular-scale", type=Finite(), default=0.2, show_default=True,
                     help="Specular map value -> normal-incidence reflectance F0.")(f)
    f = click.option("--roughness", type=Finite(), default=0.5, show_default=True,
                     help="GGX roughness of the skin (constant).")(f)
    return f


def register(group: click.Group) -> None:
    """Add this area's commands to the top-level group."""

    @group.command("render")
    @click.argument("source", required=False, type=click.Path(exists=True, path_type=Path))
    @click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Output PNG. Default: SOURCE/render.png. The UV view goes to OUT_uv.png.")
    @click.option("--mode", type=click.Choice(["mesh", "uv", "both"]), default="both", show_default=True,
                  help="Views on the mesh, the UV-space relit view (any layout), or both.")
    @click.option("--views", type=click.IntRange(1, 36), default=3, show_default=True,
                  help="Views per set of maps: front, three-quarter, profile, then the other side; >6: turntable.")
    @click.option("--size", type=click.IntRange(64, 4096), default=768, show_default=True,
                  help="Pixels per (square) view.")
    @click.option("--light", callback=_parse_light, default=None, metavar="AZ,EL",
                  help="Key light azimuth,elevation in degrees relative to the camera (+az: from the right). "
                       "[default: 35,30]")
    @click.option("--uv-size", type=click.IntRange(16, 16384), default=None,
                  help="Long side of the UV view. Default: the (down-sampled) maps' long side.")
    @click.option("--full-res", is_flag=True, help="Upload the maps at full resolution (default: long side <= 2048).")
    @click.option("--labels/--no-labels", default=True, show_default=True, help="Name each view.")
    @click.option("--exposure", type=Finite(), default=1.0, show_default=True, help="Linear exposure before tone mapping.")
    @click.option("--zoom", type=Finite(0.2, 10.0), default=1.1, show_default=True,
                  help="Camera zoom; 1 fits the mesh's bounding sphere in the view.")
    @click.option("--overwrite", is_flag=True, help="Replace the output files this command writes.")
    @_map_options
    def render_cmd(source, out, mode, views, size, light, uv_size, full_res, labels, exposure, zoom, overwrite,
                   albedo, specular, normal, convention, mesh, flip_v, specular_scale, roughness):
        """Lit previews of texture maps: SOURCE is a directory with albedo.*, specular.*, normal.* (or
        `gantlitz generate` output with seed*/ folders: one row each), rendered on a head mesh from
        several views (headless, OpenGL through EGL) and relit in UV space."""
        from .. import render as R

        if out is None:
            out = (source if source is not None and source.is_dir() else Path(".")) / "render.png"
        shading = R.Shading(light=light or (35.0, 30.0), roughness=roughness, specular_scale=specular_scale,
                            exposure=exposure)
        R.write_previews(R.map_sets(source, albedo, specular, normal), out, mode=mode, views=views, size=size,
                         uv_size=uv_size, shading=shading, max_texture=None if full_res else 2048, labels=labels,
                         zoom=zoom, mesh=mesh, flip_v=flip_v, convention=convention, overwrite=overwrite,
                         echo=click.echo)

    @group.command("export")
    @click.argument("source", required=False, type=click.Path(exists=True, path_type=Path))
    @click.option("--gltf", "gltf_out", required=True, type=click.Path(dir_okay=False, path_type=Path),
                  help="Output .glb (glTF 2.0 binary). Several sets of maps: OUT_<name>.glb each.")
    @click.option("--max-texture", type=click.IntRange(16, 16384), default=4096, show_default=True,
                  help="Down-sample maps with a longer side (viewers commonly cap textures at 4096-8192).")
    @click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
    @_map_options
    def export_cmd(source, gltf_out, max_texture, overwrite, albedo, specular, normal, convention, mesh,
                   flip_v, specular_scale, roughness):
        """Export maps on a mesh as a glTF 2.0 binary: baseColor, normal and KHR_materials_specular
        textures embedded as PNG, metallic 0, constant roughness. Opens in Blender and three.js."""
        from ..export import export_sets
        from ..render import map_sets

        export_sets(map_sets(source, albedo, specular, normal), gltf_out, mesh=mesh, flip_v=flip_v,
                    convention=convention, roughness=roughness, specular_scale=specular_scale,
                    max_texture=max_texture, overwrite=overwrite, echo=click.echo)
