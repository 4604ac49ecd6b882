"""Does the search find better architectures? Every strategy and ablation under one wall-clock budget,
its winners retrained from scratch, and the rank correlation of search fitness with that retraining.

Rows: ``menas``, ``evolution`` (regularized evolution), ``random``, MENAS with each ingredient
switched (``no-tickets``, ``no-regrow``, ``weight-sharing``, ``no-keep-largest``, ``no-early-stop``,
``uniform-parents``),
``evolution-tickets``: MENAS's trial under regularized evolution's selection, and ``ticket-after``:
regularized evolution with plain trials under the limit / (1 - prune ratio), then the lottery tickets of
its top 3 cut once each after the search, pruned to fit the limit (those tickets are the row's winners;
its search gets ``1 - TICKET_RESERVE`` of the budget, so that search plus tickets take about the
budget, and its tickets' dense parents are retrained too, for the ticket minus parent gap from
scratch), ``early-ticket``: MENAS with its ticket cut after one dense epoch, and ``uniform-ticket`` and
``evolution-uniform``: tickets that prune every block by the same share (``--ticket-allocation
uniform``) under MENAS's and regularized evolution's selection, and ``ticket-steered``: regularized
evolution whose mutated children's widths follow their parent's ticket (``--steer``), and
``evolution-steered``: the same without the BN shrink, so that its trials are evolution's own, and
``steered-same-cost``: that with each steered child held to its mutation's params and MACs, and
``median-stop``: regularized evolution whose children under their parents' median after two epochs
stop there (``--median-stop``). Each row runs one
search per seed for ``--budget-minutes`` on the ``tiny`` profile under a zoo params limit. Then, with
one fixed recipe (``--retrain-epochs`` of AdamW from scratch, the same for every architecture):

* each run's top 3 trials by search fitness are retrained with every ``--train-seeds`` seed;
* more trials, spread over each run's fitness range, are retrained once, so that every row has at least
  ``--tau-trials`` (fitness, from-scratch accuracy) pairs for Kendall's tau.

From-scratch accuracy is measured on a **holdout** carved from the training set that neither the
searches' training nor their validation (fitness) images touch; the test split is never read. The table
puts search-time fitness and from-scratch accuracy side by side, with tau, how far a child's fitness
follows its parent's (``parent r``, Pearson over every bred trial), trials per minute, how much
sooner than the dense cap Early-Bird cut the tickets, the real prune fraction, the share of trial time
spent outside training, and the mean MACs of the children a row bred (generation 1 on): a costlier child
trains slower, so fewer of them fit the budget.

Everything is resumable: runs live in ``--out`` (a killed search resumes with what is left of its
budget) and every retraining is appended to ``retrain.jsonl`` as it finishes; the same command continues.
Rows that share a seed share their first trials (the same generation 0), and the recipe is deterministic
for a genotype and training seed, so a retraining some row already ran is copied, marked ``copied_from``,
rather than trained again.

``--cut-minutes`` asks what a shorter budget would have found, from the same searches: each run counts
only the trials it had finished by then, so the winners, top 3 and tau pool are those of the shorter
search (retrained as any other, sharing ``retrain.jsonl``), written to ``table-cutNmin.txt`` and
``ablation-cutNmin.json`` beside the full table. Rows whose winners are tickets cut after the whole
search cannot be cut.

    python benchmarks/search_ablation.py --out runs/ablation --rows menas evolution random --jobs 2

The defaults (2,000 training and 1,000 validation images, 3-epoch proxy) are sized so that a 12-minute
search on one CPU core runs a few generations; on a GPU raise them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROWS = {  # row -> SearchConfig settings
    "menas": {"strategy": "menas"},
    "evolution": {"strategy": "evolution"},
    "random": {"strategy": "random"},
    "no-tickets": {"strategy": "menas", "tickets": False},
    "no-regrow": {"strategy": "menas", "regrow": False},
    "weight-sharing": {"strategy": "menas", "weight_sharing": True},
    "no-keep-largest": {"strategy": "menas", "keep_largest": 0.0},
    "no-early-stop": {"strategy": "menas", "early_bird": False},
    # MENAS with its parents drawn uniformly from the survivors (as it was before parents had a tournament).
    "uniform-parents": {"strategy": "menas", "tournament": 1},
    # MENAS's trial (tickets, regrow, BN shrink, Early-Bird) under regularized evolution's selection: what the
    # tickets add to evolution, with the selection held the same.
    "evolution-tickets": {"strategy": "evolution", "tickets": True, "regrow": True, "bn_shrink": 0.5,
                          "early_bird": True},
    # Regularized evolution with plain trials under the limit / (1 - prune ratio), then the lottery tickets of
    # its top 3 cut once, after the search, each pruned to fit the limit: what the row delivers.
    "ticket-after": {"strategy": "evolution"},
    # MENAS with its ticket cut after one dense epoch (Early-Bird's masks settle early): the ticket trains
    # the rest of the trial, so the fitness measures the ticket more than its dense parent, and costs less.
    "early-ticket": {"strategy": "menas", "mask_epochs": 1},
    # Tickets that prune the same share of every block, so a child's ticket keeps the allocation of widths
    # its parent had (regrow widens every block by one factor): under MENAS's selection, and under
    # regularized evolution's (``evolution-tickets`` with that one change).
    "uniform-ticket": {"strategy": "menas", "ticket_allocation": "uniform"},
    "evolution-uniform": {"strategy": "evolution", "tickets": True, "regrow": True, "bn_shrink": 0.5,
                          "early_bird": True, "ticket_allocation": "uniform"},
    # The ticket as information, not as the candidate: regularized evolution's dense trials and selection,
    # with each mutated child's widths steered by its parent's ticket (``--steer``).
    "ticket-steered": {"strategy": "evolution", "steer": True, "bn_shrink": 0.5},
    # The same without the BN shrink: every trial trains and scores exactly as evolution's, and a search draws
    # the same children as evolution's with the same seed, so steering (by the ticket of raw |gamma|) is the
    # one difference.
    "evolution-steered": {"strategy": "evolution", "steer": True, "bn_shrink": 0.0},
    # And holding each steered child to the params and MACs its mutation gave it: steering alone made
    # children costlier (more MACs), so slower trials and fewer of them in a wall-clock budget.
    "steered-same-cost": {"strategy": "evolution", "steer": True, "bn_shrink": 0.0, "steer_keep_cost": True},
    # Regularized evolution with the median stopping rule: a child under its parents' median after two epochs
    # stops there, so more architectures fit the budget; those that go on train as evolution's.
    "median-stop": {"strategy": "evolution", "median_stop": True},
    # MENAS's selection alone (top-K + largest survivors, crossover) over evolution's own trials: no tickets,
    # no BN shrink, no Early-Bird. Generation 0 is evolution's, so the two differ in who survives and breeds.
    "menas-selection": {"strategy": "menas", "tickets": False, "bn_shrink": 0.0, "early_bird": False},
    # And only mutations, no largest kept: the fittest survive (mu + lambda) where evolution's youngest do, the
    # one difference left between the two.
    "elitist-evolution": {"strategy": "menas", "tickets": False, "bn_shrink": 0.0, "early_bird": False,
                          "crossover_rate": 0.0, "keep_largest": 0.0},
}
#: Rows whose winners are the tickets of their top trials, cut after the search (``cut_winner_tickets``).
WINNER_TICKETS = {"ticket-after": 3}
#: Share of such a row's wall-clock budget kept for cutting its tickets, so that the row's search plus its
#: tickets take about the budget the other rows' searches take.
TICKET_RESERVE = 0.25
TICKETS_FILE = "winner-tickets.jsonl"
#: A ticket cut after the search is recorded as trial TICKET_INDEX + its parent's index.
TICKET_INDEX = 100_000


# -- data: one fixed split of the 60k training images, the same for every run --------------------------

def make_splits(args):
    """``(search_splits, retrain_splits)``: search train + validation, and retrain train + holdout; the
    holdout is disjoint from every image the searches saw."""
    import torch

    from menas_zoo.data import DataSplits, load_dataset

    full = load_dataset("fashion-mnist", split="train")
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(args.data_seed))
    holdout = order[:args.holdout]
    val = order[args.holdout:args.holdout + args.val_size]
    train = order[args.holdout + args.val_size:args.holdout + args.val_size + args.train_subset]
    search = DataSplits(train=full.subset(train), val=full.subset(val))
    retrain = DataSplits(train=full.subset(train), val=full.subset(holdout))
    return search, retrain


# -- stage 1: searches ---------------------------------------------------------------------------------

def search_config(row: str, seed: int, args, **settings):
    from menas_zoo.search import SearchConfig

    return SearchConfig(**{"mask_epochs": args.mask_epochs, **ROWS[row], **settings}, profile="tiny",
                        population=args.population, generations=1000, epochs=args.epochs,
                        batch_size=args.batch_size, seed=seed,
                        device=args.device, val_size=args.val_size, train_subset=args.train_subset)


def run_search_job(row: str, seed: int, args) -> str:
    import torch

    from menas_zoo.search import run_search
    from menas_zoo.search.state import RunState

    torch.set_num_threads(args.threads)
    out = args.out / "runs" / f"{row}-seed{seed}"
    search, _ = make_splits(args)
    budget, max_params = args.budget_minutes, int(args.max_params)
    if row in WINNER_TICKETS:  # the search runs under the limit its tickets are pruned to fit
        budget *= 1 - TICKET_RESERVE
        max_params = int(max_params * search_config(row, seed, args).unprune_factor)
    if (out / "state.json").exists():
        state = RunState.load(out)
        left = budget - state.elapsed / 60
        if left > 0.05 and not state.finished:
            run_search(None, out, resume=True, splits=search, overrides={"budget_minutes": left})
        del state
    else:
        run_search(search_config(row, seed, args, max_params=max_params, budget_minutes=budget), out, splits=search)
    trials = read_trials(out)
    if not trials:
        return f"{row} seed {seed}: no trial finished in {budget:g} minutes"
    message = f"{row} seed {seed}: {len(trials)} trials, best fitness {max(t['fitness'] for t in trials):.4f}"
    if row in WINNER_TICKETS:
        tickets = cut_winner_tickets(row, seed, args, search)
        fitness = [round(t["fitness"], 4) for t in tickets]
        message += f"; tickets of trials {[t['parent'] for t in tickets]}: fitness {fitness}"
    return message


def cut_winner_tickets(row: str, seed: int, args, search) -> list[dict]:
    """The lottery tickets of a run's top trials, each cut once after the search: MENAS's trial (dense epochs
    with calibrated BN shrink until Early-Bird or the cap, the ticket pruned to fit the limit, then trained
    the remaining epochs) from a fresh initialization of the winner, scored as every trial is. Appended to
    the run's winner-tickets.jsonl as each finishes."""
    from menas_zoo.search.evolution import Candidate
    from menas_zoo.search.run import cost_limits, trial_record
    from menas_zoo.search.trial import TrialJob, run_trial
    from menas_zoo.space.genotype import Genotype

    out = args.out / "runs" / f"{row}-seed{seed}"
    cfg = search_config("menas", seed, args, max_params=int(args.max_params))  # MENAS's trial, the row's limit
    path = out / TICKETS_FILE
    done = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    ranked = sorted((t for t in read_trials(out) if t.get("feasible", True)), key=lambda t: (-t["fitness"], t["index"]))
    for parent in ranked[:WINNER_TICKETS[row]]:
        if any(t["parent"] == parent["index"] for t in done):
            continue
        candidate = Candidate(TICKET_INDEX + parent["index"], -1, Genotype.from_dict(parent["genotype"]), "ticket",
                              parent["index"])
        outcome = run_trial(TrialJob(candidate), search, cfg)
        record = trial_record(outcome, cost_limits(cfg), outcome.seconds).to_dict()
        done.append(record)
        with path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    return done



