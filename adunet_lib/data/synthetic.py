"""A synthetic bpMRI cohort in the PI-CAI layout, so the whole pipeline runs without data access.

Each case is an analytic phantom defined in millimetres (patient frame), sampled onto the grids of a
real-looking acquisition: T2W on a fine anisotropic grid, ADC and high-b DWI ("hbv") on a coarser
grid with its own origin and extent (both slightly oblique, like real scans). Because the anatomy is
a function of physical position, not of a voxel grid, T2W and ADC/hbv show the *same* anatomy and
resampling between them is testable.

Anatomy: a prostate (irregular ellipsoid) with a transition zone (TZ, anterior-central) and a
peripheral zone (PZ, posterior crescent), surrounded by fat, muscle and the rectum. csPCa lesions
are irregular blobs, mostly in the PZ, with low T2W, low ADC and — through
``hbv = S0 · exp(−b · ADC)`` — high hbv.

Difficulty knobs (:class:`SynthConfig`), all documented so the demo is not trivially separable:

- ``lesion_case_fraction``: share of cases with csPCa (default 0.5).
- ``lesion_contrast``: range of a per-lesion factor scaling every lesion contrast (T2W drop, ADC
  drop); at 0.3 a lesion is near the noise floor, at 1.0 it is obvious.
- ``lesion_radius_mm``: range of lesion radii (small lesions suffer partial volume on the 2 mm grid).
- ``pz_fraction``: share of lesions in the PZ (TZ lesions are subtler: TZ is already dark on T2W).
- ``mimics_per_case``: benign look-alikes in every case — BPH nodules in the TZ (low T2W, slightly low
  ADC) and prostatitis bands in the PZ (low T2W, mildly low ADC) — false-positive bait.
- ``noise``: Rician noise level relative to PZ signal, per sequence; ``bias``: bias-field strength.
- ``subject_variation``: relative spread of tissue intensities between subjects.

The ``external`` site differs in scanner characteristics: T2W resolution and slice thickness,
intensity scale and contrast, b-value, noise and bias — it plays the external test set.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from adunet_lib.data import layouts
from adunet_lib.data.image import Geometry, Image, resample_to, write_image
from adunet_lib.errors import DatasetError
from adunet_lib.progress import progress
from adunet_lib.fileio import atomic_path, write_json

LESION_SOURCES = {"resampled": "csPCa_lesion_delineations/human_expert/resampled",
                  "Pooch25": "csPCa_lesion_delineations/human_expert/Pooch25",
                  "Bosma22a": "csPCa_lesion_delineations/AI/Bosma22a"}
ZONE_SOURCES = ("anatomical_delineations/zonal_pz_tz/AI/HeviAI23", "anatomical_delineations/zonal_pz_tz/AI/Yuan23")
GLAND_SOURCE = "anatomical_delineations/whole_gland/AI/Bosma22b"
#: Where the synthetic PI-CAI cohort's csPCa-positive studies find their lesion masks, in turn.
SOURCE_CYCLE = ("resampled", "Pooch25", "resampled", "Bosma22a")
MARKSHEET = "picai_labels/clinical_information/marksheet.csv"


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Scanner and cohort settings of one synthetic site (see the module docstring for the knobs)."""

    site: str = "internal"
    t2w_size: tuple[int, int, int] = (144, 144, 18)
    t2w_spacing: tuple[float, float, float] = (0.5, 0.5, 3.0)
    dwi_spacing: tuple[float, float, float] = (2.0, 2.0, 3.0)
    dwi_fov_scale: tuple[float, float] = (0.9, 1.1)
    b_value: float = 1400.0
    t2w_scale: float = 1.0
    t2w_gamma: float = 1.0
    noise: dict[str, float] = dataclasses.field(default_factory=lambda: {"t2w": 0.03, "adc": 0.05, "hbv": 0.10})
    bias: float = 0.2
    lesion_case_fraction: float = 0.5
    lesion_contrast: tuple[float, float] = (0.3, 1.0)
    lesion_radius_mm: tuple[float, float] = (3.0, 8.0)
    pz_fraction: float = 0.75
    mimics_per_case: tuple[int, int] = (1, 3)
    subject_variation: float = 0.08
    max_oblique_deg: float = 8.0
    id_offset: int = 20000

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SITES: dict[str, SynthConfig] = {
    "internal": SynthConfig(),
    "external": SynthConfig(
        site="external", t2w_size=(120, 120, 16), t2w_spacing=(0.6, 0.6, 3.6), dwi_spacing=(2.5, 2.5, 3.6),
        b_value=2000.0, t2w_scale=2.6, t2w_gamma=0.85, noise={"t2w": 0.045, "adc": 0.07, "hbv": 0.14},
        bias=0.3, id_offset=30000,
    ),
}

