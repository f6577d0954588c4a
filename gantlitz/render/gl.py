"""OpenGL: the headless context, the shaders, textures, the light rig and the shading settings
(`Shading`), and reading a rendered frame back. The shading model is described in `gantlitz.render`."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from ..maps import srgb_to_linear
from .assets import DEFAULT_SPECULAR, Maps, RenderError

log = logging.getLogger(__name__)

APT_PACKAGES = "libgl1 libegl1 libegl-mesa0 libgl1-mesa-dri"


# ----------------------------------------------------------------------------------------------------
# Lighting


@dataclass(frozen=True)
class Light:
    """A directional light. ``azimuth`` / ``elevation`` in degrees, relative to the camera: azimuth 0
    is from the camera, +90 from the viewer's right; elevation +90 is from straight above."""

    azimuth: float
    elevation: float
    intensity: float = 1.0
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def direction(self) -> np.ndarray:
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        return np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)], np.float32)


@dataclass(frozen=True)
class Lighting:
    """Key, fill and rim lights plus a hemispherical ambient term (sky above, ground below)."""

    lights: tuple[Light, ...]
    ambient_sky: tuple[float, float, float] = (0.10, 0.11, 0.13)
    ambient_ground: tuple[float, float, float] = (0.05, 0.045, 0.04)


def default_lighting(key: tuple[float, float] = (35.0, 30.0), intensity: float = 1.1) -> Lighting:
    """The studio rig: a warm key at ``key`` = (azimuth, elevation), a cool fill opposite it and low,
    and a rim light from behind on the key's side."""
    az, el = key
    side = 1.0 if az >= 0 else -1.0
    return Lighting(
        lights=(
            Light(az, el, intensity, (1.0, 0.97, 0.92)),
            Light(-side * 55.0, 5.0, 0.32 * intensity, (0.85, 0.92, 1.0)),
            Light(side * 150.0, 35.0, 0.55 * intensity, (1.0, 1.0, 1.0)),
        )
    )


# ----------------------------------------------------------------------------------------------------
# OpenGL


_CONTEXT = None


def gl_context():
    """A process-wide standalone moderngl context on EGL (headless; Mesa llvmpipe without a GPU)."""
    global _CONTEXT
    if _CONTEXT is None:
        try:
            import moderngl
        except ImportError as e:  # pragma: no cover - a dependency
            raise RenderError("moderngl is not installed: pip install moderngl") from e
        try:
            _CONTEXT = moderngl.create_standalone_context(backend="egl", require=330)
        except Exception as e:
            raise RenderError(
                f"can not create a headless OpenGL context through EGL ({type(e).__name__}: {e}). "
                f"On Debian/Ubuntu install the EGL and Mesa drivers: apt-get install {APT_PACKAGES}"
            ) from e
        log.debug("OpenGL: %s, %s", _CONTEXT.info.get("GL_RENDERER"), _CONTEXT.info.get("GL_VERSION"))
    return _CONTEXT


VERTEX_MESH = """
#version 330
uniform mat4 u_model;
uniform mat4 u_view_proj;
in vec3 in_pos;
in vec3 in_nrm;
in vec4 in_tan;
in vec2 in_uv;
out vec3 v_pos;
out vec3 v_nrm;
out vec4 v_tan;
out vec2 v_uv;
void main() {
    vec4 world = u_model * vec4(in_pos, 1.0);
    mat3 rot = mat3(u_model);
    v_pos = world.xyz;
    v_nrm = rot * in_nrm;
    v_tan = vec4(rot * in_tan.xyz, in_tan.w);
    v_uv = in_uv;
    gl_Position = u_view_proj * world;
}
"""

VERTEX_UV = """
#version 330
in vec2 in_xy;
out vec3 v_pos;
out vec3 v_nrm;
out vec4 v_tan;
out vec2 v_uv;
void main() {
    v_uv = in_xy * 0.5 + 0.5;
    v_pos = vec3(in_xy, 0.0);
    v_nrm = vec3(0.0, 0.0, 1.0);
    v_tan = vec4(1.0, 0.0, 0.0, 1.0);
    gl_Position = vec4(in_xy, 0.0, 1.0);
}
"""

