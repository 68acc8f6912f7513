"""The promises of the repository itself: install paths, notebooks as committed, a fast CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def test_environment_yml_delegates_to_pyproject(repo):
    env = yaml.safe_load((repo / "environment.yml").read_text(encoding="utf-8"))
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # conda provides only Python and pip; every library comes from pyproject.toml
    assert all(d.split("=")[0] in ("python", "pip") for d in conda)
    assert pip == ["-e .[test]"]


def test_cli_help_does_not_import_torch(repo):
    code = ("import sys; from adunet_lib.cli import build_parser; build_parser(); "
            "print(any(m in sys.modules for m in ('torch', 'nnunetv2', 'papermill', 'SimpleITK')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", errors="replace", check=True)
    assert out.stdout.strip() == "False"


def _notebooks(repo):
    return sorted((repo / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_are_committed_clean_and_paired(repo):
    import jupytext

    notebooks = _notebooks(repo)
    assert notebooks
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
        assert nb["metadata"]["jupytext"]["formats"] == "ipynb,py:percent", path.name
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{path.name} has outputs"
        assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1
        paired = path.with_suffix(".py")
        assert paired.is_file(), f"{paired.name} missing"
        from_py = jupytext.read(paired)
        assert [c.source for c in from_py.cells] == ["".join(c["source"]) for c in nb["cells"]], \
            f"{path.name} and {paired.name} differ: run `jupytext --sync {paired}`"


def test_python3_kernel_exists_in_this_environment():
    from jupyter_client.kernelspec import KernelSpecManager

    assert "python3" in KernelSpecManager().find_kernel_specs()


BENCHMARKS = sorted((Path(__file__).parents[1] / "benchmarks").glob("bench_*.py"))

# Every benchmark's `--help`, run as its `__main__` in one fresh interpreter (torch is imported once,
# not once per script): {script name: [exit code, what it printed]}.
HELP_DRIVER = """
import contextlib, io, json, os, runpy, sys, traceback
results = {}
for path in sys.argv[1:]:
    sys.path.insert(0, os.path.dirname(path))  # as `python benchmarks/x.py`: its folder first on the path
    sys.argv = [path, "--help"]
    out = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        code = exc.code or 0
    except BaseException:
        code = 1
        out.write(traceback.format_exc())
    results[path] = [code, out.getvalue()]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def benchmark_help():
    done = subprocess.run([sys.executable, "-c", HELP_DRIVER, *map(str, BENCHMARKS)], capture_output=True, text=True,
                          encoding="utf-8", errors="replace")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_scripts_start(script, benchmark_help):
    """Benchmarks run on demand, so nothing else would notice when one stops importing."""
    code, printed = benchmark_help[str(script)]
    assert code == 0 and "usage:" in printed, printed[-1000:]