# tissue parameters: T2W (a.u.), ADC (1e-6 mm²/s), S0 of the DWI (a.u., fat suppressed)
TISSUES = {
    "fat": (900.0, 300.0, 15.0),
    "muscle": (300.0, 1400.0, 220.0),
    "rectum": (220.0, 1100.0, 180.0),
    "lumen": (40.0, 2500.0, 30.0),
    "pz": (650.0, 1700.0, 420.0),
    "tz": (380.0, 1250.0, 360.0),
}
#: a lesion at contrast 1 drops T2W by this fraction and ADC by this fraction of the host tissue's value
LESION_T2W_DROP = {"pz": 0.5, "tz": 0.3}
LESION_ADC_DROP = {"pz": 0.45, "tz": 0.35}


class _Field:
    """A smooth random scalar field in mm (sum of random cosines): grid-independent texture."""

    def __init__(self, rng: np.random.Generator, wavelengths: tuple[float, float], n: int = 12):
        direction = rng.normal(size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        freq = 2 * np.pi / rng.uniform(*wavelengths, size=n)
        self.k = (direction * freq[:, None]).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, size=n).astype(np.float32)
        self.scale = np.float32(np.sqrt(2.0 / n))

    def __call__(self, q: np.ndarray) -> np.ndarray:
        arg = q.astype(np.float32, copy=False) @ self.k.T
        arg += self.phase
        np.cos(arg, out=arg)
        return self.scale * arg.sum(axis=-1)


def _rotation(rng: np.random.Generator, max_deg: float, axis: int) -> np.ndarray:
    angle = np.deg2rad(rng.uniform(-max_deg, max_deg))
    c, s = np.cos(angle), np.sin(angle)
    r = np.eye(3)
    i, j = [a for a in range(3) if a != axis]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _soft(inside: np.ndarray, edge: float = 0.6) -> np.ndarray:
    """Smooth membership from a signed 'distance-like' value (positive inside)."""
    return 1.0 / (1.0 + np.exp(-inside / edge))


