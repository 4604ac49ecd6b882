"""``menas-zoo search``: run, or with ``--resume`` continue, a MENAS search in a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from menas_zoo.cli.app import command, console, print_json, print_table
from menas_zoo.cli.core import profile_names
from menas_zoo.cli.options import DATASET_NAMES, json_option, threads_option
from menas_zoo.costs import human
from menas_zoo.errors import MenasError

#: flags whose name is not their setting's
_FLAGS = {"early_bird": "--early-stop"}


def _flag(setting: str) -> str:
    return _FLAGS.get(setting, "--" + setting.replace("_", "-"))


@command(name="search")
def search_command(
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                       help="New run folder (trials.jsonl, state, report, winners)."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="DIR",
                                          help="Continue the search in this run folder."),
    profile: Optional[str] = typer.Option(None, metavar="PROFILE", help=f"Search profile: {profile_names()}, or a "
                                                                        "JSON file of SearchProfile fields. "
                                                                        "[default: small]"),
    strategy: Optional[str] = typer.Option(None, help="menas, evolution (regularized evolution) or random. "
                                                      "[default: menas]"),
    population: Optional[int] = typer.Option(None, help="Population size (and children per generation). [default: 8]"),
    generations: Optional[int] = typer.Option(None, help="Generations after the initial population. [default: 5]"),
    epochs: Optional[int] = typer.Option(None, help="Fitness proxy: epochs each trial trains from a fresh "
                                                    "initialization before it is scored. [default: 4]"),
    mask_epochs: Optional[int] = typer.Option(None, help="Dense epochs before a ticket is cut at the latest "
                                                         "(Early-Bird usually cuts sooner; at most --epochs - 1). "
                                                         "[default: 3]"),
    eb_window: Optional[int] = typer.Option(None, help="Early-Bird: compare the masks of the last N epochs. "
                                                       "[default: 2]"),
    eb_threshold: Optional[float] = typer.Option(None, help="Early-Bird: stop when they differ in less than this "
                                                            "fraction of channels. [default: 0.1]"),
    bn_shrink: Optional[float] = typer.Option(None, help="BN sparsity before a ticket is cut: total |gamma| shrink "
                                                         "over the dense epochs, whatever their number. [menas: 0.5]"),
    train_subset: Optional[int] = typer.Option(None, help="Train on only this many images (quick searches)."),
    val_size: Optional[int] = typer.Option(None, help="Validation images carved from the training set. "
                                                      "[default: 5000]"),
    dataset: Optional[str] = typer.Option(None, metavar="NAME", help=f"Dataset: {', '.join(DATASET_NAMES)}. "
                                                                     "[default: fashion-mnist]"),
    data_dir: Optional[Path] = typer.Option(None, metavar="DIR", help="Dataset folder (default for Fashion-MNIST: "
                                                                      "the Debian package's)."),
    resolution: Optional[int] = typer.Option(None, min=1, help="Input resolution of an image-folder dataset, whose "
                                                              "images are resized to it. [default: the profile's]"),
    in_chans: Optional[int] = typer.Option(None, help="Channels an image-folder dataset is read as: 1 (grayscale) "
                                                      "or 3 (RGB). [default: 3 for an image folder]"),
    budget_minutes: Optional[float] = typer.Option(None, help="Stop cleanly (and report) after this many minutes."),
    max_macs: Optional[float] = typer.Option(None, help="MACs limit, e.g. 5e6."),
    max_params: Optional[float] = typer.Option(None, help="Parameter limit, e.g. 1e5."),
    max_latency_ms: Optional[float] = typer.Option(None, help="ONNX Runtime p90 latency limit in ms "
                                                              "(batch 1, 1 thread)."),
    latency_table: Optional[Path] = typer.Option(None, metavar="FILE",
                                                 help="Predict latency from this per-block table ('menas-zoo bench "
                                                      "--per-block --table') instead of measuring."),
    penalty: Optional[float] = typer.Option(None, help="Soft limits: fitness x (cost/limit)^-W over a limit "
                                                       "(MnasNet uses 0.07). Default: hard limits."),
    tickets: Optional[bool] = typer.Option(None, "--tickets/--no-tickets", help="Replace trials by lottery tickets."),
    regrow: Optional[bool] = typer.Option(None, "--regrow/--no-regrow",
                                          help="A ticket's child widens its hidden widths back, up to what the "
                                               "pruning removed, within the limits. [menas: on]"),
    weight_sharing: Optional[bool] = typer.Option(None, "--weight-sharing/--no-weight-sharing",
                                                  help="Children start from their parents' weights instead of a "
                                                       "fresh initialization (fitness then depends on the "
                                                       "lineage). [default: off]"),
    early_stop: Optional[bool] = typer.Option(None, "--early-stop/--no-early-stop", help="Early-Bird early stop."),
    steer: Optional[bool] = typer.Option(None, "--steer/--no-steer",
                                         help="With --no-tickets: trials stay dense, and a child's widths follow "
                                              "its parent's ticket (grow the blocks it keeps, shrink those it "
                                              "prunes). [default: off]"),
    steer_keep_cost: Optional[bool] = typer.Option(None, "--steer-keep-cost/--no-steer-keep-cost",
                                                   help="With --steer: a steered child costs no more params or "
                                                        "MACs than its mutation gave it (the ticket moves width "
                                                        "between blocks). [default: off]"),
    median_stop: Optional[bool] = typer.Option(None, "--median-stop/--no-median-stop",
                                               help="With --no-tickets: a child scoring under its parents' median "
                                                    "after --median-stop-epoch epochs stops there, that score its "
                                                    "fitness (the median stopping rule). [default: off]"),
    median_stop_epoch: Optional[int] = typer.Option(None, help="Epoch at which --median-stop scores a trial. "
                                                               "[default: 2]"),
    keep_largest: Optional[float] = typer.Option(None, help="Fraction of survivors kept as the largest by MACs. "
                                                            "[menas: 0.2]"),
    tournament: Optional[int] = typer.Option(None, min=0, help="Parents are the fittest of this many members drawn at "
                                                               "random (1: a uniform draw). [default: 0, i.e. "
                                                               "max(2, population / 4)]"),
    prune_ratio: Optional[float] = typer.Option(None, help="Global fraction of hidden channels a ticket prunes. "
                                                           "[default: 0.2]"),
    max_prune_ratio: Optional[float] = typer.Option(None, help="Prune to fit: a ticket over a limit is pruned further, "
                                                               "up to this fraction. [default: 0.6]"),
    channel_multiple: Optional[int] = typer.Option(None, min=1, help="Round each ticket block's kept channels to a "
                                                   "multiple of this (fast kernels want 8). [default: 8]"),
    ticket_allocation: Optional[str] = typer.Option(None, metavar="ALLOCATION",
                                                    help="How a ticket's pruning is shared among blocks: global "
                                                         "(one |gamma| threshold over all) or uniform (the same "
                                                         "fraction of each). [default: global]"),
    seed: Optional[int] = typer.Option(None, help="Seed: the same seed gives the same search. [default: 0]"),
    device: Optional[str] = typer.Option(None, metavar="DEVICE", help="auto (CUDA when present, with mixed "
                                                                      "precision), cpu, cuda, cuda:N. [default: auto]"),
    threads: Optional[int] = threads_option(None, several=False),
    backend: str = typer.Option("in-process", help="in-process or ray."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
    as_json: bool = json_option("of the summary (no progress bar)"),
) -> None:
    """Search the MobileNet3-MT space with MENAS; killed, it continues with --resume RUN_DIR."""
    from tqdm.auto import tqdm

    from menas_zoo.search import SearchConfig, run_search
    from menas_zoo.search.backends import make_backend
    from menas_zoo.search.config import RESUMABLE_OVERRIDES
    from menas_zoo.search.run import default_latency_fn, fixed_on_resume
    from menas_zoo.search.report import trials_per_minute

    if (out is None) == (resume is None):
        raise MenasError("give either --out RUN_DIR (a new search) or --resume RUN_DIR (continue one)")
    settings = {
        "profile": profile, "strategy": strategy, "population": population, "generations": generations,
        "epochs": epochs, "mask_epochs": mask_epochs, "eb_window": eb_window, "eb_threshold": eb_threshold,
        "bn_shrink": bn_shrink, "max_prune_ratio": max_prune_ratio, "train_subset": train_subset,
        "val_size": val_size, "dataset": dataset, "data_dir": str(data_dir) if data_dir else None,
        "resolution": resolution, "in_chans": in_chans, "max_macs": _int(max_macs), "max_params": _int(max_params),
        "max_latency_ms": max_latency_ms, "penalty": penalty, "tickets": tickets, "regrow": regrow,
        "weight_sharing": weight_sharing, "early_bird": early_stop, "steer": steer, "steer_keep_cost": steer_keep_cost,
        "median_stop": median_stop, "median_stop_epoch": median_stop_epoch,
        "keep_largest": keep_largest, "tournament": tournament, "prune_ratio": prune_ratio,
        "channel_multiple": channel_multiple, "ticket_allocation": ticket_allocation, "seed": seed,
    }
    given = {k: v for k, v in settings.items() if v is not None}
    if device is not None:
        from menas_zoo.train import resolve_device

        resolve_device(device)  # fail fast on a bad --device
    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    if resume is not None:
        fixed = fixed_on_resume(given)
        if fixed:
            may_change = [_flag(k) for k in RESUMABLE_OVERRIDES] + ["--threads", "--backend"]
            raise MenasError(f"--resume continues the run as configured; drop {', '.join(_flag(k) for k in fixed)} "
                             f"(only {', '.join(may_change[:-1])} and {may_change[-1]} may change)")
        run_dir, cfg_arg = resume, None
    else:
        cfg_arg = SearchConfig(**given, budget_minutes=budget_minutes, device=device or "auto")
        if latency_table is not None and cfg_arg.max_latency_ms is None:
            raise MenasError("--latency-table predicts latency for --max-latency-ms; give that limit too")
        run_dir = out
    latency_fn = default_latency_fn(latency_table) if latency_table is not None else None
    bar = None

    def on_start(state) -> None:
        nonlocal bar
        cfg = state.config
        if latency_table is not None and cfg.max_latency_ms is None:
            raise MenasError(f"--latency-table predicts latency for --max-latency-ms, and {state.out} has no "
                             "latency limit")
        if resume is not None and not as_json:
            where = "finished" if state.finished else f"generation {state.generation}"
            budget = cfg.budget_minutes
            console.print(f"resuming {resume}: {len(state.trials)} trials done ({where}) in "
                          f"{state.elapsed / 60:.1f} min; this session's budget: "
                          + (f"{budget:g} min" + (" (--budget-minutes)" if budget_minutes is not None
                                                  else " (fresh, from the run's settings)") if budget else "none"),
                          markup=False, highlight=False)
        bar = tqdm(total=cfg.population * (cfg.generations + 1), initial=len(state.trials), desc="search",
                   unit="trial", disable=as_json)

    def on_trial(record, state) -> None:
        best = max(state.trials, key=lambda t: t.fitness)
        bar.n = len(state.trials)
        bar.set_postfix_str(f"gen {record.generation}, best {best.fitness:.4f} @ {human(best.macs)} MACs",
                            refresh=False)
        bar.refresh()

    try:
        result = run_search(cfg_arg, run_dir, resume=resume is not None, latency_fn=latency_fn,
                            backend=make_backend(backend, address), on_trial=on_trial, on_start=on_start,
                            overrides={"budget_minutes": budget_minutes, "device": device} if resume else None)
    finally:
        if bar is not None:
            bar.close()
    state, best = result.state, result.best
    summary = {
        "run": str(run_dir), "strategy": state.config.strategy, "trials": len(state.trials),
        "generations_done": len(state.history), "minutes": state.elapsed / 60,
        "trials_per_minute": trials_per_minute(state), "stopped_by_budget": result.stopped_by_budget,
        "finished": state.finished, "report": str(result.report) if result.report else None,
        "best": None if best is None else {"trial": best.index, "fitness": best.fitness, "accuracy": best.accuracy,
                                           "macs": best.macs, "params": best.params,
                                           "genotype": best.genotype.to_compact()},
    }
    if as_json:
        print_json(summary)
        return
    rows = [["trials", summary["trials"]], ["minutes", f"{summary['minutes']:.1f}"],
            ["trials / minute", f"{summary['trials_per_minute']:.2f}"],
            ["status", "stopped by budget (resume to continue)" if result.stopped_by_budget
             else ("finished" if state.finished else "interrupted")]]
    if best is not None:
        rows += [["best fitness", f"{best.fitness:.4f}"], ["best val accuracy", f"{best.accuracy:.4f}"],
                 ["best MACs", human(best.macs)], ["best params", human(best.params)]]
    print_table(f"{state.config.strategy} search in {run_dir}", ["", "value"], rows)
    if best is not None:
        console.print(f"best genotype: {best.genotype.to_compact()}", markup=False, highlight=False)
    if result.report:
        console.print(f"report: {result.report}", markup=False, highlight=False)


def _int(value: Optional[float]) -> Optional[int]:
    if value is not None and not value >= 1:  # also refuses NaN
        raise MenasError(f"a params/MACs limit must be a positive number, got {value:g}")
    return None if value is None else int(value)
