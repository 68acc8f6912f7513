"""adunet: anomaly-driven nnU-Net (adU-Net) for csPCa detection on biparametric prostate MRI.

The library behind the notebook series in ``notebooks/``. One sub-package per pipeline stage:

- :mod:`adunet_lib.data` — images with geometry, dataset readers, synthetic cohort, checks
- :mod:`adunet_lib.preprocessing` — resampling, gland crop (invertible), normalisation, slices
- :mod:`adunet_lib.anomaly_models` — reconstruction models behind one interface and registry
- :mod:`adunet_lib.anomaly_maps` — a = Φ(|x − G(x)|) back on the original T2W grid
- :mod:`adunet_lib.segmentation` — nnU-Net v2 datasets, training, prediction, detection maps
- :mod:`adunet_lib.evaluation` — PI-CAI metrics, bootstrap CIs, paired tests
- :mod:`adunet_lib.report` — tables, figures, interactive viewers
- :mod:`adunet_lib.runner` — params files and the papermill runner behind ``adunet reproduce``
- :mod:`adunet_lib.run_folder` — every path and record of a run folder ``runs/<name>/``
- :mod:`adunet_lib.nnunet_seam` — nnU-Net worker requests and nnU-Net's file names (their one owner)
- :mod:`adunet_lib.vocabulary` — sequences, sets, splits, labels, nnU-Net variants
- :mod:`adunet_lib.cache` — the one cache-key scheme (fingerprints of settings + inputs)

Heavy dependencies (torch, nnunetv2) are imported inside the functions that need them.
"""

from adunet_lib.errors import AdunetError, CaseError, ParamsError
from adunet_lib.vocabulary import SEQUENCES

__version__ = "0.1.0"

__all__ = ["AdunetError", "CaseError", "ParamsError", "SEQUENCES", "__version__"]