class Phantom:
    """The anatomy of one synthetic subject as functions of patient-frame position (mm)."""

    def __init__(self, rng: np.random.Generator, cfg: SynthConfig, has_lesion: bool):
        self.center = rng.normal(0, 3.0, size=3)
        self.rot = _rotation(rng, 12.0, axis=2)
        self.axes = np.array([rng.uniform(17, 23), rng.uniform(13, 18), rng.uniform(14, 20)])
        self.tz_scale = rng.uniform(0.55, 0.75)
        self.shape_noise = _Field(rng, (15, 40))
        self.texture = {name: _Field(rng, (2.5, 8), n=24) for name in ("t2w", "adc", "s0")}
        self.nodules = _Field(rng, (5, 12))
        self.rectum_center = np.array([rng.normal(0, 2), self.axes[1] + rng.uniform(8, 12), 0.0])
        var = cfg.subject_variation
        self.tissue = {k: tuple(v * (1 + rng.normal(0, var)) for v in vals) for k, vals in TISSUES.items()}
        self.lesions: list[dict[str, Any]] = []
        self.mimics: list[dict[str, Any]] = []
        if has_lesion:
            for _ in range(1 if rng.random() < 0.75 else 2):
                self.lesions.append(self._blob(rng, cfg, "pz" if rng.random() < cfg.pz_fraction else "tz",
                                               cfg.lesion_radius_mm, cfg.lesion_contrast))
        for _ in range(int(rng.integers(cfg.mimics_per_case[0], cfg.mimics_per_case[1] + 1))):
            zone = "tz" if rng.random() < 0.5 else "pz"
            self.mimics.append(self._blob(rng, cfg, zone, (3.0, 7.0), (0.4, 0.9)))

    def _zone_point(self, rng: np.random.Generator, zone: str) -> np.ndarray:
        for _ in range(2000):
            q = rng.uniform(-1, 1, size=3) * self.axes
            inside_gland = self.gland_inside(q[None])[0] > 1.5
            inside_tz = self.tz_inside(q[None])[0] > 0
            if inside_gland and (inside_tz == (zone == "tz")):
                return q
        return np.zeros(3)

    def _blob(self, rng, cfg, zone, radius, contrast) -> dict[str, Any]:
        center = self._zone_point(rng, zone)
        r = rng.uniform(*radius)
        parts = [(center, r * rng.uniform(0.8, 1.2, size=3))]
        for _ in range(int(rng.integers(0, 3))):
            parts.append((center + rng.normal(0, r * 0.5, size=3), r * rng.uniform(0.4, 0.8, size=3)))
        return {"zone": zone, "radius_mm": float(r), "contrast": float(rng.uniform(*contrast)),
                "isup": int(rng.integers(2, 6)), "parts": parts, "field": _Field(rng, (4, 10))}

    # -- geometry of the anatomy -------------------------------------------------------------
    def local(self, p: np.ndarray) -> np.ndarray:
        return (p - self.center) @ self.rot

    def gland_inside(self, q: np.ndarray) -> np.ndarray:
        """Signed inside-ness of the gland (mm-ish; > 0 inside)."""
        rho = np.linalg.norm(q / self.axes, axis=-1)
        return (1.0 + 0.06 * self.shape_noise(q) - rho) * self.axes.min()

    def tz_inside(self, q: np.ndarray) -> np.ndarray:
        c = np.array([0.0, -0.25 * self.axes[1], 0.1 * self.axes[2]])
        ax = self.axes * np.array([self.tz_scale, self.tz_scale * 0.95, 0.85])
        rho = np.linalg.norm((q - c) / ax, axis=-1)
        return (1.0 + 0.05 * self.shape_noise(q * 1.7) - rho) * ax.min()

    def blob_membership(self, blob: dict[str, Any], q: np.ndarray, gland_inside: np.ndarray) -> np.ndarray:
        """Soft membership of a lesion/mimic; evaluated only near the blob (the rest is 0)."""
        m = np.zeros(q.shape[0], np.float32)
        reach = max(float(np.linalg.norm(c - blob["parts"][0][0]) + r.max() * 1.6) for c, r in blob["parts"]) + 2.0
        near = np.flatnonzero(np.linalg.norm(q - blob["parts"][0][0], axis=-1) < reach)
        if near.size == 0:
            return m
        qn = q[near]
        wobble = 1.0 + 0.15 * blob["field"](qn)
        local = np.zeros(near.size)
        for center, radii in blob["parts"]:
            rho = np.linalg.norm((qn - center) / radii, axis=-1)
            local = np.maximum(local, _soft((wobble - rho) * radii.min(), edge=0.7))
        m[near] = local * (gland_inside[near] > 0)
        return m

    # -- signal ------------------------------------------------------------------------------
    def evaluate(self, q: np.ndarray, b_value: float, sequences: tuple[str, ...] = ("t2w", "adc", "hbv"),
                 labels: bool = False, twin: bool = False) -> dict[str, np.ndarray]:
        """Signals (and, with ``labels``, zones and the lesion label) at patient-frame points ``q``.

        With ``twin``, also the lesion-free twin's signals (``<seq>_twin``): the same anatomy, texture and
        mimics, the csPCa lesions left out. Where no lesion reaches, its factor is exactly 1, so the twin
        equals the image there bit for bit."""
        g_in = self.gland_inside(q)
        t_in = self.tz_inside(q)
        gland = _soft(g_in)
        tz = _soft(t_in) * gland
        pz = gland - tz
        dr = np.linalg.norm((q - self.rectum_center)[:, :2] / np.array([13.0, 10.0]), axis=-1)
        lumen = _soft((0.55 - dr) * 8)
        rectum = _soft((1.0 - dr) * 10) - lumen
        ax = np.abs(q[:, 0])
        muscle = _soft((ax - (self.axes[0] + 8)) * 0.5) * _soft((self.axes[0] + 20 - ax) * 0.5)
        outside = np.clip(1 - gland - rectum - lumen, 0, 1)
        muscle = muscle * outside
        fat = outside - muscle
        weights = {"fat": fat, "muscle": muscle, "rectum": rectum, "lumen": lumen, "pz": pz, "tz": tz}
        need = {"t2w"} if sequences == ("t2w",) else {"t2w", "adc", "s0"}
        nodules = self.nodules(q)
        out: dict[str, np.ndarray] = {}
        for i, seq in enumerate(("t2w", "adc", "s0")):
            if seq not in need:
                continue
            value = sum(w * self.tissue[name][i] for name, w in weights.items())
            # TZ is nodular (BPH); every tissue has some texture
            texture = 1 + 0.05 * self.texture[seq](q) + tz * 0.12 * nodules * (1 if seq != "adc" else 0.6)
            out[seq] = value * texture
        healthy = dict(out) if twin else {}
        members = []
        for blob, is_lesion in [(b, True) for b in self.lesions] + [(b, False) for b in self.mimics]:
            member = self.blob_membership(blob, q, g_in)
            members.append((blob, is_lesion, member))
            m = member * blob["contrast"]
            host = "pz" if blob["zone"] == "pz" else "tz"
            if is_lesion:
                t2_drop, adc_drop, s0_gain = LESION_T2W_DROP[host], LESION_ADC_DROP[host], 0.1
            elif host == "tz":  # BPH nodule: dark on T2W, ADC barely lower
                t2_drop, adc_drop, s0_gain = 0.3, 0.12, 0.0
            else:  # prostatitis: dark on T2W, mildly low ADC
                t2_drop, adc_drop, s0_gain = 0.35, 0.18, 0.0
            for seq, factor in (("t2w", 1 - t2_drop * m), ("adc", 1 - adc_drop * m), ("s0", 1 + s0_gain * m)):
                if seq in out:
                    out[seq] = out[seq] * factor
                if seq in healthy and not is_lesion:  # the twin keeps the mimics
                    healthy[seq] = healthy[seq] * factor
        if "adc" in out:
            out["hbv"] = out.pop("s0") * np.exp(-b_value * np.clip(out["adc"], 0, None) * 1e-6)
        if "adc" in healthy:
            healthy["hbv"] = healthy.pop("s0") * np.exp(-b_value * np.clip(healthy["adc"], 0, None) * 1e-6)
        out.update({f"{seq}_twin": value for seq, value in healthy.items()})
        if labels:
            gland_hard = g_in > 0
            out["zones"] = np.where((t_in > 0) & gland_hard, 2, np.where(gland_hard, 1, 0)).astype(np.uint8)
            lesion = np.zeros(q.shape[0], np.uint8)
            for blob, is_lesion, member in members:
                if is_lesion:
                    inside = member > 0.5
                    lesion[inside] = np.maximum(lesion[inside], blob["isup"])
                    blob["voxels"] = int(np.count_nonzero(inside))
            out["lesion"] = lesion
        return out


