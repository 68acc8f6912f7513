"""How long does the main job take? Runs `adunet reproduce params/demo.yaml` from nothing and prints
the wall time of every notebook and the total (target: ≤ 12 minutes on 2 CPU cores, #26).

    python benchmarks/bench_demo.py            # into a temporary folder (nothing of runs/demo is reused)
    python benchmarks/bench_demo.py --keep DIR # keep the run and figures in DIR

Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from adunet_lib.runner.params import relocated
from adunet_lib.runner.reproduce import reproduce

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(REPO / "params" / "demo.yaml"))
    parser.add_argument("--keep", help="folder for the run and its figures (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="adunet-bench-"))
    params = relocated(args.params, folder)
    print(f"{os.cpu_count()} CPU(s); run folder {folder}")
    t0 = time.perf_counter()
    timings = reproduce(params, root=REPO, stream_output=False)
    total = time.perf_counter() - t0
    print("\nnotebook                 seconds")
    for nb, seconds in timings.items():
        print(f"{nb:24s} {seconds:7.0f}")
    print(f"{'total':24s} {total:7.0f}  ({total / 60:.1f} min; target ≤ 12 min)")


if __name__ == "__main__":
    main()
