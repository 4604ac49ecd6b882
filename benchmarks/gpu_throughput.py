"""Our training loop against bare PyTorch loops on whatever device is present, and search trials/min.

For each batch size: a bare loop (data already on the device, the same model, AdamW, mixed precision
on CUDA, channels_last) and ``menas_zoo.train.train`` with the same settings, in images/s over the best
of ``--rounds`` warm epochs; then a short search on the device (trials per minute). It states the
device, torch version and precision.

    python benchmarks/gpu_throughput.py --batch-sizes 256 1024 4096 --images 60000   # on a GPU
    python benchmarks/gpu_throughput.py --batch-sizes 128 --images 2048 --search-minutes 0   # CPU smoke
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from menas_zoo.data import Augment, DataSplits, load_dataset
from menas_zoo.nets import build_model
from menas_zoo.space import resolve_genotype
from menas_zoo.train import TrainConfig, resolve_device, train

#: The 98K-param, 12.3M-MAC tiny-profile genotype the GPU issue measured.
GENOTYPE = ("stem16 / k7_h96_c16_s1_se_re,k7_h48_c16_s1_re / k3_h64_c8_s2_se_re / k3_h8_c48_s2_re,k3_h288_c48_s1_hs / "
            "k3_h48_c16_s1_hs / k5_h80_c96_s2_se_re / head64 / fc256")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(images, labels, batch: int, device: torch.device, rounds: int) -> float:
    model = build_model(resolve_genotype(GENOTYPE)).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    x_all = (images.to(device).float() / 255 - 0.286) / 0.353
    y_all = labels.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    best = 0.0
    for _ in range(rounds + 1):  # the first round warms up
        synchronize(device)
        started = time.perf_counter()
        for i in range(len(y_all) // batch):
            x = x_all[i * batch:(i + 1) * batch].contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(x), y_all[i * batch:(i + 1) * batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(device)
        best = max(best, (len(y_all) // batch) * batch / (time.perf_counter() - started))
    return best


def our_loop(splits: DataSplits, batch: int, device: torch.device, rounds: int, augment: bool) -> float:
    model = build_model(resolve_genotype(GENOTYPE))
    cfg = TrainConfig(epochs=rounds + 1, batch_size=batch, optimizer="adamw", device=str(device),
                      augment=Augment() if augment else None)
    result = train(model, splits, cfg, progress=False, validate="none")
    return max(h["images_per_s"] for h in result.history[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--search-minutes", type=float, default=2.0)
    args = parser.parse_args()
    device = resolve_device(args.device)
    full = load_dataset("fashion-mnist", split="train")
    data = full.subset(torch.arange(min(args.images, len(full))))
    splits = DataSplits(train=data, val=full.subset(torch.arange(0)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    print(f"{name}, torch {torch.__version__}, {precision}, channels_last, {len(data)} images an epoch\n")
    print(f"{'batch':>6} {'bare img/s':>11} {'ours img/s':>11} {'ours/bare':>9} {'ours+aug img/s':>15}")
    for batch in args.batch_sizes:
        bare = bare_loop(data.images, data.labels, batch, device, args.rounds)
        ours = our_loop(splits, batch, device, args.rounds, augment=False)
        augmented = our_loop(splits, batch, device, args.rounds, augment=True)
        print(f"{batch:>6} {bare:>11,.0f} {ours:>11,.0f} {ours / bare:>9.2f} {augmented:>15,.0f}")

    if args.search_minutes > 0:
        import tempfile

        from menas_zoo.search import SearchConfig, run_search

        with tempfile.TemporaryDirectory() as tmp:
            cfg = SearchConfig(profile="tiny", max_params=100_000, population=8, generations=100, epochs=6,
                               budget_minutes=args.search_minutes, device=str(device))
            result = run_search(cfg, f"{tmp}/run", write_report=False)
            trials = len(result.state.trials)
            print(f"\nsearch, tiny profile, params <= 100K, 6 proxy epochs on the full training set: {trials} trials "
                  f"in {result.state.elapsed / 60:.1f} min ({trials / (result.state.elapsed / 60):.2f} trials/min)")


if __name__ == "__main__":
    main()
