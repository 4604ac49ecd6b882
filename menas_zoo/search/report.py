"""What a search leaves for people: report.md, pareto.png, and the winners as zoo artifacts.

* pareto.png: fitness vs MACs of every trial coloured by generation with the Pareto front drawn (and
  fitness vs latency when latency was measured), and the population's mean MACs per generation next
  to its best fitness: with tickets the first should fall while the second does not.
* winners/trial-NNNNNN/: the Pareto-optimal members of the final population (at most ``MAX_WINNERS``),
  gathered: the artifacts their ``tickets/`` folders hold (config.json with genotype, parent genotype,
  prune summary, metrics, the data's input spec and labels; model.safetensors; masks.safetensors),
  loadable with ``menas_zoo.artifact.load_artifact``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from menas_zoo.artifact import save_artifact
from menas_zoo.costs import human
from menas_zoo.data import DataSplits
from menas_zoo.io import atomic_path, write_text_atomic
from menas_zoo.search.state import RunState, TrialRecord, trial_metrics, trial_name, trial_provenance

MAX_WINNERS = 5


def pareto_front(trials: Sequence[TrialRecord], cost: str = "macs") -> list[TrialRecord]:
    """Trials no other trial beats on both fitness (higher) and ``cost`` (lower), by increasing cost."""
    front: list[TrialRecord] = []
    for t in sorted(trials, key=lambda t: (getattr(t, cost), -t.fitness, t.index)):
        if getattr(t, cost) is not None and (not front or t.fitness > front[-1].fitness):
            front.append(t)
    return front


def trials_per_minute(state: RunState) -> float:
    return 60.0 * len(state.trials) / state.elapsed if state.elapsed > 0 else 0.0


def write_report(state: RunState, splits: DataSplits, *, stopped_by_budget: bool = False) -> Path:
    out = state.out
    winners = save_winners(state, splits)
    plot_pareto(state, out / "pareto.png")
    path = out / "report.md"
    write_text_atomic(path, render_markdown(state, winners, stopped_by_budget))
    return path


def save_winners(state: RunState, splits: DataSplits) -> list[tuple[TrialRecord, Path]]:
    """The best of the population's Pareto front (of every trial so far, before a generation is closed) as
    artifacts. Only individuals with weights qualify: an infeasible ticket never had any."""
    pool = state.members() or state.trials
    front = pareto_front([t for t in pool if t.feasible and state.has_weights(t.index)])
    saved = []
    for t in sorted(front, key=lambda t: -t.fitness)[:MAX_WINNERS]:
        ticket = state.load_ticket(t.index)
        directory = save_artifact(
            state.out / "winners" / trial_name(t.index), ticket.model, parent_genotype=ticket.parent_genotype,
            masks=ticket.masks, metrics=trial_metrics(t, state.config), input_spec=splits.input_spec(),
            labels=list(splits.train.classes), provenance=trial_provenance(t, state))
        saved.append((t, Path(directory)))
    return saved


def plot_pareto(state: RunState, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    trials = state.trials
    with_latency = any(t.latency_ms is not None for t in trials)
    panels = 3 if with_latency else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5), constrained_layout=True)
    generations = [t.generation for t in trials]
    cmap = plt.get_cmap("viridis")
    norm = matplotlib.colors.Normalize(vmin=0, vmax=max(1, max(generations, default=0)))

    def scatter(ax, cost: str, label: str, scale: float = 1.0) -> None:
        points = [t for t in trials if getattr(t, cost) is not None]
        sc = ax.scatter([getattr(t, cost) / scale for t in points], [t.fitness for t in points],
                        c=[t.generation for t in points], cmap=cmap, norm=norm, s=22, alpha=0.85)
        front = pareto_front(points, cost)
        ax.step([getattr(t, cost) / scale for t in front], [t.fitness for t in front], where="post", color="crimson",
                lw=1.5, label="Pareto front")
        ax.set_xlabel(label)
        ax.set_ylabel("fitness (validation accuracy under the limit)")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        fig.colorbar(sc, ax=ax, label="generation")

    scatter(axes[0], "macs", "MACs (M)", 1e6)
    if with_latency:
        scatter(axes[1], "latency_ms", "latency (ms)")
    ax = axes[-1]
    gens = [h["generation"] for h in state.history]
    ax.plot(gens, [h["mean_macs"] / 1e6 for h in state.history], "o-", color="tab:blue")
    ax.set_xlabel("generation")
    ax.set_ylabel("population mean MACs (M)", color="tab:blue")
    twin = ax.twinx()
    twin.plot(gens, [h["best_fitness"] for h in state.history], "s--", color="tab:green")
    twin.set_ylabel("population best fitness", color="tab:green")
    ax.grid(alpha=0.3)
    fig.suptitle(f"{state.config.strategy} search: {len(trials)} trials")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def ticket_lines(trials: list[TrialRecord], cfg) -> list[str]:
    """Early-Bird's saving, the real prune fraction and ticket vs dense accuracy, measured over the run."""
    ticketed = [t for t in trials if t.masks and t.trained_accuracy is not None]
    if not ticketed:
        return [""]
    saved = 1 - sum(t.epochs for t in ticketed) / (len(ticketed) * cfg.dense_epochs)
    pruned = sum(t.pruned for t in ticketed) / len(ticketed)
    gap = [t.ticket_accuracy - t.trained_accuracy for t in ticketed if t.ticket_accuracy is not None]
    line = (f"- tickets: Early-Bird cut them {saved:.0%} sooner than the dense cap (in epochs); "
            f"pruned {pruned:.1%} of hidden channels on "
            f"average (asked {cfg.prune_ratio:.0%}")
    line += f", up to {cfg.max_prune_ratio:.0%} to fit)" if cfg.budget() else ")"
    if gap:
        line += f"; ticket minus dense accuracy after BN recalibration {sum(gap) / len(gap):+.4f} on average"
    return [line, ""]


