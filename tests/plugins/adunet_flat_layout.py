"""A toy dataset layout, added ARCHITECTURE.md's way from outside the package: ``flat``.

``<root>/<case>/{t2w,adc,hbv}.nii.gz`` and, when the case is annotated, ``<case>/lesion.nii.gz`` on the
T2W grid (values 0..5; all zeros: a csPCa-negative case). One file (this one: a reader, a synthetic
writer and their registration) + its module in ``ADUNET_LAYOUT_MODULES``: ``open_dataset`` then detects
it, ``adunet check`` reads it, ``adunet synth --layout flat`` writes it and every list of layouts names it
(``tests/test_layout_registry.py``) — with no other change to adunet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adunet_lib.data.layouts import Layout, register_layout

SEQUENCES = ("t2w", "adc", "hbv")
LESION = "lesion.nii.gz"


def read_flat(root: Path, site: str = "flat"):
    """The reader: every sub-folder of ``root`` with a ``t2w.nii.gz`` is a case."""
    from adunet_lib.data.case import Case
    from adunet_lib.data.readers import make_dataset

    cases, used = [], set()
    for folder in sorted(p for p in root.iterdir() if (p / "t2w.nii.gz").is_file()):
        images = {seq: folder / f"{seq}.nii.gz" for seq in SEQUENCES}
        lesion = folder / LESION if (folder / LESION).is_file() else None
        used.update(p for p in (*images.values(), lesion) if p is not None and p.is_file())
        cases.append(Case(case_id=folder.name, images={s: p for s, p in images.items() if p.is_file()},
                          lesion=lesion, site=site, expected=images, patient_id=folder.name,
                          lesion_source="flat" if lesion else "none"))
    return make_dataset(root.name, root, "flat", cases, str(root), used=used,
                        default_why="not part of the flat layout (<case>/{t2w,adc,hbv}.nii.gz, lesion.nii.gz)")


class FlatWriter:
    """The synthetic writer: one folder per study, its lesion mask always written (a negative's is empty)."""

    def __init__(self, out: Path, config: Any):
        self.out = out

    def write(self, i: int, study: dict[str, Any]) -> str:
        from adunet_lib.data.image import write_image

        case_id = f"flat{i:03d}"
        for name in (*SEQUENCES, "lesion"):
            write_image(study[name], self.out / case_id / f"{name}.nii.gz")
        return case_id

    def finish(self) -> None:
        pass


@register_layout("flat")
class FlatLayout(Layout):
    looks_like = "a flat folder of <case>/t2w.nii.gz"
    summary = "one folder per study"

    def detect(self, path: Path) -> bool:
        return path.is_dir() and any((p / "t2w.nii.gz").is_file() for p in path.iterdir())

    def read(self, path: Path, site: str | None = None, lesion_sources: tuple[str, ...] | None = None):
        return read_flat(path, site=site or path.name)

    def writer(self, out: Path, config: Any) -> FlatWriter:
        return FlatWriter(out, config)
