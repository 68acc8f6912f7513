"""Data layer: images with geometry, cases, dataset readers, the synthetic cohort, dataset checks."""

from adunet_lib.data.case import Case, LoadedCase, load_case
from adunet_lib.data.image import Geometry, Image, read_image, write_image
from adunet_lib.data.readers import Dataset, open_dataset, read_manifest, read_picai, read_prostate158

__all__ = ["Case", "Dataset", "Geometry", "Image", "LoadedCase", "load_case", "open_dataset", "read_image",
           "read_manifest", "read_picai", "read_prostate158", "write_image"]
