"""WeakSVR: sequence verification AUC and text-to-video matching, mean and std over seeds.

    PROCALIGN_DATA=../shared/data python benchmarks/weaksvr_csv.py [--datasets csv synthetic]
        [--seeds 0 1 2] [--variants ...] [--epochs N] [--cpa] [--out DIR]

Each (dataset, variant, seed) trains in its own subprocess (peak memory = the run's own) and is
evaluated with the shared protocols: SVIP 3-clip verification (AUC on the l2 distance of
l2-normalised video embeddings; CSV: the 1000 official test pairs) and text-to-video matching
(CSV: the real CSV-Matching query file, 5 candidates of the same task; synthetic: queries drawn
from the test split). Variants (``configs/weaksvr_<dataset>.yaml`` plus):

* Table 6 (no classification): ``sort`` (the config as shipped), ``viterbi``, ``split``,
  ``none`` (L_coarse only, i.e. TE + MLP); ``sort_sim``: sort with the cross-entropies of
  L_fine over the scaled similarities instead of the straight-through one-hot samples;
* Table 5 (with classification, "w CLS"): ``cls_both``, ``cls_fine`` (no L_coarse),
  ``cls_coarse`` (no L_fine), ``cls_only`` (neither: no text at all);
* Table 1 / 3 baselines: ``pool`` (mean-pooled frame tokens + linear, L_coarse only: the
  text-to-mean-pooled-video baseline), and the untrained inputs (``raw_video_l2``,
  ``raw_pyramid_l2`` rows of every run);
* our departures: ``eq3`` (the paragraph as Eq. 3: the sentence encoder over the joined steps,
  instead of position-bound sentences), ``eq3_none`` (the same without L_fine: does L_fine help
  when the paragraph is blind to order?) and ``no_center`` (no per-clip centring).

``--cpa`` also trains CPA (configs/cpa_<dataset>.yaml) on the *same* simulated frames (text
prototypes on) and scores it on the same pairs. Data: ``csv`` keeps CSV's real label bank,
splits, official pairs and matching queries and simulates frames from the step sentences
(``data.synthetic.text_prototypes``); ``synthetic`` is the built-in generator, data seed = seed.
Raw rows go to ``benchmarks/results/weaksvr.json``; docs/results.md tables are rendered from it
by ``benchmarks/tables.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"synthetic": "configs/weaksvr_synthetic.yaml", "csv": "configs/weaksvr_csv.yaml"}
CPA_CONFIGS = {"synthetic": "configs/cpa_synthetic.yaml", "csv": "configs/cpa_csv.yaml"}
VARIANTS = {
    "sort": [],
    "viterbi": ["loss.pseudo_labels=viterbi"],
    "split": ["loss.pseudo_labels=split"],
    "sort_sim": ["loss.fine_logits=similarity"],
    "none": ["loss.pseudo_labels=none"],
    "cls_both": ["model.classify=true"],
    "cls_fine": ["model.classify=true", "loss.coarse=0"],
    "cls_coarse": ["model.classify=true", "loss.pseudo_labels=none"],
    "cls_only": ["model.classify=true", "loss.coarse=0", "loss.pseudo_labels=none"],
    "pool": ["model.video_head=mean", "loss.pseudo_labels=none"],
    "eq3": ["model.paragraph=text"],
    "eq3_none": ["model.paragraph=text", "loss.pseudo_labels=none"],
    "no_center": ["model.center=false"],
}
DEFAULT_VARIANTS = tuple(VARIANTS)
sys.path.insert(0, str(ROOT / "benchmarks"))


def one_run(method: str, config: str, run_dir: str, overrides: list[str]) -> dict:
    """Train + evaluate in this process; one JSON line with metrics, time and memory."""
    import resource

    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    from procalign.config import load_config
    from procalign.methods import load_recipes
    from procalign.train.runner import evaluate_run, train_run

    recipe = load_recipes().build(method)
    cfg = load_config(recipe.config_cls, config, overrides)
    t0 = time.perf_counter()
    train_run(recipe, cfg, run_dir, resume=False, progress=False)
    report = evaluate_run(recipe, run_dir, progress=False)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    history = json.loads((Path(run_dir) / "history.json").read_text())
    result = _result(report, history)
    result.update(wall_seconds=time.perf_counter() - t0, peak_rss_mb=peak_kb / 1024)
    (Path(run_dir) / "bench.json").write_text(json.dumps(result, indent=1))
    return result


def _result(report: dict, history: list) -> dict:
    rows = report["metrics"]
    return {
        "auc": {r["distance"]: r["value"] for r in rows if r["metric"] == "auc"},
        "matching": {r["metric"].removeprefix("matching_"): r["value"] for r in rows
                     if r["metric"].startswith("matching_")},
        "matching_source": report.get("matching", {}).get("source"),
        "fine": {r["variant"].rsplit(",", 1)[1]: r["value"] for r in rows
                 if r["metric"] == "fine_step_accuracy"},
        "seconds_per_epoch": statistics.mean(h["seconds"] for h in history),
        "epochs": len(history),
        "wall_seconds": None,
        "peak_rss_mb": None,
        "num_pairs": report.get("num_pairs"),
        "pairs": report.get("pairs"),
        "data": report["data"],
    }


def collected(run_dir: Path) -> dict | None:
    """The result of a finished run folder (bench.json; else rebuilt from eval.json, without
    memory and wall time), or None."""
    if not ((run_dir / "eval.json").is_file() and (run_dir / "history.json").is_file()):
        return None
    out = _result(json.loads((run_dir / "eval.json").read_text()),
                  json.loads((run_dir / "history.json").read_text()))
    if (run_dir / "bench.json").is_file():  # time and memory of the training process
        bench = json.loads((run_dir / "bench.json").read_text())
        out.update(wall_seconds=bench.get("wall_seconds"), peak_rss_mb=bench.get("peak_rss_mb"))
    return out


def launch(method: str, config: str, run_dir: Path, overrides: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--one", method, config, str(run_dir), *overrides,
           "train.threads=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"run failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--one":
        print(json.dumps(one_run(argv[1], argv[2], argv[3], argv[4:])))
        return 0
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["csv"], choices=sorted(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--cpa", action="store_true", help="also train CPA on the same frames and pairs")
    p.add_argument("--out", default="runs/bench/weaksvr", help="run folders")
    p.add_argument("--collect", action="store_true",
                   help="reuse finished runs in --out (their bench.json or eval.json) instead of "
                   "training them again; train only the missing ones")
    args = p.parse_args(argv)
    if "csv" in args.datasets and not os.environ.get("PROCALIGN_DATA"):
        raise SystemExit("the csv rows need PROCALIGN_DATA (e.g. ../shared/data)")
    out = Path(args.out)
    results: dict = {}
    for ds in args.datasets:
        results[ds] = {}
        jobs = [("weaksvr", v, CONFIGS[ds], VARIANTS[v]) for v in args.variants]
        if args.cpa:  # the same simulated frames as WeakSVR's: text prototypes on
            text = CONFIGS[ds]
            from procalign.config import load_config
            from procalign.methods.weaksvr import WeakSVRConfig

            wcfg = load_config(WeakSVRConfig, str(ROOT / text), [])
            jobs.append(("cpa", "cpa", CPA_CONFIGS[ds],
                         [f"data.synthetic.{k}={v}" for k, v in wcfg.data.synthetic.items()
                          if k != "seed"]
                         + ["eval.distances=[cpa]", "eval.steps_sweep=[]",
                            f"eval.pairs={wcfg.eval.pairs}", f"eval.num_pairs={wcfg.eval.num_pairs}"]))
        for method, variant, config, extra in jobs:
            for seed in args.seeds:
                over = [f"train.seed={seed}", f"data.synthetic.seed={seed}", *extra]
                if args.epochs:
                    over.append(f"train.epochs={args.epochs}")
                run_dir = out / ds / f"{variant}_s{seed}"
                r = collected(run_dir) if args.collect else None
                r = r or launch(method, config, run_dir, over)
                results[ds].setdefault(variant, []).append(r)
                m = r["matching"]
                print(f"{ds} {variant} seed {seed}: AUC "
                      + ", ".join(f"{k} {v:.3f}" for k, v in r["auc"].items())
                      + (f" | matching acc {m['accuracy']:.3f} auc {m['auc']:.3f}" if m else "")
                      + f" | {r['seconds_per_epoch']:.2f} s/epoch"
                      + (f", {r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") else ""),
                      flush=True)
    import torch

    import tables

    path = tables.RESULTS / "weaksvr.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    for ds, runs in results.items():
        saved.setdefault("results", {}).setdefault(ds, {}).update(runs)
    command = "PROCALIGN_DATA=../shared/data python benchmarks/weaksvr_csv.py " + " ".join(argv)
    lines = [c for c in saved.get("command", "").splitlines() if c and c != command]
    saved.update(
        seeds=args.seeds,
        meta={"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "torch": torch.__version__, "threads": 1},
        command="\n".join([*lines, command]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1) + "\n")
    print(tables.render("weaksvr_sv"))
    print(tables.render("weaksvr_matching"))
    print(tables.render("weaksvr_fine"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