def _grid_points(geometry: Geometry, z_offsets: tuple[float, ...] = (0.0,),
                 xy_offsets: tuple[float, ...] = (0.0,)) -> list[np.ndarray]:
    """Physical coordinates (N, 3) of voxel centres, once per sub-voxel offset (partial volume)."""
    nx, ny, nz = geometry.size
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    d = np.asarray(geometry.direction).reshape(3, 3)
    out = []
    for dz in z_offsets:
        for dy in xy_offsets:
            for dx in xy_offsets:
                idx = np.stack([i + dx, j + dy, k + dz], axis=-1).reshape(-1, 3) * np.asarray(geometry.spacing)
                out.append(np.asarray(geometry.origin) + idx @ d.T)
    return out


def _bias_field(rng: np.random.Generator, q: np.ndarray, strength: float) -> np.ndarray:
    coef = rng.normal(0, strength, size=5)
    u = q / 60.0
    return np.exp(coef[0] * u[:, 0] + coef[1] * u[:, 1] + coef[2] * u[:, 2] + coef[3] * u[:, 0] * u[:, 1]
                  + coef[4] * (u[:, 1] ** 2 - 0.3))


def _rician(rng: np.random.Generator, signals: tuple[np.ndarray, ...], sigma: float) -> tuple[np.ndarray, ...]:
    """Rician noise of one draw on each of ``signals`` (an image and its twin: the same realisation)."""
    real = rng.normal(0, sigma, signals[0].shape)
    imaginary = rng.normal(0, sigma, signals[0].shape)
    return tuple(np.hypot(s + real, imaginary) for s in signals)


