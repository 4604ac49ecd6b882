"""Training throughput: menas-zoo's loop against a bare PyTorch loop, same model, data and optimizer.

    python benchmarks/train_throughput.py [--genotype G] [--images 5120] [--epochs 3] [--rounds 2] [--json]

Rows (images/s over the training steps of one epoch; the first epoch of each run is warm-up, and each
variant keeps its best epoch over ``--rounds`` interleaved rounds, as timeit advises, so that a burst of
load elsewhere on the machine does not decide the comparison):
  bare            a minimal loop over pre-normalized tensors (no augmentation, no hooks, no progress bar)
  ours            menas_zoo.train.train with augmentation off: the loop's own overhead against bare
  ours + augment  the default per-sample crop/flip/erasing on the batch, as real training runs it
  ... NCHW        the same two without channels_last, to show what the memory format buys on CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch import nn

from menas_zoo.costs import genotype_cost, human
from menas_zoo.data import Augment, load_splits
from menas_zoo.nets import build_model
from menas_zoo.space import resolve_genotype
from menas_zoo.train import TrainConfig, make_optimizer, train

DEFAULT = ("stem16 / k3_h32_c24_s1_re / k5_h72_c32_s2_se_hs,k3_h96_c32_s1_hs / k5_h96_c64_s2_se_hs,k3_h192_c64_s1_hs / "
           "k3_h192_c80_s1_se_hs / k5_h240_c96_s2_se_hs / head384")


def bare_loop(genotype, splits, cfg: TrainConfig) -> float:
    torch.manual_seed(cfg.seed)
    model = build_model(genotype).train()
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    mean, std = splits.train.mean[0], splits.train.std[0]
    images = ((splits.train.images.float() / 255 - mean) / std).contiguous(memory_format=fmt)
    labels = splits.train.labels
    optimizer = make_optimizer(model, cfg)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    n, bs = len(labels), cfg.batch_size
    rates = []
    for _ in range(cfg.epochs):
        order = torch.randperm(n)
        start = time.perf_counter()
        for i in range(n // bs):
            idx = order[i * bs:(i + 1) * bs]
            loss = criterion(model(images[idx].contiguous(memory_format=fmt)), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        rates.append((n // bs) * bs / (time.perf_counter() - start))
    return max(rates[1:] or rates)


def ours(genotype, splits, cfg: TrainConfig) -> float:
    torch.manual_seed(cfg.seed)
    result = train(build_model(genotype), splits, cfg, progress=False)
    rates = [h["images_per_s"] for h in result.history]
    return max(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genotype", default=DEFAULT, help="genotype (file, reference or one-line form)")
    parser.add_argument("--images", type=int, default=5120, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each variant keeps its best")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    genotype = resolve_genotype(args.genotype)
    splits = load_splits(val_size=256, train_subset=args.images)
    variants = {}
    for channels_last in (True, False):
        fmt = "" if channels_last else " NCHW"
        base = dict(epochs=args.epochs, batch_size=args.batch_size, channels_last=channels_last, device="cpu")
        variants[f"bare{fmt}"] = (bare_loop, TrainConfig(**base, augment=None))
        variants[f"ours{fmt}"] = (ours, TrainConfig(**base, augment=None))
        variants[f"ours + augment{fmt}"] = (ours, TrainConfig(**base, augment=Augment()))
    best = dict.fromkeys(variants, 0.0)
    for _ in range(args.rounds):
        for name, (run, cfg) in variants.items():
            best[name] = max(best[name], run(genotype, splits, cfg))
    rows = [(name, rate, best["bare NCHW" if name.endswith("NCHW") else "bare"]) for name, rate in best.items()]

    cost = genotype_cost(genotype)
    info = {"genotype": genotype.to_compact(), "params": cost.params, "macs": cost.macs, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "images": args.images, "batch_size": args.batch_size}
    if args.json:
        print(json.dumps({**info, "rows": [{"variant": n, "images_per_s": r, "vs_bare": r / b} for n, r, b in rows]},
                         indent=2))
        return
    print(f"model: {human(cost.params)} params, {human(cost.macs)} MACs; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batch {args.batch_size}, {args.images} images/epoch")
    print(f"{'variant':<22}{'images/s':>10}{'vs bare':>10}")
    for name, rate, bare in rows:
        print(f"{name:<22}{rate:>10.0f}{rate / bare:>10.2f}")
    cl = {n: r for n, r, _ in rows}
    print(f"channels_last speed-up (ours): {cl['ours'] / cl['ours NCHW']:.2f}x")


if __name__ == "__main__":
    main()
