"""The run folder: where notebooks read and write (they talk to each other only through it)."""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import numpy as np

from adunet_lib.errors import ParamsError
from adunet_lib.fileio import ensure_outside


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder (from ``start``, default cwd, upwards) holding ``notebooks/`` and ``params/``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "params").is_dir():
            return folder
    return here


def resolve(path: str | Path, root: str | Path | None = None) -> Path:
    """An absolute path; relative ones are taken from the project root (so notebooks opened in
    JupyterLab, whose working folder is ``notebooks/``, find the same files as the runner)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (Path(root) if root else project_root()) / path


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Folders of one run (``runs/<params-name>/``) and its figure folder (``figures/<params-name>/``).

    Example:
        >>> ctx = RunContext.create("runs/demo", "figures/demo", seed=0)  # doctest: +SKIP
        >>> ctx.preprocessed  # doctest: +SKIP
        PosixPath('/…/runs/demo/preprocessed')
    """

    run_dir: Path
    figure_dir: Path
    seed: int = 0
    device: str = "cpu"
    interactive: bool = False

    @classmethod
    def create(cls, run_dir: str | Path, figure_dir: str | Path, seed: int = 0, device: str = "cpu",
               interactive: bool = False, inputs: tuple[str | Path | None, ...] = ()) -> RunContext:
        """Resolve the folders, refuse to write into an input folder, create them and seed every RNG."""
        ctx = cls(resolve(run_dir), resolve(figure_dir), int(seed), str(device), bool(interactive))
        real_inputs = [resolve(p) for p in inputs if p and str(p) != "synthetic"]
        ensure_outside(ctx.run_dir, real_inputs, "run")
        ensure_outside(ctx.figure_dir, real_inputs, "figure")
        if device not in ("cpu", "cuda", "mps") and not str(device).startswith("cuda:"):
            raise ParamsError(f"device must be cpu, cuda, cuda:N or mps, not {device!r}")
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        ctx.figure_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(ctx.seed)
        return ctx

    @property
    def data(self) -> Path:
        return self.run_dir / "data"

    @property
    def preprocessed(self) -> Path:
        return self.run_dir / "preprocessed"

    @property
    def models(self) -> Path:
        return self.run_dir / "models"

    @property
    def maps(self) -> Path:
        return self.run_dir / "maps"

    @property
    def nnunet(self) -> Path:
        return self.run_dir / "nnunet"

    @property
    def predictions(self) -> Path:
        return self.run_dir / "predictions"

    def figure(self, name: str) -> Path:
        return self.figure_dir / name


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when imported) torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    import sys

    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