def synthesize_case(index: int, seed: int, cfg: SynthConfig) -> dict[str, Any]:
    """Build one case: images, labels and facts. Deterministic in ``(seed, site, index)``."""
    site_code = {"internal": 1, "external": 2}.get(cfg.site, 3)
    rng = np.random.default_rng([seed, site_code, index])
    has_lesion = bool(rng.random() < cfg.lesion_case_fraction)
    phantom = Phantom(rng, cfg, has_lesion)

    tilt = _rotation(rng, cfg.max_oblique_deg, axis=0)  # oblique axial, as in real scans
    direction = tuple(tilt.reshape(-1))
    t2_size = np.asarray(cfg.t2w_size)
    t2_spacing = np.asarray(cfg.t2w_spacing)
    center = phantom.center + rng.normal(0, 4.0, size=3)
    t2_origin = center - tilt @ ((t2_size - 1) * t2_spacing / 2)
    t2_geo = Geometry(tuple(t2_size), tuple(t2_spacing), tuple(t2_origin), direction)

    dwi_spacing = np.asarray(cfg.dwi_spacing)
    fov = (t2_size * t2_spacing)[:2] * rng.uniform(*cfg.dwi_fov_scale, size=2)
    dwi_size = np.array([int(round(fov[0] / dwi_spacing[0])), int(round(fov[1] / dwi_spacing[1])),
                         int(round(t2_size[2] * t2_spacing[2] / dwi_spacing[2]))])
    dwi_center = center + np.array([rng.normal(0, 2.0), rng.normal(0, 2.0), rng.uniform(-1.0, 1.0)])
    dwi_origin = dwi_center - tilt @ ((dwi_size - 1) * dwi_spacing / 2)
    dwi_geo = Geometry(tuple(dwi_size), tuple(dwi_spacing), tuple(dwi_origin), direction)

    # DWI voxels are large: average sub-voxel samples for partial volume
    t2_points = _grid_points(t2_geo)[0]
    dwi_points = _grid_points(dwi_geo, xy_offsets=(-0.25, 0.25))
    # the lesion-free twin goes through the same bias fields and the same noise draws: only the lesion differs
    t2_eval = phantom.evaluate(phantom.local(t2_points), cfg.b_value, sequences=("t2w",), labels=True, twin=True)
    dwi_sigs = [phantom.evaluate(phantom.local(p), cfg.b_value, twin=True) for p in dwi_points]
    adc, adc_twin = (np.mean([s[key] for s in dwi_sigs], axis=0) for key in ("adc", "adc_twin"))
    hbv, hbv_twin = (np.mean([s[key] for s in dwi_sigs], axis=0) for key in ("hbv", "hbv_twin"))

    t2_bias = _bias_field(rng, t2_points - center, cfg.bias)
    t2, t2_twin = t2_eval["t2w"] * t2_bias, t2_eval["t2w_twin"] * t2_bias
    hbv_bias = _bias_field(rng, dwi_points[0] - center, cfg.bias * 0.5)
    hbv, hbv_twin = hbv * hbv_bias, hbv_twin * hbv_bias
    pz_t2, pz_adc = phantom.tissue["pz"][0], phantom.tissue["pz"][1]
    pz_hbv = phantom.tissue["pz"][2] * np.exp(-cfg.b_value * pz_adc * 1e-6)
    t2, t2_twin = _rician(rng, (t2, t2_twin), cfg.noise["t2w"] * pz_t2)
    adc_noise = rng.normal(0, cfg.noise["adc"] * pz_adc, adc.shape)
    adc, adc_twin = np.clip(adc + adc_noise, 0, None), np.clip(adc_twin + adc_noise, 0, None)
    hbv, hbv_twin = _rician(rng, (hbv, hbv_twin), cfg.noise["hbv"] * pz_hbv)
    # scanner-specific T2W intensity mapping
    t2 = cfg.t2w_scale * 1000.0 * (t2 / 1000.0) ** cfg.t2w_gamma
    t2_twin = cfg.t2w_scale * 1000.0 * (t2_twin / 1000.0) ** cfg.t2w_gamma

    def volume(values: np.ndarray, geo: Geometry, dtype) -> Image:
        arr = values.reshape(geo.shape)
        if np.issubdtype(dtype, np.integer):
            arr = np.clip(np.round(arr), 0, np.iinfo(dtype).max)
        return Image(arr.astype(dtype), geo)

    zones, lesion = t2_eval["zones"], t2_eval["lesion"]
    facts = {
        "lesions": [{k: b[k] for k in ("zone", "radius_mm", "contrast", "isup", "voxels")} for b in phantom.lesions],
        "mimics": [{k: b[k] for k in ("zone", "radius_mm", "contrast")} for b in phantom.mimics],
    }
    return {
        "t2w": volume(t2, t2_geo, np.uint16),
        "adc": volume(adc, dwi_geo, np.uint16),
        "hbv": volume(hbv * 10.0, dwi_geo, np.uint16),
        "zones": volume(zones, t2_geo, np.uint8),
        "lesion": volume(lesion, t2_geo, np.uint8),
        "isup": max([b["isup"] for b in phantom.lesions], default=0),
        "facts": facts,
        # ground truth that real data never has: what a perfect pseudo-healthy model would give
        "twin": {"t2w": volume(t2_twin, t2_geo, np.uint16), "adc": volume(adc_twin, dwi_geo, np.uint16),
                 "hbv": volume(hbv_twin * 10.0, dwi_geo, np.uint16)},
    }


