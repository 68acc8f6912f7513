"""The ``adunet`` command: a thin shell over library functions (which notebooks call the same way).

Heavy imports (torch, nnunetv2, papermill) happen inside the commands so ``adunet --help`` is instant.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from adunet_lib.data.synthetic import synthesize_cohort

    if args.cases < 1:
        raise SystemExit("adunet synth: --cases must be at least 1")
    created = not Path(args.out).exists()
    try:
        out = synthesize_cohort(args.out, cases=args.cases, seed=args.seed, site=args.site, layout=args.layout)
    except BaseException:
        if created:  # disk full, Ctrl-C …: no half-written cohort that looks like a dataset
            shutil.rmtree(args.out, ignore_errors=True)
        raise
    print(f"wrote {args.cases} synthetic {args.site} case(s) in the {args.layout} layout to {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from adunet_lib.data.check import check_dataset
    from adunet_lib.data.readers import open_dataset

    dataset = open_dataset(args.data_dir)
    print(f"read {len(dataset)} case(s) from {args.data_dir} ({dataset.layout} layout)")
    findings = check_dataset(dataset, show_progress=not args.quiet)
    # notes (files not used) never fail a check, not even --strict: real PI-CAI ships coronal and
    # sagittal T2W with every study, real Prostate158 a second reader's masks
    errors = [f for f in findings if f.level == "error" or (args.strict and f.level == "warning")]
    for finding in findings:
        print(finding)
    cases = {f.case_id for f in errors}
    if errors:
        print(f"{len(errors)} problem(s) in {len(cases)} case(s)", file=sys.stderr)
        return 1
    levels = [f.level for f in findings]
    print(f"ok: no errors ({levels.count('warning')} warning(s), {levels.count('note')} note(s))")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from adunet_lib.runner.reproduce import reproduce

    reproduce(args.params, start=args.start, stop=args.stop, stream_output=not args.quiet)
    return 0


def _run_unit(args: argparse.Namespace) -> int:
    from adunet_lib.runner.units import run_unit

    run_unit(args.params, args.stage, models=args.model, shard=args.shard, device=args.device,
             show_progress=not args.quiet, variants=args.variant, folds=args.fold)
    return 0


def _submit(args: argparse.Namespace) -> int:
    from adunet_lib.runner.submit import submit

    submit(args.params, executor=args.executor, shards=args.shards, gpus=args.gpus, parallel=args.parallel,
           partition=args.partition, time_min=args.time, cpus=args.cpus, start=args.start)
    return 0


def _plan(args: argparse.Namespace) -> int:
    from adunet_lib.runner.plan import plan_command

    plan_command(args.params, gpu=args.gpu, gpus=args.gpus, costs=args.costs, shards=args.shards, fmt=args.format)
    return 0


def _rehearse(args: argparse.Namespace) -> int:
    from adunet_lib.runner.rehearsal import rehearse_command

    rehearse_command(args.params, args.studies, args.out, device=args.device, batch_size=args.batch_size,
                     nnunet=not args.no_nnunet, predict_slices=args.predict_slices)
    return 0


GLAND_MODEL_HELP = ("which model makes the crop mask when none is given: run (the run's zone model, PZ/TZ), "
                    "pretrained (lavlab-taps' whole gland; pip install -e \".[gland]\"), auto (default: pretrained "
                    "where installed and the run has no zone model, or one trained on phantoms only; else the run's)")


def _predict(args: argparse.Namespace) -> int:
    from adunet_lib.predict import predict_study

    result = predict_study(args.run, {"t2w": args.t2w, "adc": args.adc, "hbv": args.hbv}, args.out, gland=args.gland,
                           zones=args.zones, variant=args.variant, case_id=args.case_id, device=args.device,
                           gland_model=args.gland_model)
    print(f"{result.case_id}: csPCa likelihood {result.case_score:.3f}, {result.lesion_candidates} lesion candidate(s); "
          f"detection map {result.detection_map}")
    return 0


def _zones(args: argparse.Namespace) -> int:
    from adunet_lib.predict import predict_zones

    target, note = predict_zones(args.run, {"t2w": args.t2w, "adc": args.adc, "hbv": args.hbv}, args.out,
                                 case_id=args.case_id, device=args.device, gland_model=args.gland_model)
    print(f"{'zones' if target.name.endswith('_zones.nii.gz') else 'gland'} {note}: {target}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from adunet_lib.report.verify import verify

    verdicts = verify(args.candidate, args.reference, args.spread)
    for verdict in verdicts:
        print(verdict)
    bad = [v for v in verdicts if v.verdict in ("outside spread", "missing")]
    print(f"{'NOT reproduced' if bad else 'reproduced'}: {len(verdicts) - len(bad)} of {len(verdicts)} table(s) "
          f"identical or within the committed seed spread")
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    from adunet_lib.data import layouts
    from adunet_lib.vocabulary import INTERNAL

    synthetic = layouts.synthetic_layouts()
    layout_help = [f"{name} ({layouts.get(name).summary})" if layouts.get(name).summary else name for name in synthetic]
    parser = argparse.ArgumentParser(
        prog="adunet",
        description="adU-Net: anomaly maps from reconstruction models as extra nnU-Net channels for csPCa "
                    "detection on biparametric prostate MRI.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic bpMRI cohort in a real dataset's layout")
    p.add_argument("out", help="output folder (created)")
    p.add_argument("--cases", type=int, default=24, help="number of studies (default 24)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--site", choices=["internal", "external"], default="internal",
                   help="scanner profile: internal (PI-CAI-like) or external (a shifted test site)")
    p.add_argument("--layout", choices=synthetic, default=layouts.synthetic_default(INTERNAL),
                   help=(", ".join(layout_help[:-1]) + " or " if len(layout_help) > 1 else "") + layout_help[-1])
    p.set_defaults(func=_synth)

    p = sub.add_parser("check", help="validate a dataset: every problem per case and file; non-zero exit on errors")
    p.add_argument("data_dir", help=f"the dataset: {layouts.expected()} (layouts: {', '.join(layouts.available())})")
    p.add_argument("--strict", action="store_true",
                   help="treat warnings (e.g. missing gland mask) as errors; notes of files not used stay notes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_check)

    p = sub.add_parser("reproduce", help="run the notebook series headless (papermill) with a params file")
    p.add_argument("params", help="params YAML, e.g. params/demo.yaml")
    p.add_argument("--from", dest="start", metavar="NN", help="first notebook number (e.g. 02)")
    p.add_argument("--to", dest="stop", metavar="NN", help="last notebook number (e.g. 04)")
    p.add_argument("--quiet", action="store_true", help="do not stream notebook output")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("run", help="one unit of the series in its own process: a notebook's model training "
                                   "(02–04; under torchrun: data-parallel) or a shard of the maps (05)")
    p.add_argument("params", help="params YAML, e.g. params/paper.yaml")
    p.add_argument("--stage", required=True, metavar="NN",
                   help="02, 03 or 04 (train that notebook's models), 05 (maps) or 06 (train nnU-Net folds)")
    p.add_argument("--model", action="append", help="only this model (repeatable; default: the notebook's models)")
    p.add_argument("--shard", metavar="K/N", help="maps of every N-th case from the K-th (stage 05)")
    p.add_argument("--variant", action="append", help="nnU-Net variant (stage 06; repeatable; default: the params file's)")
    p.add_argument("--fold", action="append", type=int, help="nnU-Net fold (stage 06; repeatable; default: the params file's)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the params file's); under torchrun on "
                                                   "GPUs each process takes cuda:LOCAL_RANK")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_unit)

    p = sub.add_parser("submit", help="the series as jobs with dependencies through submitit: on SLURM, or as "
                                      "local processes (pip install -e \".[cluster]\")")
    p.add_argument("params", help="params YAML, e.g. params/paper.yaml")
    p.add_argument("--executor", choices=["slurm", "local"], default="slurm")
    p.add_argument("--from", dest="start", default="01", metavar="NN",
                   help="01 (default) or 02: notebook 01 has run already, begin with the model training")
    p.add_argument("--shards", type=int, default=2, help="map shards (stage 05 jobs; default 2)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per model-training job (torchrun over them when > 1); "
                                                       "nnU-Net jobs take segmentation.num_gpus (default 0: CPU)")
    p.add_argument("--parallel", type=int, default=1, help="local executor: jobs at once (default 1)")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--time", type=int, default=24 * 60, help="time limit per job in minutes (default 1440)")
    p.add_argument("--cpus", type=int, default=None, help="CPUs per job")
    p.set_defaults(func=_submit)

    p = sub.add_parser("plan", help="what every job of adunet submit will cost: iterations, hours, peak memory, "
                                    "disk; the critical path on N GPUs; totals (measured on CPU or extrapolated)")
    p.add_argument("params", help="params YAML, e.g. params/paper.yaml")
    p.add_argument("--gpu", default="h100", metavar="KIND",
                   help="h100, a100, h200 (FLOPs at an assumed share of the device's peak) or cpu (the cost "
                        "file's measured CPU seconds); default h100")
    p.add_argument("--gpus", type=int, default=1, help="GPUs (with --gpu cpu: CPU workers) the graph runs on (default 1)")
    p.add_argument("--shards", type=int, default=2, help="map shards, as adunet submit --shards (default 2)")
    p.add_argument("--costs", default=None, metavar="CSV",
                   help="cost per iteration (default figures/paper-rehearsal/cost_per_iteration.csv of the project)")
    p.add_argument("--format", choices=["text", "md"], default="text", help="plain text (default) or Markdown")
    p.set_defaults(func=_plan)

    p = sub.add_parser("rehearse", help="every network of a params file at its sizes, one training step and one "
                                        "translation each, and one nnU-Net step + prediction on real studies at its "
                                        "configuration: the shape and memory bugs of a GPU-days run, in minutes")
    p.add_argument("params", help="params YAML, e.g. params/paper.yaml")
    p.add_argument("--studies", default=None, metavar="FOLDER",
                   help="real studies for the nnU-Net step (any layout adunet reads; two with a gland or zone mask)")
    p.add_argument("--no-nnunet", action="store_true", help="rehearse the reconstruction networks only")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=2, help="slices per training iteration (default 2)")
    p.add_argument("--predict-slices", type=int, default=0, metavar="N",
                   help="predict only the middle N slices of the held-out study (default: all of them)")
    p.add_argument("--out", default=None, metavar="CSV", help="default runs/<params>-rehearsal/rehearsal.csv")
    p.set_defaults(func=_rehearse)

    p = sub.add_parser("verify", help="compare a regenerated figures folder with the committed one, table by table, "
                                      "against the committed seed spread; non-zero exit when outside")
    p.add_argument("candidate", help="the regenerated figures folder (e.g. figures/demo of a fresh run elsewhere)")
    p.add_argument("reference", help="the committed figures folder (e.g. figures/demo)")
    p.add_argument("--spread", help="seed spread table (default: REFERENCE/spread.csv)")
    p.set_defaults(func=_verify)

    p = sub.add_parser("predict", help="detect csPCa in one new study with a finished run's models")
    p.add_argument("t2w", help="T2W image (.mha / .nii.gz)")
    p.add_argument("adc", help="ADC map")
    p.add_argument("hbv", help="high-b DWI image")
    mask = p.add_mutually_exclusive_group()
    mask.add_argument("--gland", help="whole-gland mask on the T2W grid (default: predicted, see --gland-model)")
    mask.add_argument("--zones", help="zonal mask (1 = PZ, 2 = TZ) on the T2W grid (default: predicted, as --gland)")
    mask.add_argument("--gland-model", default="auto", choices=("auto", "run", "pretrained"),
                      help=GLAND_MODEL_HELP)
    p.add_argument("--run", default="runs/demo", help="run folder whose models to use (default runs/demo)")
    p.add_argument("--variant", default="adunet_all", help="nnU-Net variant (default adunet_all)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--case-id", help="name of the study (default: from the T2W file name)")
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.set_defaults(func=_predict)

    p = sub.add_parser("zones", help="predict one study's PZ/TZ mask with a run's zone model, or its gland with the "
                       "pretrained gland model (check it before trusting the crop)")
    p.add_argument("t2w", help="T2W image (.mha / .nii.gz)")
    p.add_argument("adc", nargs="?", help="ADC map (when the zone model reads it)")
    p.add_argument("hbv", nargs="?", help="high-b DWI image (when the zone model reads it)")
    p.add_argument("--run", default="runs/demo", help="run folder whose zone model to use (default runs/demo)")
    p.add_argument("--out", required=True, help="output folder: <case>_zones.nii.gz (or _gland.nii.gz) on the T2W grid")
    p.add_argument("--gland-model", default="auto", choices=("auto", "run", "pretrained"), help=GLAND_MODEL_HELP)
    p.add_argument("--case-id", help="name of the study (default: from the T2W file name)")
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.set_defaults(func=_zones)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from adunet_lib.errors import AdunetError

    for stream in (sys.stdout, sys.stderr):
        # a POSIX/ASCII locale must not turn a "…" or "×" in a message into a crash
        if hasattr(stream, "reconfigure") and "utf" not in (stream.encoding or "").lower():
            stream.reconfigure(errors="replace")
    try:
        parser = build_parser()
    except AdunetError as exc:  # a layout module in ADUNET_LAYOUT_MODULES that cannot be imported
        print(f"adunet: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        device = getattr(args, "device", None)
        if device:
            from adunet_lib.runner.sense import device_problem

            problem = device_problem(device)
            if problem:
                raise AdunetError(f"--device {device}: {problem}")
        return int(args.func(args) or 0)
    except AdunetError as exc:
        from adunet_lib.runner.reproduce import Interrupted

        print(f"adunet {args.command}: error: {exc}", file=sys.stderr)
        return 130 if isinstance(exc, Interrupted) else 2
    except KeyboardInterrupt:
        print(f"adunet {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as exc:  # permission denied, disk full, read-only file system …: the file and why
        where = f": {exc.filename}" if exc.filename else ""
        print(f"adunet {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
