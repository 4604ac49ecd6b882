"""Export latency: lottery tickets vs their dense parents vs torchvision's MobileNetV3-Small, in ONNX Runtime
and eager PyTorch, on this machine.

    python benchmarks/export_latency.py [--genotypes 3] [--prune-ratio 0.2] [--runs 100] [--rounds 2] [--json]

Models: for each of N genotypes sampled from the ``tiny`` profile, the zoo's size classes (``--profile small``
for MobileNetV3-Large-sized ones; until the zoo holds trained winners), the
dense parent, its lottery ticket (``slim.channel_masks`` + ``slim.materialize``: physically narrower, each
block's kept count rounded to a multiple of 8), and the same ticket cut at the exact global threshold with
odd widths (``-ticket-odd``); then torchvision's
``mobilenet_v3_small(num_classes=10)`` with its first conv taking 1 channel, all at 1x28x28.

Why ``-ticket-odd``: ONNX Runtime's fastest CPU convolutions run in a blocked channel layout (NCHWc, 8 channels
per block on AVX2) that its graph optimizer only uses when channel counts are multiples of the block size.
A ticket with odd widths falls off that path and can be slower than its wider parent; this table shows why
slimming rounds kept counts.
Latency depends on the widths that survive, not on trained values, so the tickets are cut from parents
whose BN gammas are drawn at random (seeded), as after slimming the gammas spread out.

Each model is exported the way ``menas-zoo export`` does it (dynamo, opset 18, dynamic batch) and checked for
parity on real test images. Columns: params, MACs, ORT p50/p90 at batch 1 and 32 (1 thread), eager p50 at
batch 1, ORT/eager at batch 1 (latency ratio: below 1 means ORT is faster), ticket/parent (ORT p50,
batch 1). The machine is shared and noisy: every configuration is measured in ``--rounds`` interleaved
rounds (parent, ticket, parent, ticket, ...) and the round with the lowest p50 is kept, as ``timeit``
advises, so a burst of load elsewhere does not decide a comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from menas_zoo.costs import genotype_cost, human
from menas_zoo.data import load_dataset
from menas_zoo.export import bench_eager, bench_onnx, check_parity, export_onnx, machine_fingerprint, real_images
from menas_zoo.nets import build_model
from menas_zoo.slim import channel_masks, hidden_bns, materialize
from menas_zoo.space import sample_genotype

BATCHES = (1, 32)
SHAPE = (1, 28, 28)


def torchvision_mobilenet_v3_small() -> nn.Module:
    model = torchvision.models.mobilenet_v3_small(num_classes=10)
    first = model.features[0][0]
    model.features[0][0] = nn.Conv2d(1, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False)
    return model.eval()


def count(model: nn.Module) -> tuple[int, int]:
    """Params and MACs (FLOPs / 2 at batch 1), counted as menas_zoo.costs counts genotypes."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *SHAPE))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def tickets_of(parent: nn.Module, prune_ratio: float, seed: int) -> tuple[nn.Module, nn.Module]:
    """The ticket as slim makes it (kept counts rounded to multiples of 8), and the same ticket cut at the
    exact global threshold (odd widths), to show what the rounding buys in ONNX Runtime."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in hidden_bns(parent).values():
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=gen).abs())
    rounded = channel_masks(parent, prune_ratio)
    exact = channel_masks(parent, prune_ratio, multiple_of=1)
    return materialize(parent, rounded).eval(), materialize(parent, exact).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genotypes", type=int, default=2, help="sampled genotypes (each gives a parent and a ticket)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="tiny", help="search profile the genotypes are sampled from")
    parser.add_argument("--prune-ratio", type=float, default=0.2, help="global fraction of hidden channels pruned")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per configuration and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the lowest-p50 round is kept")
    parser.add_argument("--exporter", default="dynamo")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    models: dict[str, nn.Module] = {}
    for i in range(args.genotypes):
        parent = build_model(sample_genotype(args.profile, args.seed + i)).eval()
        models[f"g{args.seed + i}-parent"] = parent
        ticket, unrounded = tickets_of(parent, args.prune_ratio, args.seed + i)
        models[f"g{args.seed + i}-ticket"], models[f"g{args.seed + i}-ticket-odd"] = ticket, unrounded
    models["torchvision-mnv3-small"] = torchvision_mobilenet_v3_small()

    test = load_dataset("fashion-mnist", split="test")
    images = real_images(test, 64)
    best: dict[tuple[str, str, int], object] = {}
    with tempfile.TemporaryDirectory(prefix="menas-zoo-bench-") as tmp:
        paths = {}
        for name, model in models.items():
            print(f"exporting {name}", file=sys.stderr)
            paths[name] = export_onnx(model, Path(tmp) / f"{name}.onnx", exporter=args.exporter, input_shape=SHAPE).path
            check_parity(model, paths[name], images, batch_size=16)
        for round_ in range(args.rounds):
            for name, model in models.items():
                print(f"round {round_ + 1}/{args.rounds}: timing {name}", file=sys.stderr)
                stats = bench_onnx(paths[name], batch_sizes=BATCHES, runs=args.runs, warmup=10)
                stats += bench_eager(model, SHAPE, batch_sizes=(1,), runs=args.runs, warmup=5)
                for s in stats:
                    key = (name, s.runtime, s.batch_size)
                    if key not in best or s.p50_ms < best[key].p50_ms:
                        best[key] = s

    rows = []
    for name, model in models.items():
        params, macs = (count(model) if not hasattr(model, "genotype")
                        else genotype_cost(model.genotype).as_dict().values())
        ort1, ort32 = best[(name, "onnxruntime", 1)], best[(name, "onnxruntime", 32)]
        eager1 = best[(name, "pytorch-eager", 1)]
        row = {"model": name, "params": params, "macs": macs, "ort_p50_b1": ort1.p50_ms, "ort_p90_b1": ort1.p90_ms,
               "ort_p50_b32": ort32.p50_ms, "ort_p90_b32": ort32.p90_ms, "eager_p50_b1": eager1.p50_ms,
               "ort_over_eager_b1": round(ort1.p50_ms / eager1.p50_ms, 3),
               "eager_speedup_b1": round(eager1.p50_ms / ort1.p50_ms, 1)}
        if "-ticket" in name:
            parent_name = name.split("-ticket")[0] + "-parent"
            parent, parent32 = best[(parent_name, "onnxruntime", 1)], best[(parent_name, "onnxruntime", 32)]
            row["ticket_over_parent_b1"] = round(ort1.p50_ms / parent.p50_ms, 3)
            row["ticket_over_parent_b32"] = round(ort32.p50_ms / parent32.p50_ms, 3)
        rows.append(row)

    config = {"runs": args.runs, "rounds": args.rounds, "threads": 1, "exporter": args.exporter, "opset": 18,
              "prune_ratio": args.prune_ratio, "profile": args.profile, "machine": machine_fingerprint()}
    if args.json:
        print(json.dumps({"config": config, "rows": rows}, indent=2))
        return
    header = ["model", "params", "MACs", "ORT p50 b1", "p90 b1", "ORT p50 b32", "p90 b32", "eager p50 b1",
              "ORT/eager b1", "ticket/parent b1", "ticket/parent b32"]
    table = [[r["model"], human(r["params"]), human(r["macs"]), f"{r['ort_p50_b1']:.3f}", f"{r['ort_p90_b1']:.3f}",
              f"{r['ort_p50_b32']:.2f}", f"{r['ort_p90_b32']:.2f}", f"{r['eager_p50_b1']:.3f}",
              f"{r['ort_over_eager_b1']:.3f} ({r['eager_speedup_b1']:.1f}x faster)",
              f"{r['ticket_over_parent_b1']:.3f}" if "ticket_over_parent_b1" in r else "-",
              f"{r['ticket_over_parent_b32']:.3f}" if "ticket_over_parent_b32" in r else "-"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    for line in [header, *table]:
        print("  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(line, widths))))
    m = config["machine"]
    print(f"\nms, 1 thread, best of {args.rounds} interleaved rounds x {args.runs} runs; {args.exporter} exporter, "
          f"opset 18; tickets prune {args.prune_ratio:.0%} of hidden channels")
    print(f"machine: {m['cpu']}, {m['usable_cores']} usable cores, load {m['load_average']}; onnxruntime "
          f"{m['onnxruntime']}, torch {m['torch']}, onnx {m['onnx']}")


if __name__ == "__main__":
    main()
