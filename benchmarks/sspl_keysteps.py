"""Multi-task procedure learning (``sspl``): key-step discovery and task recognition, 3 seeds.

What is measured (the paper's Table 1, Tables 2-3 and Fig. 2, on our data):

* ``table1``: on generated region data (``configs/sspl_synthetic.yaml``) and on Breakfast-scripted
  data (real Breakfast step orders and durations with simulated region features,
  ``configs/sspl_breakfast.yaml``), for k in {7, 10, 12, 15}: frame F1 / recall / precision
  after per-task Hungarian matching of Random (each frame one of k ids), uniform segmentation
  (k equal segments), the teacher alone (k-means + subset selection on the untrained, mean
  region features), the trained run's final teacher, and the trained network (key-steps of the
  true task; the row with the predicted task is kept in the JSON);
* ``ablation`` (synthetic, k = 7): attention only / learned pooling only / both / neither, task
  accuracy and F1;
* ``lambda`` (synthetic, k = 7): lambda_task in {0, 0.25, 0.5, 1};
* ``selfsup`` (synthetic, k = 7): ranking loss on / off (task labels only), and the
  cross-entropy localisation loss instead of ranking (Remark 3).

Every run is trained and evaluated through the ordinary recipe (``train_run`` / ``evaluate_run``)
with the YAML config plus the overrides named in its key; raw rows accumulate in
``benchmarks/results/sspl.json`` after every run (rendered by ``benchmarks/tables.py``), and a
restarted script skips the runs already there. Sizes are chosen so that everything runs in about
10-15 minutes on one core: fewer videos and epochs than the configs (``SMALL``).

    PROCALIGN_DATA=../shared/data nice -n 10 python benchmarks/sspl_keysteps.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from procalign.config import load_config
from procalign.methods import load_recipes
from procalign.train.runner import evaluate_run, train_run
from procalign.train.threads import compute

OUT = ROOT / "benchmarks" / "results" / "sspl.json"
KS = (7, 10, 12, 15)
SEEDS = (0, 1, 2)
CONFIGS = {"synthetic": "configs/sspl_synthetic.yaml", "breakfast": "configs/sspl_breakfast.yaml"}
#: smaller than the configs, so that the whole benchmark fits in ~15 min on one core
SMALL = {
    "synthetic": [("data.synthetic={num_tasks: 4, num_steps: 12, steps_per_task: 5, train_videos: 10, "
                   "test_videos: 4, regions: 6, dim: 16, noise: 0.6, seed: SEED}"),
                  "train.epochs=25"],
    "breakfast": [("data.synthetic={frame_stride: 15, train_videos: 6, test_videos: 3, regions: 6, "
                   "dim: 16, noise: 0.6, seed: SEED}"),
                  "train.epochs=25"],
}
ABLATION = {
    "both": [],
    "attention_only": ["model.learned_pooling=false"],
    "pooling_only": ["model.attention=false"],
    "neither": ["model.attention=false", "model.learned_pooling=false"],
}
LAMBDAS = (0.0, 0.25, 0.5, 1.0)
SELFSUP = {
    "ranking": [],
    "no_self_supervision": ["teacher.self_supervision=false"],
    "cross_entropy": ["loss.localisation=cross_entropy"],
}
MODELS = ("random", "uniform", "teacher_initial", "teacher_final", "sspl,true_task",
          "sspl,predicted_task")


def plan() -> list[tuple[str, str, list[str]]]:
    """(run key, dataset, overrides) of every run, table 1 first."""
    runs = []
    for seed in SEEDS:
        for dataset in CONFIGS:
            for k in KS:
                runs.append((f"{dataset}/k={k}/base/seed={seed}", dataset, [f"teacher.k={k}"], seed))
        for name, extra in ABLATION.items():
            if name != "both":
                runs.append((f"synthetic/k=7/{name}/seed={seed}", "synthetic", extra, seed))
        for lam in LAMBDAS:
            if lam != 0.5:
                runs.append((f"synthetic/k=7/lambda={lam}/seed={seed}", "synthetic",
                             [f"loss.lambda_task={lam}"], seed))
        for name, extra in SELFSUP.items():
            if name != "ranking":
                runs.append((f"synthetic/k=7/{name}/seed={seed}", "synthetic", extra, seed))
    return [(key, ds, [*(o.replace("SEED", str(seed)) for o in SMALL[ds]), f"train.seed={seed}",
                       "eval.seed=" + str(seed), *extra]) for key, ds, extra, seed in runs]


def one(key: str, dataset: str, overrides: list[str], work: Path) -> dict:
    recipe = load_recipes().build("sspl")
    cfg = load_config(recipe.config_cls, ROOT / CONFIGS[dataset], overrides)
    run = work / key.replace("/", "_")
    t0 = time.perf_counter()
    with compute(1):
        summary = train_run(recipe, cfg, run, resume=False, progress=False)
        report = evaluate_run(recipe, run, progress=False)
    res: dict = {"overrides": overrides, "wall_seconds": time.perf_counter() - t0,
                 "seconds_per_epoch": summary["parts"][0]["seconds_per_epoch"],
                 "train_videos": summary["parts"][0]["train_videos"],
                 "tasks": summary["parts"][0]["tasks"], "models": {}}
    for r in report["metrics"]:
        if r["metric"] in ("task_accuracy", "agreement_with_teacher", "attention_on_evidence"):
            res[r["metric"]] = r["value"]
            continue
        name = r["variant"].split(",k=")[0]
        res["models"].setdefault(name, {})[r["metric"]] = r["value"]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run keys containing this string only")
    ap.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    args = ap.parse_args(argv)
    data = json.loads(OUT.read_text()) if OUT.is_file() else {}
    data.setdefault("command", "PROCALIGN_DATA=../shared/data nice -n 10 python benchmarks/sspl_keysteps.py")
    data["settings"] = {"configs": CONFIGS, "small": SMALL, "ks": KS, "seeds": SEEDS,
                        "ablation": ABLATION, "lambdas": LAMBDAS, "selfsup": SELFSUP,
                        "threads": 1}
    results = data.setdefault("results", {})
    done = 0
    with tempfile.TemporaryDirectory() as tmp:
        for key, dataset, overrides in plan():
            if key in results or args.only not in key:
                continue
            if args.max_runs is not None and done >= args.max_runs:
                break
            res = one(key, dataset, overrides, Path(tmp))
            results[key] = res
            done += 1
            OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            f1 = {m: round(v.get("f1", float("nan")), 3) for m, v in res["models"].items()}
            print(f"{key}: {res['wall_seconds']:.1f}s, acc {res['task_accuracy']:.3f}, f1 {f1}",
                  flush=True)
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
