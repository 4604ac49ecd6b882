"""The per-block latency table's predictor against measured whole-network latency, on sampled genotypes.

    python benchmarks/latency_table.py [--genotypes 20] [--seed 100] [--runs 100] [--table FILE] [--json]

Builds (or extends) this machine's table for every part of N genotypes sampled from the ``small`` profile,
then measures each whole network in ONNX Runtime (batch 1, 1 thread, same exporter and settings as the
parts) and reports the predictor's error: median and worst absolute error, and the mean signed error
(positive: the table over-predicts). The same thing as ``menas-zoo bench --per-block``, as a script.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from menas_zoo.costs import genotype_cost, human
from menas_zoo.export import LatencyTable, build_latency_table, evaluate_predictor
from menas_zoo.space import sample_genotype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genotypes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=100,
                        help="first sampling seed (kept apart from the other benchmarks')")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", type=Path, default=None, help="table file to write (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    genotypes = [sample_genotype("small", args.seed + i) for i in range(args.genotypes)]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.table or Path(tmp) / "latency_table.json"
        table = LatencyTable.load(path) if path.exists() else None
        table = build_latency_table(genotypes, table=table, threads=args.threads, runs=args.runs, progress=True)
        table.save(path)
        result = evaluate_predictor(table, genotypes, progress=True)
    if args.json:
        print(json.dumps({"parts": len(table.entries), "machine": table.meta["machine"], **result}, indent=2))
        return
    print(f"{'seed':>5}  {'MACs':>8}  {'predicted ms':>12}  {'measured ms':>11}  {'error':>7}")
    for i, (g, row) in enumerate(zip(genotypes, result["networks"])):
        print(f"{args.seed + i:>5}  {human(genotype_cost(g).macs):>8}  {row['predicted_ms']:>12.3f}  "
              f"{row['measured_ms']:>11.3f}  {row['error_pct']:>+6.1f}%")
    m = table.meta["machine"]
    print(f"\n{len(table.entries)} parts; predictor error on {len(genotypes)} networks: median "
          f"{result['median_abs_error_pct']:.1f}%, worst {result['worst_abs_error_pct']:.1f}%, mean signed "
          f"{result['mean_error_pct']:+.1f}% (batch 1, {args.threads} thread(s), {args.runs} runs per part "
          "and network)")
    print(f"machine: {m['cpu']}, {m['usable_cores']} usable cores, load {m['load_average']}; onnxruntime "
          f"{m['onnxruntime']}, torch {m['torch']}")


if __name__ == "__main__":
    main()