def __getattr__(name: str) -> Any:
    """``LAYOUTS``: the layouts a synthetic cohort can be written in, from the layout registry
    (:func:`adunet_lib.data.layouts.synthetic_layouts`; the built-in picai, prostate158, manifest first)."""
    if name == "LAYOUTS":
        return tuple(layouts.synthetic_layouts())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def synthesize_cohort(out: str | Path, cases: int, seed: int = 0, site: str = "internal",
                      config: SynthConfig | None = None, show_progress: bool = True, layout: str = "picai",
                      without_masks: int = 0, twins: str | Path | None = None) -> Path:
    """Write ``cases`` synthetic studies under ``out`` in a registered dataset layout (its
    :meth:`~adunet_lib.data.layouts.Layout.writer`); returns what
    :func:`~adunet_lib.data.readers.open_dataset` opens (the folder, or the manifest file). The
    built-in layouts:

    - ``picai``: ``images/<pid>/<pid>_<sid>_{t2w,adc,hbv}.mha`` and a ``picai_labels`` tree as the real
      one: every sixth study is a second study of the previous patient; csPCa lesions are delineated
      under ``human_expert/resampled`` (values = ISUP), but some positives only under
      ``human_expert/Pooch25`` and some only by the AI (``AI/Bosma22a``, value 1, which covers every
      study as in picai_labels); zones come from two AI sources (``AI/HeviAI23``, ``AI/Yuan23``), the
      whole gland from ``AI/Bosma22b``; ``clinical_information/marksheet.csv``.
    - ``prostate158``: ``train.csv``/``valid.csv``/``test.csv`` and ``<split>/<ID>/`` folders of NIfTI
      files (``t2``, ``adc``, ``dwi``, ``t2_anatomy_reader1`` with 1 = TZ, 2 = PZ, and — for cancer
      cases only — ``adc_tumor_reader1`` drawn on the ADC grid); negatives have no tumour file.
    - ``manifest``: ``manifest.csv`` (``case_id,patient_id,t2w,adc,hbv,lesion,zones,cspca``) + files.

    ``without_masks`` k > 0: every k-th study has no anatomical mask at all (PI-CAI and manifest
    layouts; as the real ``px0218`` in PI-CAI layout), so its crop needs a predicted one.

    ``twins``: a folder outside the dataset that gets every study's lesion-free twin,
    ``<twins>/<case id>/<seq>.mha`` on the study's own grids (same anatomy, bias fields, noise draws and
    mimics; the csPCa lesions left out; a study without lesions is its own twin). No reader looks there:
    it is the ground truth a perfect pseudo-healthy model would reproduce (the run's ``oracle``).

    ``synth.json`` (settings and per-case lesion facts) is written last; a cohort already written
    with the same settings is kept (resumable).

    Example:
        >>> synthesize_cohort("runs/demo/data/external", cases=12, site="external", layout="prostate158")  # doctest: +SKIP
    """
    if site not in SITES and config is None:
        raise ValueError(f"unknown site {site!r}; choose one of {', '.join(SITES)}")
    spec = layouts.get(layout)
    if not spec.writes_synthetic:
        raise DatasetError(f"layout {layout!r} has no synthetic writer; choose one of "
                           f"{', '.join(layouts.synthetic_layouts())}")
    cfg = config or SITES[site]
    out = Path(out)
    if without_masks < 0:
        raise ValueError(f"without_masks must be 0 (every study has masks) or k >= 1, not {without_masks}")
    settings = {"seed": seed, "cases": cases, "layout": layout, "config": cfg.to_dict()}
    if without_masks:
        settings["without_masks"] = without_masks
    meta_path = out / "synth.json"
    entry = out / spec.synthetic_entry if spec.synthetic_entry else out
    twins = Path(twins) if twins is not None else None
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("settings") == json.loads(json.dumps(settings)) and (
                twins is None or all((twins / cid / f"{seq}.mha").is_file() for cid in meta.get("cases", {})
                                     for seq in ("t2w", "adc", "hbv"))):
            return entry
    writer = spec.writer(out, cfg)
    facts = {}
    for i in progress(range(cases), desc=f"synth {site}", enabled=show_progress, unit="case"):
        data = synthesize_case(i, seed, cfg)
        data["no_masks"] = bool(without_masks) and i % without_masks == without_masks - 1
        case_id = writer.write(i, data)
        facts[case_id] = data["facts"]
        if twins is not None:
            for seq, image in data["twin"].items():
                write_image(image, twins / case_id / f"{seq}.mha")
    writer.finish()
    # written last: its presence marks a complete cohort
    write_json(meta_path, {"settings": settings, "cases": facts})
    return entry


