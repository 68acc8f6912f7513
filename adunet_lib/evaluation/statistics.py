"""Paired bootstrap over cases: 95 % CIs for every model and tests of every variant against the baseline.

Each bootstrap replicate resamples the *cases* with replacement and evaluates every model on the
same resampled cases (``picai_eval.Metrics.calc_auroc`` / ``calc_AP`` on the resampled subject
list), so differences are paired. CIs are percentile intervals; the two-sided p-value of a
difference is 2·min(P(Δ ≤ 0), P(Δ ≥ 0)) over replicates, capped at 1. Replicates that contain only
one class of patients (AUROC undefined) are redrawn.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

METRICS = ("auroc", "ap", "score")


def _values(metrics, subjects: list[str]) -> dict[str, float]:
    auroc = float(metrics.calc_auroc(subject_list=subjects))
    ap = float(metrics.calc_AP(subject_list=subjects))
    return {"auroc": auroc, "ap": ap, "score": (auroc + ap) / 2}


def paired_bootstrap(results: Mapping[str, object], n_bootstrap: int = 1000, seed: int = 0,
                     baseline: str = "baseline", confidence: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CIs per model, and differences vs ``baseline`` with CIs and p-values.

    Args:
        results: model → ``picai_eval.Metrics`` evaluated on the same cases.

    Returns:
        (per-model table: model, metric value, lo, hi; difference table: model, metric, delta, lo, hi, p).
    """
    models = list(results)
    subjects = sorted(next(iter(results.values())).case_target)
    targets = np.array([next(iter(results.values())).case_target[s] for s in subjects])
    rng = np.random.default_rng(seed)
    draws: dict[str, list[dict[str, float]]] = {m: [] for m in models}
    attempts = 0
    while len(draws[models[0]]) < n_bootstrap and attempts < 20 * n_bootstrap:
        attempts += 1
        idx = rng.integers(0, len(subjects), len(subjects))
        if targets[idx].min() == targets[idx].max():
            continue
        sample = [subjects[i] for i in idx]
        for m in models:
            draws[m].append(_values(results[m], sample))
    alpha = (1 - confidence) / 2
    point = {m: _values(results[m], subjects) for m in models}
    rows, diffs = [], []
    for m in models:
        boot = pd.DataFrame(draws[m])
        row = {"model": m}
        for k in METRICS:
            row[k] = point[m][k]
            row[f"{k}_lo"], row[f"{k}_hi"] = (np.quantile(boot[k], [alpha, 1 - alpha]) if len(boot) else (np.nan, np.nan))
        rows.append(row)
        if baseline in results and m != baseline:
            base = pd.DataFrame(draws[baseline])
            for k in METRICS:
                delta = boot[k].to_numpy() - base[k].to_numpy()
                p = min(1.0, 2 * min((delta <= 0).mean(), (delta >= 0).mean())) if len(delta) else np.nan
                lo, hi = np.quantile(delta, [alpha, 1 - alpha]) if len(delta) else (np.nan, np.nan)
                diffs.append({"model": m, "metric": k, "delta": point[m][k] - point[baseline][k], "lo": lo, "hi": hi,
                              "p_value": p, "replicates": len(delta)})
    return pd.DataFrame(rows), pd.DataFrame(diffs)
