"""MENAS vs regularized evolution vs random search under the same wall-clock budget, on Fashion-MNIST.

For every strategy and seed, one search runs for ``--budget-minutes`` (in this process, one after the
other, so they share the machine equally). Reported, from each run's trials.jsonl and state.json:

* best validation accuracy under the MACs limit (a hard limit: no trial exceeds it);
* time to reach the best that ``evolution`` reached in its whole budget (same seed), in minutes and as a
  fraction of the budget (the target for MENAS is <= 60%);
* trials per minute;
* MENAS's population mean MACs per generation (it should fall while the best fitness does not).

    python benchmarks/search_ablation.py --budget-minutes 3 --seeds 0 1 2 --out /tmp/ablation

The numbers depend on the machine and its load; the script prints what it measured, nothing else.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from menas_zoo.data import load_splits
from menas_zoo.search import SearchConfig, run_search
from menas_zoo.space.sampling import SearchProfile

#: A 28 px space sized for CPU searches: four stages at 14/7/7/4 px, networks of about 1-4 M MACs.
BENCH_PROFILE = SearchProfile(
    name="small", resolution=28, stage_strides=(2, 2, 1, 2), base_widths=(16, 24, 32, 48), max_depth=2,
    stem_choices=(8, 16), head_choices=(64, 128), fc_choices=(0, 128), kernels=(3, 5, 7),
    expansions=(1, 2, 3, 4), width_mults=(0.5, 0.75, 1.0, 1.5),
)


def time_to_reach(trials: list[dict], target: float) -> float | None:
    """Run time (s) at which the first trial reached ``target`` fitness, or None."""
    hits = [t["elapsed"] for t in trials if t["fitness"] >= target - 1e-12]
    return min(hits) if hits else None


def run_one(strategy: str, seed: int, args, splits, root: Path) -> dict:
    out = root / f"{strategy}-seed{seed}"
    cfg = SearchConfig(strategy=strategy, profile=BENCH_PROFILE, population=args.population, generations=1000,
                       epochs=args.epochs, eb_window=args.eb_window, train_subset=args.train_subset,
                       val_size=args.val_size, max_macs=int(args.max_macs), budget_minutes=args.budget_minutes,
                       batch_size=args.batch_size, seed=seed, device=args.device)
    started = time.perf_counter()
    result = run_search(cfg, out, splits=splits)
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    return {"strategy": strategy, "seed": seed, "out": str(out), "wall_s": time.perf_counter() - started,
            "trials": trials, "history": result.state.history, "elapsed": result.state.elapsed}


def summarize(runs: list[dict], budget_s: float) -> list[dict]:
    evolution_best = {r["seed"]: max(t["fitness"] for t in r["trials"]) for r in runs if r["strategy"] == "evolution"}
    rows = []
    for strategy in dict.fromkeys(r["strategy"] for r in runs):
        mine = [r for r in runs if r["strategy"] == strategy]
        best = [max(t["accuracy"] for t in r["trials"]) for r in mine]
        reach = [time_to_reach(r["trials"], evolution_best[r["seed"]]) if r["seed"] in evolution_best else None
                 for r in mine]
        rows.append({
            "strategy": strategy,
            "best_acc_mean": statistics.mean(best), "best_acc_std": statistics.pstdev(best), "best_acc": best,
            "trials_per_min": statistics.mean(60 * len(r["trials"]) / r["elapsed"] for r in mine),
            "trials": [len(r["trials"]) for r in mine],
            "reach_evolution_best_s": reach,
            "reach_fraction": [None if s is None else s / budget_s for s in reach],
            "mean_macs_per_generation": [[round(h["mean_macs"]) for h in r["history"]] for r in mine],
            "best_fitness_per_generation": [[round(h["best_fitness"], 4) for h in r["history"]] for r in mine],
        })
    return rows


def print_table(rows: list[dict], budget_s: float) -> None:
    print(f"\nbudget {budget_s / 60:.1f} min per run; time to evolution's best as % of the budget (per seed)")
    print(f"{'strategy':<10} {'best val acc':>16} {'trials':>12} {'trials/min':>10}  time to evolution's best")
    for r in rows:
        reach = ", ".join("never" if f is None else f"{100 * f:.0f}%" for f in r["reach_fraction"])
        print(f"{r['strategy']:<10} {r['best_acc_mean']:.4f} ± {r['best_acc_std']:.4f} "
              f"{'/'.join(map(str, r['trials'])):>12} {r['trials_per_min']:>10.2f}  {reach}")
    for r in rows:
        for seed, (macs, fit) in enumerate(zip(r["mean_macs_per_generation"], r["best_fitness_per_generation"])):
            print(f"{r['strategy']} run {seed}: population mean MACs/gen {[f'{m / 1e6:.2f}M' for m in macs]} "
                  f"best fitness/gen {fit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", nargs="+", default=["menas", "evolution", "random"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget-minutes", type=float, default=3.0)
    parser.add_argument("--max-macs", type=float, default=2e6)
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--eb-window", type=int, default=2,
                        help="Early-Bird window; with a 3-epoch cap the default 5 could never fire")
    parser.add_argument("--train-subset", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_splits("fashion-mnist", val_size=args.val_size, seed=0, train_subset=args.train_subset)
    runs = []
    for seed in args.seeds:  # interleave strategies so machine load drifts hit them alike
        for strategy in args.strategies:
            print(f"running {strategy} seed {seed} for {args.budget_minutes} min ...", flush=True)
            runs.append(run_one(strategy, seed, args, splits, args.out))
            best = max(t["accuracy"] for t in runs[-1]["trials"])
            print(f"  {len(runs[-1]['trials'])} trials, best val acc {best:.4f}", flush=True)
    budget_s = args.budget_minutes * 60
    rows = summarize(runs, budget_s)
    print_table(rows, budget_s)
    (args.out / "ablation.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                         "summary": rows}, indent=2))


if __name__ == "__main__":
    main()