#: A reported lesion of at least this radius (15 mm across) is PI-RADS 5, as PI-RADS v2.1's size rule.
PIRADS5_RADIUS_MM = 7.5
#: A mimic at least this conspicuous (its contrast, drawn in 0.4–0.9) is reported as PI-RADS 3
#: (equivocal), about one mimic in ten; fainter ones go unreported. A csPCa lesion at or below
#: EQUIVOCAL_LESION_CONTRAST (its contrast is drawn in 0.3–1.0) reads as PI-RADS 3 too.
PIRADS3_CONTRAST = 0.85
EQUIVOCAL_LESION_CONTRAST = 0.45


def phantom_pirads(facts: dict[str, Any]) -> list[int]:
    """The PI-RADS a reader would give the phantom's reported lesions: csPCa lesions 3–5 (by
    conspicuity and size), then the conspicuous mimics 3 — so a csPCa-negative phantom can carry a
    visible lesion as real ISUP ≤ 1 studies do. Derived from what the phantom already drew (no new
    random draws: a cohort's images stay the same bit for bit)."""
    scores = [5 if blob["radius_mm"] >= PIRADS5_RADIUS_MM else 3 if blob["contrast"] <= EQUIVOCAL_LESION_CONTRAST else 4
              for blob in facts["lesions"]]
    return scores + [3 for blob in facts["mimics"] if blob["contrast"] >= PIRADS3_CONTRAST]


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")


class PicaiWriter:
    def __init__(self, out: Path, cfg: SynthConfig):
        self.out, self.cfg, self.rows, self.pid, self.positives = out, cfg, [], "", 0

    def write(self, i: int, data: dict[str, Any]) -> str:
        # every sixth study belongs to the patient of the study before it (PI-CAI: 1,500 studies of 1,476 patients)
        if not (i % 6 == 5 and self.pid):
            self.pid = str(self.cfg.id_offset + i)
        sid = str(1000000 + self.cfg.id_offset + i)
        case_id = f"{self.pid}_{sid}"
        for seq in ("t2w", "adc", "hbv"):
            write_image(data[seq], self.out / "images" / self.pid / f"{case_id}_{seq}.mha")
        positive = data["isup"] >= 2
        labels = self.out / "picai_labels"
        lesion = data["lesion"]
        # about half the positives are delineated by the human experts (as 220 of PI-CAI's 425);
        # of the others, one in two has a Pooch25 mask, the rest only the AI's
        source = SOURCE_CYCLE[self.positives % len(SOURCE_CYCLE)] if positive else "resampled"
        self.positives += positive
        if source != "Bosma22a":
            write_image(lesion, labels / LESION_SOURCES[source] / f"{case_id}.nii.gz")
        ai = lesion.with_array((lesion.array >= 2).astype(np.uint8))  # AI masks: 1 = csPCa (ISUP ≥ 2)
        write_image(ai, labels / LESION_SOURCES["Bosma22a"] / f"{case_id}.nii.gz")
        if not data.get("no_masks"):
            zones_source = ZONE_SOURCES[i % len(ZONE_SOURCES)]
            write_image(data["zones"], labels / zones_source / f"{case_id}.nii.gz")
            write_image(data["zones"].with_array((data["zones"].array > 0).astype(np.uint8)),
                        labels / GLAND_SOURCE / f"{case_id}.nii.gz")
        pirads = phantom_pirads(data["facts"])
        isup = [blob["isup"] for blob in data["facts"]["lesions"]] + [0] * (len(pirads) - len(data["facts"]["lesions"]))
        # PI-CAI's lesion lists: one entry per reported lesion, empty when none was reported
        self.rows.append({"patient_id": self.pid, "study_id": sid, "lesion_PIRADS": ",".join(map(str, pirads)),
                          "lesion_ISUP": ",".join(map(str, isup)), "case_ISUP": data["isup"],
                          "case_csPCa": "YES" if positive else "NO", "center": f"SYNTH-{self.cfg.site.upper()}"})
        return case_id

    def finish(self) -> None:
        _write_csv(self.out / MARKSHEET, self.rows, ["patient_id", "study_id", "lesion_PIRADS", "lesion_ISUP", "case_ISUP",
                                                     "case_csPCa", "center"])