def median_stop_lines(trials: list[TrialRecord], cfg) -> list[str]:
    """Under --median-stop, how many trials the rule stopped and the share of training epochs that saved."""
    if not cfg.median_stop:
        return []
    stopped = sum(t.median_stopped for t in trials)
    saved = stopped * (cfg.epochs - cfg.median_stop_epoch) / (len(trials) * cfg.epochs)
    return [f"- median stop: {stopped} of {len(trials)} trials scored under their parents' median "
            f"after {cfg.median_stop_epoch} of {cfg.epochs} epochs and stopped there, {saved:.0%} of the "
            "trials' training epochs saved", ""]


def steer_lines(best: TrialRecord, cfg) -> list[str]:
    """Under --steer, the ticket the best trial's |gamma| gives, block by block: where its children grow and shrink."""
    if not (cfg.steer and best.ticket_widths):
        return []
    widths = best.ticket_widths
    share = sum(k for k, _ in widths.values()) / sum(t for _, t in widths.values())
    blocks = ", ".join(f"{name.removeprefix('stages.')} {k}/{t}" for name, (k, t) in widths.items())
    return [f"- steering: trial {best.index}'s ticket would keep {share:.0%} of its hidden channels "
            f"(stage.block kept/total: {blocks}); its mutated children grow the blocks that keep a larger share "
            "and shrink those that keep less", ""]


def render_markdown(state: RunState, winners: list[tuple[TrialRecord, Path]], stopped_by_budget: bool) -> str:
    cfg, trials = state.config, state.trials
    best = max(trials, key=lambda t: (t.fitness, -t.index))
    limits = ", ".join(f"{k} <= {v:,}" for k, v in (("MACs", cfg.max_macs), ("params", cfg.max_params),
                                                      ("latency ms", cfg.max_latency_ms)) if v is not None)
    status = "stopped by the time budget" if stopped_by_budget else ("finished" if state.finished else "interrupted")
    lines = [
        f"# MENAS search report: {state.out.name}", "",
        f"- strategy **{cfg.strategy}** (tickets {cfg.tickets}, regrow {cfg.regrow}, "
        f"weight sharing {cfg.weight_sharing}, keep-largest {cfg.keep_largest}, BN shrink {cfg.bn_shrink}, "
        f"Early-Bird {cfg.early_bird}, steer {cfg.steer}), seed {cfg.seed}",
        f"- fitness: validation accuracy after {cfg.epochs} epochs of training from a fresh initialization "
        f"(the same proxy in every strategy)"
        + (f"; tickets cut inside it, after at most {cfg.dense_epochs} dense epochs" if cfg.tickets else "")
        + ("; each trial's ticket, not cut, steers its children's widths" if cfg.steer else "")
        + (" within the params and MACs their mutation gave them" if cfg.steer and cfg.steer_keep_cost else "")
        + (f"; a trial under the median after {cfg.median_stop_epoch} epochs is scored there" if cfg.median_stop
           else ""),
        f"- population {cfg.population}, generations {cfg.generations}, "
        f"train subset {cfg.train_subset or 'all'}, validation {cfg.val_size} images of {cfg.dataset}'s training split",
        f"- cost limit: {limits or 'none'} ({'hard' if cfg.penalty is None else f'penalty w={cfg.penalty}'})",
        f"- {len(trials)} trials in {state.elapsed / 60:.1f} min ({trials_per_minute(state):.2f} trials/min); "
        f"{status}, generation {min(state.generation, cfg.generations)} of {cfg.generations}",
        f"- best: trial {best.index}, fitness {best.fitness:.4f}, validation accuracy {best.accuracy:.4f}, "
        f"{human(best.macs)} MACs, {human(best.params)} params", "",
        *ticket_lines(trials, cfg),
        *steer_lines(best, cfg),
        *median_stop_lines(trials, cfg),
        "![Pareto front and population MACs](pareto.png)", "",
        "## Population per generation", "",
        "| generation | mean MACs | mean params | best fitness | mean fitness | minutes |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for h in state.history:
        lines.append(f"| {h['generation']} | {human(h['mean_macs'])} | {human(h['mean_params'])} | "
                     f"{h['best_fitness']:.4f} | {h['mean_fitness']:.4f} | {h['elapsed'] / 60:.1f} |")
    lines += ["", "## Pareto front (all trials, fitness vs MACs)", "",
              "| trial | gen | fitness | val acc | MACs | params | epochs | genotype |",
              "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for t in pareto_front(trials):
        lines.append(f"| {t.index} | {t.generation} | {t.fitness:.4f} | {t.accuracy:.4f} | {human(t.macs)} | "
                     f"{human(t.params)} | {t.epochs} | `{t.genotype.to_compact()}` |")
    lines += ["", "## Winners (zoo artifacts)", ""]
    for t, path in winners:
        lines.append(f"- `{path.relative_to(state.out)}`: trial {t.index}, fitness {t.fitness:.4f}, "
                     f"{human(t.macs)} MACs")
    if not winners:
        lines.append("- none (no individual with weights yet)")
    return "\n".join(lines) + "\n"
