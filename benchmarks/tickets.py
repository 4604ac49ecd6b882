"""Do trial-length tickets prune what matters? BN sparsity, Early-Bird and the real prune fraction.

The dense part of a ticket trial as a search runs it (AdamW, ``--epochs`` passes over ``--images``
training images) on sampled ``tiny`` genotypes under a params limit, three ways: no sparsity, the published L1 term in
the loss (lambda 1e-4), and the calibrated BN shrink the search uses. For each: the spread of the prunable
|gamma| (does it separate?), how far the 20% mask is from the no-sparsity one (does the penalty decide
anything?), the fraction really pruned after rounding to multiples of 8, dense vs ticket validation
accuracy after BN recalibration, and the epoch at which Early-Bird would have stopped.

    python benchmarks/tickets.py --genotypes 3
"""

from __future__ import annotations

import argparse
import statistics

import torch

from menas_zoo.data import load_splits
from menas_zoo.nets import build_model
from menas_zoo.search.ticket import make_ticket
from menas_zoo.search.trial import EarlyBird
from menas_zoo.slim import channel_masks, hidden_bns
from menas_zoo.space import sample_genotype
from menas_zoo.train import TrainConfig, evaluate, recalibrate_bn, train

VARIANTS = {"none": {}, "L1 1e-4 (loss)": {"bn_l1": 1e-4}, "shrink 0.5": {"bn_shrink": 0.5}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genotypes", type=int, default=3)
    parser.add_argument("--max-params", type=float, default=1.25e5)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--prune-ratio", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_splits("fashion-mnist", val_size=2000, seed=0, train_subset=args.images)

    print(f"{'genotype':>8} {'sparsity':<16} {'|g| p10':>7} {'p50':>6} {'p90':>6} {'<0.05':>6} {'mask vs none':>12} "
          f"{'pruned':>7} {'dense':>6} {'ticket':>6} {'EB stop':>7}")
    gaps: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for g in range(args.genotypes):
        genotype = sample_genotype("tiny", 100 + g, max_params=int(args.max_params))
        reference = None
        for name, sparsity in VARIANTS.items():
            torch.manual_seed(g)
            model = build_model(genotype)
            early_bird = EarlyBird(args.prune_ratio, window=2, threshold=0.1)
            stops: list[int] = []

            def hook(epoch, net, metrics, early_bird=early_bird, stops=stops):
                if early_bird(epoch, net, metrics) and not stops:
                    stops.append(epoch)
                return False  # run every epoch, to see where Early-Bird would have stopped

            cfg = TrainConfig(epochs=args.epochs, batch_size=128, optimizer="adamw", seed=g, device="cpu", **sparsity)
            train(model, splits, cfg, on_epoch_end=hook, progress=False, validate="none")
            gammas = torch.cat([bn.weight.detach().abs() for bn in hidden_bns(model).values()])
            mask = torch.cat(list(channel_masks(model, args.prune_ratio, multiple_of=1).values()))
            if reference is None:
                reference = mask
            recalibrate_bn(model, splits.train, batches=10)
            dense = evaluate(model, splits.val)["acc"]
            ticket = make_ticket(model, splits, prune_ratio=args.prune_ratio)
            tacc = evaluate(ticket.model, splits.val)["acc"]
            gaps[name].append(tacc - dense)
            q = torch.quantile(gammas, torch.tensor([0.1, 0.5, 0.9])).tolist()
            print(f"{g:>8} {name:<16} {q[0]:>7.3f} {q[1]:>6.3f} {q[2]:>6.3f} {(gammas < 0.05).float().mean():>6.1%} "
                  f"{(mask != reference).float().mean():>12.1%} {ticket.pruned_fraction:>7.1%} {dense:>6.3f} "
                  f"{tacc:>6.3f} {stops[0] if stops else '-':>7}")
    print("\nmean ticket - dense accuracy: " + ", ".join(f"{k} {statistics.mean(v):+.4f}" for k, v in gaps.items()))


if __name__ == "__main__":
    main()
