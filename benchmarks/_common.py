"""What every torch benchmark shares: the --device/--threads options and a header saying where it ran."""

from __future__ import annotations

import argparse
import os

import torch


def add_torch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (on a busy machine 1 can beat 2: no waiting for a descheduled thread)")


def start(args: argparse.Namespace) -> None:
    """Apply --threads, seed torch, and print the machine line that belongs next to any timing."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} CPU thread(s), "
          f"{os.cpu_count()} cores, load average {load:.1f} (timings on a shared machine vary)")