class Prostate158Writer:
    SPLITS = ("train", "valid", "test")
    COLUMNS = ["ID", "t2", "adc", "dwi", "t2_anatomy_reader1", "adc_tumor_reader1"]

    def __init__(self, out: Path, cfg: SynthConfig):
        self.out, self.cfg, self.rows = out, cfg, {s: [] for s in self.SPLITS}

    def write(self, i: int, data: dict[str, Any]) -> str:
        case_id = f"{i + 1:03d}"
        split = self.SPLITS[i % 3]
        rel = Path(split) / case_id
        folder = self.out / rel
        for name, seq in (("t2", "t2w"), ("adc", "adc"), ("dwi", "hbv")):
            write_image(data[seq], folder / f"{name}.nii.gz")
        zones = data["zones"].array
        anatomy = np.where(zones == 1, 2, np.where(zones == 2, 1, 0)).astype(np.uint8)  # 1 = TZ, 2 = PZ
        write_image(data["zones"].with_array(anatomy), folder / "t2_anatomy_reader1.nii.gz")
        row = {"ID": case_id, "t2": f"{rel}/t2.nii.gz", "adc": f"{rel}/adc.nii.gz", "dwi": f"{rel}/dwi.nii.gz",
               "t2_anatomy_reader1": f"{rel}/t2_anatomy_reader1.nii.gz", "adc_tumor_reader1": ""}
        if data["isup"] >= 2:  # tumours are drawn on the ADC grid; negatives have no tumour file
            tumour = resample_to(data["lesion"].with_array((data["lesion"].array >= 2).astype(np.uint8)),
                                 data["adc"].geometry, "nearest")
            write_image(tumour, folder / "adc_tumor_reader1.nii.gz")
            row["adc_tumor_reader1"] = f"{rel}/adc_tumor_reader1.nii.gz"
        self.rows[split].append(row)
        return case_id

    def finish(self) -> None:
        for split, rows in self.rows.items():
            _write_csv(self.out / f"{split}.csv", rows, self.COLUMNS)


class ManifestWriter:
    COLUMNS = ["case_id", "patient_id", "t2w", "adc", "hbv", "lesion", "zones", "cspca"]

    def __init__(self, out: Path, cfg: SynthConfig):
        self.out, self.cfg, self.rows = out, cfg, []

    def write(self, i: int, data: dict[str, Any]) -> str:
        case_id = f"case{i:03d}"
        row = {"case_id": case_id, "patient_id": f"patient{i // 2:03d}", "cspca": "yes" if data["isup"] >= 2 else "no"}
        for name in ("t2w", "adc", "hbv", "lesion", "zones"):
            if name == "zones" and data.get("no_masks"):
                row[name] = ""
                continue
            write_image(data[name], self.out / "studies" / case_id / f"{name}.nii.gz")
            row[name] = f"studies/{case_id}/{name}.nii.gz"
        self.rows.append(row)
        return case_id

    def finish(self) -> None:
        _write_csv(self.out / "manifest.csv", self.rows, self.COLUMNS)