FRAGMENT_SHADER = """
#version 330
const float PI = 3.14159265358979;
const int MAX_LIGHTS = 4;
uniform sampler2D u_albedo;
uniform sampler2D u_specular;
uniform sampler2D u_normal;
uniform bool u_use_normal_map;
uniform float u_normal_y;        // +1 OpenGL, -1 DirectX green channel
uniform float u_normal_strength;
uniform vec3 u_eye;              // camera position (perspective)
uniform bool u_orthographic;     // view direction is +z everywhere (UV view)
uniform int u_num_lights;
uniform vec3 u_light_dir[MAX_LIGHTS];    // towards the light, unit
uniform vec3 u_light_color[MAX_LIGHTS];  // colour * intensity
uniform vec3 u_ambient_sky;
uniform vec3 u_ambient_ground;
uniform float u_roughness;
uniform float u_specular_scale;  // F0 = specular map * scale
uniform float u_exposure;
in vec3 v_pos;
in vec3 v_nrm;
in vec4 v_tan;
in vec2 v_uv;
out vec4 f_color;

vec3 aces(vec3 x) {
    return clamp((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0);
}
vec3 srgb_encode(vec3 c) {
    return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(vec3(0.0031308), c));
}

void main() {
    vec3 n_geo = normalize(v_nrm);
    vec3 v = u_orthographic ? vec3(0.0, 0.0, 1.0) : normalize(u_eye - v_pos);
    if (!gl_FrontFacing && !u_orthographic) n_geo = -n_geo;
    vec3 n = n_geo;
    if (u_use_normal_map) {
        vec3 t = v_tan.xyz - n_geo * dot(n_geo, v_tan.xyz);
        float tl = length(t);
        if (tl > 1e-6) {
            t /= tl;
            vec3 b = cross(n_geo, t) * (v_tan.w < 0.0 ? -1.0 : 1.0);
            vec3 m = texture(u_normal, v_uv).xyz * 2.0 - 1.0;
            m.y *= u_normal_y;
            m.xy *= u_normal_strength;
            if (dot(m, m) < 1e-6) m = vec3(0.0, 0.0, 1.0);
            m = normalize(m);
            n = normalize(t * m.x + b * m.y + n_geo * m.z);
        }
    }
    vec3 albedo = texture(u_albedo, v_uv).rgb;          // linear (decoded before upload)
    float spec = texture(u_specular, v_uv).r;
    vec3 f0 = vec3(clamp(spec * u_specular_scale, 0.0, 1.0));
    float a = max(u_roughness * u_roughness, 2e-3);
    float a2 = a * a;
    float nv = max(dot(n, v), 1e-4);
    vec3 color = albedo * mix(u_ambient_ground, u_ambient_sky, n.y * 0.5 + 0.5);
    for (int i = 0; i < MAX_LIGHTS; ++i) {
        if (i >= u_num_lights) break;
        vec3 l = u_light_dir[i];
        float nl = dot(n, l);
        // self-shadowing of the geometric surface: no light from below the macro surface
        float horizon = clamp(dot(n_geo, l) * 4.0 + 0.5, 0.0, 1.0);
        if (nl <= 0.0) continue;
        vec3 h = normalize(l + v);
        float nh = max(dot(n, h), 0.0);
        float vh = max(dot(v, h), 0.0);
        float d = a2 / (PI * pow(nh * nh * (a2 - 1.0) + 1.0, 2.0));
        float vis = 0.5 / (nl * sqrt(nv * nv * (1.0 - a2) + a2) + nv * sqrt(nl * nl * (1.0 - a2) + a2));
        vec3 f = f0 + (1.0 - f0) * pow(1.0 - vh, 5.0);
        vec3 specular = d * vis * f;
        vec3 diffuse = albedo / PI * (1.0 - f);
        // light colours are irradiance / PI, so a white Lambertian surface facing a unit light is 1
        color += (diffuse + specular) * PI * u_light_color[i] * nl * horizon;
    }
    f_color = vec4(srgb_encode(aces(color * u_exposure)), 1.0);
}
"""


def _texture(ctx, array: np.ndarray):
    """Upload an H x W x C float array as a mipmapped half-float texture, t = 0 at the image's bottom row
    (so OpenGL UVs sample it directly)."""
    a = np.ascontiguousarray(np.flipud(array).astype(np.float16))
    h, w, c = a.shape
    tex = ctx.texture((w, h), c, a.tobytes(), dtype="f2", alignment=1)
    tex.build_mipmaps()
    import moderngl

    tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
    tex.anisotropy = 8.0
    tex.repeat_x = False
    tex.repeat_y = False
    return tex


