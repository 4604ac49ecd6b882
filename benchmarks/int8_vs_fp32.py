"""int8 vs fp32 on one trained model: file size, ONNX Runtime latency and Fashion-MNIST test accuracy.

    python benchmarks/int8_vs_fp32.py [--artifact DIR] [--epochs 1] [--train-subset 10000] [--runs 200] [--json]

The model is a zoo artifact when ``--artifact`` is given (the reported figures use the bundled
``menas_zoo/hub/bundled/mt-test``, 83.7% test accuracy); otherwise a small genotype is trained here for one
epoch on 10k images, which is only enough to exercise the path (its accuracy is low). Then: export (dynamo,
opset 18), static int8 QDQ with per-channel weights calibrated on 512 training images, and the comparison that
``menas-zoo export --int8`` prints (full 10k test set, batch 1 and 32, 1 thread).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from menas_zoo.artifact import load_artifact
from menas_zoo.costs import genotype_cost, human
from menas_zoo.data import load_dataset, load_splits
from menas_zoo.export import compare_int8, export_onnx, machine_fingerprint, quantize_int8, real_images
from menas_zoo.nets import build_model
from menas_zoo.space import resolve_genotype
from menas_zoo.train import TrainConfig, train

GENOTYPE = ("stem16 / k3_h32_c24_s1_re / k5_h72_c32_s2_se_hs,k3_h96_c32_s1_hs / "
            "k5_h96_c64_s2_se_hs,k3_h192_c64_s1_hs / "
            "k3_h192_c80_s1_se_hs / k5_h240_c96_s2_se_hs / head384")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.artifact:
        artifact = load_artifact(args.artifact)
        model, spec = artifact.model, artifact.config["input_spec"]
        mean, std = spec.get("mean"), spec.get("std")
    else:
        torch.manual_seed(0)
        model = build_model(resolve_genotype(GENOTYPE))
        splits = load_splits("fashion-mnist", train_subset=args.train_subset)
        train(model, splits, TrainConfig(epochs=args.epochs, device="cpu"), desc="train (for int8 benchmark)")
        mean = std = None
    model.eval()
    test, train_set = load_dataset("fashion-mnist", split="test"), load_dataset("fashion-mnist", split="train")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(export_onnx(model, Path(tmp) / "model.onnx").path)
        int8 = quantize_int8(fp32, Path(tmp) / "model.int8.onnx", real_images(train_set, 512, mean=mean, std=std))
        images = real_images(test, len(test), mean=mean, std=std)
        for batch in (1, 32):
            rows[batch] = compare_int8(fp32, int8, images, test.labels, batch_size=batch, runs=args.runs)
    cost = genotype_cost(model.genotype)
    if args.json:
        print(json.dumps({"genotype": model.genotype.to_compact(), "params": cost.params, "macs": cost.macs,
                          "machine": machine_fingerprint(), **{f"batch_{b}": c.as_dict() for b, c in rows.items()}},
                         indent=2))
        return
    c1, c32 = rows[1], rows[32]
    print(f"model: {model.genotype.to_compact()} ({human(cost.params)} params, {human(cost.macs)} MACs)")
    print(f"{'':24}{'fp32':>12}{'int8':>12}{'change':>16}")
    print(f"{'size (MB)':24}{c1.fp32_bytes / 1e6:>12.3f}{c1.int8_bytes / 1e6:>12.3f}"
          f"{c1.int8_bytes / c1.fp32_bytes:>15.2f}x")
    for c in (c1, c32):
        print(f"{f'ORT p50 ms, batch {c.batch_size}':24}{c.fp32_p50_ms:>12.3f}{c.int8_p50_ms:>12.3f}"
              f"{c.speedup:>15.2f}x" + (" (faster)" if c.speedup > 1 else " (slower)"))
    print(f"{'test accuracy (10k)':24}{c1.fp32_accuracy:>12.4f}{c1.int8_accuracy:>12.4f}"
          f"{c1.accuracy_change * 100:>+13.2f} pts")
    for c in (c1, c32):
        print(f"batch {c.batch_size}: recommended {c.recommended}"
              + (f" ({'; '.join(c.reasons)})" if c.reasons else ""))
    m = machine_fingerprint()
    print(f"machine: {m['cpu']}, {m['usable_cores']} usable cores, load {m['load_average']}; "
          f"onnxruntime {m['onnxruntime']}")


if __name__ == "__main__":
    main()
