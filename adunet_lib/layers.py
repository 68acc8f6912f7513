"""The layers of ``adunet_lib``, lowest first: a module imports from its own layer and the ones below.

Nothing here is imported at run time; it is the map that ``tests/test_layers.py`` holds the code to
(every import the code can run, top-level or inside a function) and that ARCHITECTURE.md draws. When
a lower layer seems to need something from a higher one, move that piece down or pass it in as an
argument: the run folder knows paths, not the types stored there (``PreprocessedCase.from_run``
reads a preprocessed case), and a stage that draws uses :mod:`adunet_lib.plotting`, not the report.

Inside the stage layer two more rules hold: the stage packages import each other without a cycle
(``zones`` uses ``segmentation.nnunet`` and ``preprocessing.geometry``; ``anomaly_maps`` uses
``anomaly_models``), and a package's ``stage.py`` is imported only by its own package and by the
commands in :data:`STAGE_RUNNERS` — stages meet in the run folder.
"""

from __future__ import annotations

#: (layer, the names directly under ``adunet_lib`` that belong to it), lowest first. ``""`` is
#: ``adunet_lib/__init__.py`` itself.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("", "errors", "vocabulary", "fileio", "progress", "cache", "plotting", "layers", "nnunet_seam",
              "parameters")),
    ("data", ("data",)),
    ("run folder", ("run_folder",)),
    ("stages", ("preprocessing", "zones", "segmentation", "anomaly_models", "anomaly_maps", "evaluation")),
    ("report", ("report",)),
    ("commands", ("runner", "predict", "cli", "__main__")),
)

#: The layer whose packages are pipeline stages, each with a ``stage.py`` its notebook calls.
STAGE_LAYER = "stages"

#: Top-level names whose modules may import a stage's ``stage.py``: the runner runs the stages.
STAGE_RUNNERS = ("runner",)