class Material:
    """Textures of one set of maps on the GPU, bound to units 0, 1, 2."""

    def __init__(self, ctx, maps: Maps):
        self.textures = [
            _texture(ctx, srgb_to_linear(maps.albedo)),
            _texture(ctx, maps.specular if maps.specular is not None else np.full((1, 1, 1), DEFAULT_SPECULAR)),
            _texture(ctx, maps.normal if maps.normal is not None else np.array([[[0.5, 0.5, 1.0]]])),
        ]
        self.has_normal = maps.normal is not None
        self.normal_y = 1.0 if maps.convention == "opengl" else -1.0

    def bind(self, program) -> None:
        for unit, (name, tex) in enumerate(zip(("u_albedo", "u_specular", "u_normal"), self.textures)):
            tex.use(unit)
            program[name].value = unit
        program["u_use_normal_map"].value = self.has_normal
        program["u_normal_y"].value = self.normal_y

    def release(self) -> None:
        for tex in self.textures:
            tex.release()


@dataclass(frozen=True)
class Shading:
    """How maps are lit and shaded, the same for the mesh views and the UV-space view.

    ``light`` is the key light (azimuth, elevation) in degrees relative to the camera; ``lighting``
    replaces the whole rig. ``specular_scale`` maps the specular map to normal-incidence reflectance F0
    (0.25 * 0.2 = 0.05 for a typical skin value); ``roughness`` is the GGX (perceptual) roughness.
    """

    light: tuple[float, float] = (35.0, 30.0)
    lighting: Lighting | None = None
    roughness: float = 0.5
    specular_scale: float = 0.2
    exposure: float = 1.0
    normal_strength: float = 1.0

    def __post_init__(self) -> None:
        problems = [f"{name} {value} must be a finite number" for name, value in
                    (("roughness", self.roughness), ("specular scale", self.specular_scale),
                     ("exposure", self.exposure), ("normal strength", self.normal_strength),
                     *(("light angle", a) for a in self.light)) if not math.isfinite(value)]
        if not 0.0 <= self.roughness <= 1.0:
            problems.append(f"roughness {self.roughness} must lie in [0, 1]")
        if self.specular_scale < 0 or self.exposure <= 0:
            problems.append(f"need specular scale >= 0 and exposure > 0, got {self.specular_scale}, {self.exposure}")
        if problems:
            raise RenderError("; ".join(problems))

    @classmethod
    def of(cls, shading: "Shading | None", fields: Mapping[str, Any]) -> "Shading":
        """`shading` (default: `Shading()`) with the given fields replaced (the renderers' keyword shortcuts)."""
        try:
            return replace(shading or cls(), **fields)
        except TypeError as exc:
            raise TypeError(f"unknown shading setting: {exc}") from None

    def rig(self) -> Lighting:
        return self.lighting or default_lighting(self.light)


def set_shading(program, shading: Shading) -> None:
    lighting = shading.rig()
    lights = lighting.lights[:4]
    dirs = np.zeros((4, 3), np.float32)
    cols = np.zeros((4, 3), np.float32)
    for i, light in enumerate(lights):
        dirs[i] = light.direction()
        cols[i] = np.asarray(light.color, np.float32) * light.intensity
    program["u_num_lights"].value = len(lights)
    program["u_light_dir"].write(dirs.tobytes())
    program["u_light_color"].write(cols.tobytes())
    program["u_ambient_sky"].value = tuple(lighting.ambient_sky)
    program["u_ambient_ground"].value = tuple(lighting.ambient_ground)
    program["u_roughness"].value = float(shading.roughness)
    program["u_specular_scale"].value = float(shading.specular_scale)
    program["u_exposure"].value = float(shading.exposure)
    program["u_normal_strength"].value = float(shading.normal_strength)


def read_fbo(ctx, size: tuple[int, int], samples: int, draw) -> np.ndarray:
    """Render with ``draw()`` into an MSAA framebuffer of ``size`` = (width, height), resolve, read back
    as uint8 H x W x 3 (top row first)."""
    w, h = size
    samples = min(samples, ctx.max_samples) if samples > 1 else 0
    color = ctx.renderbuffer((w, h), 4, samples=samples)
    depth = ctx.depth_renderbuffer((w, h), samples=samples)
    fbo = ctx.framebuffer(color_attachments=[color], depth_attachment=depth)
    resolved_rb = out_fbo = None
    try:
        fbo.use()
        ctx.viewport = (0, 0, w, h)
        draw(fbo)
        if samples:
            resolved_rb = ctx.renderbuffer((w, h), 4)
            out_fbo = ctx.framebuffer(color_attachments=[resolved_rb])
            ctx.copy_framebuffer(out_fbo, fbo)
            src = out_fbo
        else:
            src = fbo
        data = src.read(components=3, alignment=1)
    finally:
        for obj in (fbo, color, depth, out_fbo, resolved_rb):
            if obj is not None:
                obj.release()
    return np.flipud(np.frombuffer(data, np.uint8).reshape(h, w, 3)).copy()
