"""The built-in dataset layouts: PI-CAI, Prostate158 and a CSV manifest, registered in the layout registry
(:mod:`adunet_lib.data.layouts`) in the order :func:`~adunet_lib.data.readers.open_dataset` tries them.

Their readers live in :mod:`adunet_lib.data.readers`, their synthetic writers in
:mod:`adunet_lib.data.synthetic`; both are imported only when used, so listing the layouts
(``adunet --help``) loads no image library.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from adunet_lib.data.layouts import Layout, SyntheticWriter, register_layout
from adunet_lib.vocabulary import EXTERNAL, INTERNAL

if TYPE_CHECKING:
    from adunet_lib.data.readers import Dataset


@register_layout("picai")
class PicaiLayout(Layout):
    looks_like = "a PI-CAI folder with images/"
    summary = "images/ + picai_labels, several label sources, patients with two studies"
    synthetic_default_for = (INTERNAL,)

    def detect(self, path: Path) -> bool:
        return (path / "images").is_dir()

    def read(self, path: Path, site: str | None = None, lesion_sources: tuple[str, ...] | None = None) -> Dataset:
        from adunet_lib.data.readers import PICAI_LESION_SOURCES, read_picai

        sources = PICAI_LESION_SOURCES if lesion_sources is None else tuple(lesion_sources)
        return read_picai(path, site=site or path.name, lesion_sources=sources)

    def writer(self, out: Path, config: Any) -> SyntheticWriter:
        from adunet_lib.data.synthetic import PicaiWriter

        return PicaiWriter(out, config)


@register_layout("prostate158")
class Prostate158Layout(Layout):
    looks_like = "a Prostate158 folder"
    summary = "train/valid/test.csv, negatives without tumour file"
    synthetic_default_for = (EXTERNAL,)

    def detect(self, path: Path) -> bool:
        return path.is_dir() and (any((path / f"{s}.csv").is_file() for s in ("train", "valid", "test"))
                                  or any(path.rglob("t2.nii.gz")))

    def read(self, path: Path, site: str | None = None, lesion_sources: tuple[str, ...] | None = None) -> Dataset:
        from adunet_lib.data.readers import read_prostate158

        return read_prostate158(path, site=site or path.name)

    def writer(self, out: Path, config: Any) -> SyntheticWriter:
        from adunet_lib.data.synthetic import Prostate158Writer

        return Prostate158Writer(out, config)


@register_layout("manifest")
class ManifestLayout(Layout):
    looks_like = "a manifest .csv"
    summary = "CSV"
    synthetic_entry = "manifest.csv"

    def detect(self, path: Path) -> bool:
        return path.is_file() and path.suffix == ".csv"

    def read(self, path: Path, site: str | None = None, lesion_sources: tuple[str, ...] | None = None) -> Dataset:
        from adunet_lib.data.readers import read_manifest

        return read_manifest(path, site=site or "")

    def writer(self, out: Path, config: Any) -> SyntheticWriter:
        from adunet_lib.data.synthetic import ManifestWriter

        return ManifestWriter(out, config)