# -- stage 2: retraining from scratch --------------------------------------------------------------------

def read_trials(out: Path, tickets: bool = False, cut_minutes: float | None = None) -> list[dict]:
    """A run's trials; with ``tickets``, the tickets cut after its search instead. With ``cut_minutes``, only
    the trials the search had finished by then, as if its budget had been that."""
    path = out / (TICKETS_FILE if tickets else "trials.jsonl")
    trials = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [t for t in trials if t["elapsed"] <= 60 * cut_minutes] if cut_minutes and not tickets else trials


def winners(row: str, trials: list[dict], tickets: list[dict]) -> list[dict]:
    """A run's top 3 by search fitness: among its trials, or for a winner-tickets row its tickets."""
    pool = tickets if row in WINNER_TICKETS else trials
    return sorted((t for t in pool if t.get("feasible", True)), key=lambda t: (-t["fitness"], t["index"]))[:3]


def plan_retraining(args) -> list[tuple[str, int, int, int]]:
    """``(row, search seed, trial, train seed)`` to retrain: top 3 x every train seed, plus a spread over
    each run's fitness range for tau. Ordered by what the table needs most, so a run cut short still
    compares the winners: every winner with every train seed, then the rest of the top 3 and the
    spread with the first train seed, then the top 3 with the other seeds."""
    tiers: list[list[tuple[str, int, int, int]]] = [[], [], []]
    per_run = -(-args.tau_trials // len(args.seeds))  # trials per run for the tau pool
    first, others = args.train_seeds[0], args.train_seeds[1:]
    for seed in args.seeds:
        for row in args.rows:
            out = args.out / "runs" / f"{row}-seed{seed}"
            trials = [t for t in read_trials(out, cut_minutes=args.cut_minutes) if t.get("feasible", True)]
            ranked = sorted(trials, key=lambda t: (-t["fitness"], t["index"]))
            top = winners(row, trials, read_trials(out, tickets=True))
            # A winner-tickets row also retrains its tickets' dense parents (ticket vs parent, from scratch).
            parents = ranked[:3] if row in WINNER_TICKETS else []
            rest = ranked[3:]
            extra = max(0, per_run - len(top) - len(parents))
            step = len(rest) / extra if extra and rest else 0
            spread = [rest[int(i * step)] for i in range(min(extra, len(rest)))]
            tiers[0] += [(row, seed, top[0]["index"], s) for s in args.train_seeds] if top else []
            tiers[1] += [(row, seed, t["index"], first) for t in top[1:] + parents + spread]
            tiers[2] += [(row, seed, t["index"], s) for t in top[1:] for s in others]
    return [job for tier in tiers for job in tier]


def planned_trial(row: str, seed: int, trial: int, args) -> dict:
    """The trial (or, for a winner-tickets row, the ticket) a planned retraining trains."""
    out = args.out / "runs" / f"{row}-seed{seed}"
    return next(t for t in read_trials(out) + read_trials(out, tickets=True) if t["index"] == trial)


def retraining_key(row: str, seed: int, trial: int, train_seed: int, args) -> tuple[str, int]:
    """A retraining's genotype (canonical JSON) and training seed: retrainings with the same key are the
    same computation."""
    return json.dumps(planned_trial(row, seed, trial, args)["genotype"], sort_keys=True), train_seed


def share_retrainings(todo: list[tuple], done: list[dict], args) -> tuple[list[tuple], list[tuple]]:
    """Split planned retrainings into ``(to run, to copy)``: one whose key is already retrained, or planned
    earlier in ``todo``, is copied from that one instead of trained twice."""
    seen = {retraining_key(r["row"], r["seed"], r["trial"], r["train_seed"], args) for r in done}
    run, copy = [], []
    for job in todo:
        key = retraining_key(*job, args)
        (copy if key in seen else run).append(job)
        seen.add(key)
    return run, copy


def copied_retraining(job: tuple, source: dict, args) -> dict:
    """``job``'s result: the holdout accuracy of ``source``, the retraining of the same genotype and training
    seed, with ``job``'s own trial (its search fitness may differ: rows score trials differently)."""
    row, seed, trial, _ = job
    record = planned_trial(row, seed, trial, args)
    return {**source, "row": row, "seed": seed, "trial": trial, "fitness": record["fitness"],
            "params": record["params"], "macs": record["macs"], "seconds": 0.0,
            "copied_from": [source["row"], source["seed"], source["trial"]]}


def retrain_job(row: str, seed: int, trial: int, train_seed: int, args) -> dict:
    import torch

    from menas_zoo.nets import build_model
    from menas_zoo.space.genotype import Genotype
    from menas_zoo.train import TrainConfig, evaluate, recalibrate_bn, train

    torch.set_num_threads(args.threads)
    record = planned_trial(row, seed, trial, args)
    genotype = Genotype.from_dict(record["genotype"])
    _, retrain = make_splits(args)
    torch.manual_seed(train_seed)
    model = build_model(genotype)
    cfg = TrainConfig(epochs=args.retrain_epochs, batch_size=args.batch_size, optimizer="adamw", seed=train_seed,
                      device=args.device)
    started = time.perf_counter()
    train(model, retrain, cfg, progress=False, validate="none")
    recalibrate_bn(model, retrain.train, batches=10, seed=train_seed)
    accuracy = evaluate(model, retrain.val)["acc"]
    return {"row": row, "seed": seed, "trial": trial, "train_seed": train_seed, "holdout_acc": accuracy,
            "fitness": record["fitness"], "params": record["params"], "macs": record["macs"],
            "seconds": time.perf_counter() - started}


# -- summary -----------------------------------------------------------------------------------------------

def kendall_tau(xs: list[float], ys: list[float]) -> float:
    """Kendall's tau-b (ties in either variable counted as neither concordant nor discordant)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denominator if denominator else float("nan")


def dense_cap(row: str, args) -> int:
    """A row's ticket trials' dense epochs at most, as its searches' config computes it."""
    return search_config(row, 0, args).dense_epochs


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def summarize(args, retrained: list[dict], plan: list[tuple[str, int, int, int]]) -> list[dict]:
    rows, planned = [], set(plan)
    for row in args.rows:
        folders = {seed: args.out / "runs" / f"{row}-seed{seed}" for seed in args.seeds}
        runs = {seed: read_trials(folder, cut_minutes=args.cut_minutes) for seed, folder in folders.items()}
        tickets = {seed: read_trials(folder, tickets=True) for seed, folder in folders.items()}
        # Only this table's plan counts: not a row's other seeds, nor trials after a cut, nor retrainings that
        # another plan (a cut, a larger --tau-trials) left in the same folder.
        mine = [r for r in retrained if r["row"] == row and (row, r["seed"], r["trial"], r["train_seed"]) in planned]
        best_fitness, winner_acc, top3_acc, minutes, parent_gap, winner_params = [], [], [], [], [], []
        for seed, trials in runs.items():
            top = winners(row, trials, tickets[seed])
            best_fitness.append(top[0]["fitness"])
            winner_params.append(top[0]["params"])
            # The row's wall time: its search, and the tickets cut after it.
            minutes.append((max(t["elapsed"] for t in trials) + sum(t["seconds"] for t in tickets[seed])) / 60)
            winner_acc += [r["holdout_acc"] for r in mine if r["seed"] == seed and r["trial"] == top[0]["index"]]
            top_index = {t["index"] for t in top}
            top3_acc += [r["holdout_acc"] for r in mine if r["seed"] == seed and r["trial"] in top_index]
            scored = {(r["trial"], r["train_seed"]): r["holdout_acc"] for r in mine if r["seed"] == seed}
            parent_gap += [scored[t["index"], s] - scored[t["parent"], s] for t in tickets[seed]
                           for s in args.train_seeds if (t["index"], s) in scored and (t["parent"], s) in scored]
        first_seed = {(r["seed"], r["trial"]): r for r in mine if r["train_seed"] == args.train_seeds[0]}
        pairs = [(r["fitness"], r["holdout_acc"]) for r in first_seed.values()]
        all_trials = [t for seed in runs for t in runs[seed] + tickets[seed]]
        ticketed = [t for t in all_trials if t.get("masks") and t.get("trained_accuracy") is not None]
        bred = [pair for trials in runs.values() for pair in parent_child_fitness(trials)]
        children = [t["macs"] for trials in runs.values() for t in trials if t.get("generation", 0) > 0]  # bred
        outside = [1 - (t["phase_seconds"].get("mask", 0) + t["phase_seconds"].get("proxy", 0)) / t["seconds"]
                   for t in all_trials if t.get("phase_seconds")]
        rows.append({
            "row": row,
            "search_fitness": best_fitness,
            "winner_holdout": winner_acc,
            "top3_holdout": top3_acc,
            "tau": kendall_tau(*zip(*pairs)) if len(pairs) > 1 else float("nan"),
            "tau_n": len(pairs),
            "parent_r": statistics.correlation(*zip(*bred)) if len(bred) > 2 else None,
            "trials": [len(t) for t in runs.values()],
            "trials_per_min": statistics.mean(len(runs[s]) / m for s, m in zip(runs, minutes)),
            "minutes": statistics.mean(minutes),
            "winner_params": statistics.mean(winner_params),
            "ticket_minus_parent_scratch": statistics.mean(parent_gap) if parent_gap else None,
            "eb_saved": (1 - sum(t["epochs"] for t in ticketed) / (len(ticketed) * dense_cap(row, args)))
            if ticketed else None,
            "pruned": statistics.mean(t["pruned"] for t in ticketed) if ticketed else None,
            "ticket_minus_dense": statistics.mean(t["ticket_accuracy"] - t["trained_accuracy"] for t in ticketed)
            if ticketed else None,
            "overhead": statistics.mean(outside) if outside else None,
            "params": statistics.mean(t["params"] for t in all_trials),
            "child_macs": statistics.mean(children) if children else None,
        })
    return rows


def parent_child_fitness(trials: list[dict]) -> list[tuple[float, float]]:
    """(parent's fitness, child's fitness) for every child of a run whose parent is a trial of it, both
    scored (not diverged): how far a child scores like the parent it was bred from (heritability)."""
    by_index = {t["index"]: t for t in trials}
    return [(by_index[t["parent"]]["fitness"], t["fitness"]) for t in trials
            if t.get("parent") in by_index and t["fitness"] >= 0 and by_index[t["parent"]]["fitness"] >= 0]


def by_seed(row: dict, seeds: list[int], train_seeds: list[int]) -> list[float] | None:
    """A row's winner from scratch per search seed: the mean over its training seeds (``winner_holdout``
    lists them seed by seed, at most one per training seed), or None unless every one was retrained."""
    acc, k = row["winner_holdout"], len(train_seeds)
    if not seeds or len(acc) != len(seeds) * k:
        return None
    return [statistics.mean(acc[i * k:(i + 1) * k]) for i in range(len(seeds))]


def paired_lines(rows: list[dict], seeds: list[int], train_seeds: list[int], base: str = "menas") -> list[str]:
    """Each row's winners from scratch against ``base``'s, paired by search seed (same seed, same limit and
    budget): the mean difference in points with its standard error, the seeds in which the row was ahead,
    and a one-sided sign test of that count."""
    from menas_zoo.export.bench import sign_test

    ref = next((r for r in rows if r["row"] == base), None)
    ref_acc = by_seed(ref, seeds, train_seeds) if ref else None
    if ref_acc is None or len(seeds) < 2:
        return []
    lines = [f"paired by search seed, winner from scratch minus {base}'s (points):"]
    for r in rows:
        acc = by_seed(r, seeds, train_seeds) if r is not ref else None
        if acc is None:
            continue
        diff = [100 * (a - b) for a, b in zip(acc, ref_acc)]
        ahead = sum(d > 0 for d in diff)
        se = statistics.stdev(diff) / len(diff) ** 0.5
        lines.append(f"  {r['row']:<18} {statistics.mean(diff):+.2f} ± {se:.2f} (se), ahead in {ahead}/{len(diff)} "
                     f"seeds, sign test p = {sign_test(ahead, len(diff)):.3f}")
    return lines


def output_name(stem: str, suffix: str, args) -> str:
    """``table.txt`` / ``ablation.json``; a cut summary's go beside them (``table-cut10min.txt``)."""
    return f"{stem}-cut{args.cut_minutes:g}min{suffix}" if args.cut_minutes else stem + suffix


def print_table(rows: list[dict], args) -> None:
    lines = table_lines(rows, args) + paired_lines(rows, args.seeds, args.train_seeds, args.base)
    print("\n" + "\n".join(lines))
    (args.out / output_name("table", ".txt", args)).write_text("\n".join(lines) + "\n")


def table_lines(rows: list[dict], args) -> list[str]:
    header = (f"{'row':<18} {'search fitness':>17} {'winner, scratch':>17} {'top-3, scratch':>17} {'tau (n)':>11} "
              f"{'parent r':>8} {'trials/min':>10} {'EB saved':>8} {'pruned':>7} {'tkt-dense':>9} {'overhead':>8} "
              f"{'params':>7} {'tkt-parent':>10} {'child MACs':>10}")
    cut = f" (cut at {args.cut_minutes:g} min: later trials left out)" if args.cut_minutes else ""
    lines = [f"{args.budget_minutes:g} min per search{cut}, tiny profile, params <= {int(args.max_params):,}, seeds "
             f"{' '.join(map(str, args.seeds))}; retrained {args.retrain_epochs} epochs from scratch on "
             f"{args.train_subset} images, train seeds {' '.join(map(str, args.train_seeds))}, scored on a "
             f"{args.holdout}-image holdout no search saw", header, "-" * len(header)]
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    for r in rows:
        gap = "-" if r["ticket_minus_dense"] is None else f"{r['ticket_minus_dense']:+.3f}"
        scratch_gap = r.get("ticket_minus_parent_scratch")
        scratch_gap = "-" if scratch_gap is None else f"{scratch_gap:+.3f}"
        parent_r = "-" if r.get("parent_r") is None else f"{r['parent_r']:.2f}"
        child_macs = "-" if r.get("child_macs") is None else f"{r['child_macs'] / 1e6:.1f}M"
        lines.append(f"{r['row']:<18} {mean_sd(r['search_fitness']):>17} {mean_sd(r['winner_holdout']):>17} "
                     f"{mean_sd(r['top3_holdout']):>17} {r['tau']:>6.2f} ({r['tau_n']:>2}) "
                     f"{parent_r:>8} {r['trials_per_min']:>10.2f} "
                     f"{pct(r['eb_saved']):>8} {pct(r['pruned']):>7} {gap:>9} {pct(r['overhead']):>8} "
                     f"{r['winner_params'] / 1000:>6.1f}K {scratch_gap:>10} {child_macs:>10}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget-minutes", type=float, default=12.0)
    parser.add_argument("--max-params", type=float, default=1e5)
    parser.add_argument("--population", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3, help="the fitness proxy's epochs")
    parser.add_argument("--mask-epochs", type=int, default=2,
                        help="dense epochs before a ticket is cut at the latest (at most --epochs - 1)")
    parser.add_argument("--train-subset", type=int, default=2000)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--holdout", type=int, default=5000)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--retrain-epochs", type=int, default=5)
    parser.add_argument("--train-seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--tau-trials", type=int, default=21, help="retrained trials per row, pooled over seeds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1) // 2),
                        help="searches / retrainings run side by side, one process each")
    parser.add_argument("--cut-minutes", type=float, default=None,
                        help="summarize each search as if it had stopped after this many minutes: only the trials "
                             "it finished by then are ranked, retrained and tabled (table-cutNmin.txt)")
    parser.add_argument("--no-retrain", action="store_true", help="summarize what is retrained so far, run nothing new")
    parser.add_argument("--paired", type=Path, default=None, metavar="ABLATION_JSON",
                        help="only print the paired comparison of a finished ablation's ablation.json")
    parser.add_argument("--base", default="menas", choices=list(ROWS),
                        help="the row every other row's winners are compared with, seed by seed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.paired:
        try:
            summary = json.loads(args.paired.read_text())
            seeds, train_seeds = (json.loads(summary["args"][key]) for key in ("seeds", "train_seeds"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"error: {args.paired} is not a search ablation's ablation.json ({exc})") from None
        print("\n".join(paired_lines(summary["rows"], seeds, train_seeds, args.base))
              or f"no paired comparison: the {args.base} row or a winner's retrainings are missing")
        return
    if args.out is None:
        parser.error("--out is required")
    if args.cut_minutes is not None and not 0 < args.cut_minutes <= args.budget_minutes:
        parser.error("--cut-minutes must be in (0, --budget-minutes]")
    if args.cut_minutes and set(args.rows) & set(WINNER_TICKETS):
        parser.error("--cut-minutes cannot cut a row whose winners are tickets cut after its whole search")
    args.out.mkdir(parents=True, exist_ok=True)

    # Interleave rows so drifts in machine load hit them alike.
    jobs = [(row, seed) for seed in args.seeds for row in args.rows]
    if not args.no_retrain:  # --no-retrain runs nothing new, searches included
        with ProcessPoolExecutor(args.jobs) as pool:
            for message in pool.map(run_search_job, *zip(*jobs), [args] * len(jobs)):
                print(message, flush=True)
    empty = [f"{row} seed {seed}" for row, seed in jobs
             if not read_trials(args.out / "runs" / f"{row}-seed{seed}", cut_minutes=args.cut_minutes)]
    if empty:
        limit = f"--cut-minutes {args.cut_minutes:g}" if args.cut_minutes else \
            f"--budget-minutes {args.budget_minutes:g}"
        raise SystemExit(f"error: {', '.join(empty)} finished no trial within {limit}: give the searches more time")

    log = args.out / "retrain.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    have = {(r["row"], r["seed"], r["trial"], r["train_seed"]) for r in done}
    plan = plan_retraining(args)
    todo = [p for p in plan if p not in have] if not args.no_retrain else []
    todo, copies = share_retrainings(todo, done, args)
    print(f"retraining {len(todo)} architectures from scratch ({len(have)} already done, "
          f"{len(copies)} the same as one of those)", flush=True)

    def record(result: dict, fh) -> None:
        fh.write(json.dumps(result) + "\n")
        fh.flush()
        done.append(result)
        source = f"copied from {' '.join(map(str, result['copied_from']))}" if "copied_from" in result else \
            f"{result['seconds']:.0f} s"
        print(f"  {result['row']} seed {result['seed']} trial {result['trial']} train seed {result['train_seed']}: "
              f"holdout {result['holdout_acc']:.4f} ({source})", flush=True)

    with ProcessPoolExecutor(args.jobs) as pool, log.open("a") as fh:
        for result in pool.map(retrain_job, *zip(*todo), [args] * len(todo)) if todo else []:
            record(result, fh)
        # After the runs: a copy may come from a retraining that ran just now. Every key was trained once.
        sources = {retraining_key(r["row"], r["seed"], r["trial"], r["train_seed"], args): r for r in done
                   if "copied_from" not in r}
        for job in copies:
            record(copied_retraining(job, sources[retraining_key(*job, args)], args), fh)

    rows = summarize(args, done, plan)
    print_table(rows, args)
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    (args.out / output_name("ablation", ".json", args)).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
