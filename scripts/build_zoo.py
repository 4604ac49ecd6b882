"""Build the zoo's models: search each size class, pick winners from scratch, train them, publish.

    python scripts/build_zoo.py search  [--classes a b c] [--device cuda] [--budget-minutes 60]
    python scripts/build_zoo.py select  [--classes a b c] [--device cuda]
    python scripts/build_zoo.py adopt   --classes a --ablation runs/ablation  # or: take a finished ablation
    python scripts/build_zoo.py train   [--models mt-a mt-b mt-c peer] [--device cuda]
    python scripts/build_zoo.py publish [--models mt-a mt-b mt-c]   # export, card (then register_model.py)
    python scripts/build_zoo.py table                               # results/zoo/training.md: where, how long
    python scripts/build_zoo.py headroom --models mt-c --rows 1x10 2x10 1x30   # what would close a gap

Every stage is resumable: its state lives under ``runs/zoo/`` (git-ignored), and running the same
command again continues where a kill stopped it (searches resume with a fresh budget, trainings from
their last finished epoch, finished steps are skipped). Small summaries go to ``results/zoo/``, which is
committed: each search's trials.jsonl, report.md and pareto.png, the selection evidence, and each final
training's history, device and wall time.

1. **search**: MENAS on the ``tiny`` profile under each class's params limit (a: 100K, b: 500K, c: 1M),
   validation carved from the 60k training images; the test split is never read. ``--faster-than-peer``
   keeps only candidates that ONNX Runtime runs faster than the peer, each timed against it within
   alternating rounds (a MACs limit is only a proxy of that).
2. **select**: the top ``--candidates`` trials of each search by fitness are retrained from scratch
   with the selection recipe (the final recipe, shorter) on the training images; the best on the
   validation split wins. This is the honest ranking (the search issue's evidence): from scratch, one
   recipe, not search-time accuracy.
   **adopt** is the alternative to search + select where a search ablation (benchmarks/search_ablation.py)
   already ran MENAS under the class's limit and retrained its winners from scratch: the MENAS winner
   with the best mean from-scratch holdout accuracy is taken, and its run becomes the class's search.
3. **train**: each winner, and torchvision's MobileNetV3-Small built for 1x28x28 as the peer, is trained
   with ``RECIPE`` on all 60k training images, then evaluated once on the 10k test images.
4. **publish**: each model becomes a zoo artifact (genotype, parent genotype and masks from the search,
   recipe, metrics), exported to ONNX (fp32 and int8) with its performance summary in the card.
   **retime** does the export and card again for a registered model, to measure it anew on an idle machine.

**headroom** asks what would close a missed target, on the validation split only: a model's genotype
with every width times W (MobileNet's width multiplier) trained E epochs from scratch with ``RECIPE``,
for each row ``WxE``, beside its ORT batch-1 latency against the peer's; with ``--ema DECAY`` each row's run
also keeps an exponential moving average of its weights, scored beside the row on the same images; with
``--teacher ROW`` each row is also trained distilled from another row of the model (a longer or wider
one, trained alike on the same images), scored beside the row on the same images.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "zoo"
RESULTS = ROOT / "results" / "zoo"
CLASSES = {"a": 100_000, "b": 500_000, "c": 1_000_000}
#: The final recipe, recorded in every artifact's provenance.
RECIPE = {"epochs": 100, "batch_size": 256, "optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-5, "warmup_epochs": 3,
          "label_smoothing": 0.1, "augment": {"crop_padding": 2, "flip": True, "erasing": 0.25}}
#: The round the zoo publishes: 30 epochs on CPU (RECIPE's 100 is the GPU length); publish --epochs picks another.
PUBLISHED_EPOCHS = 30
SEARCH = {"strategy": "menas", "profile": "tiny", "population": 8, "generations": 6, "epochs": 4, "mask_epochs": 3,
          "train_subset": 10_000, "val_size": 5000, "seed": 0}
PEER_FILE = "peer-latency.json"  # a --faster-than-peer search's reference ms and margin
INT8_MAX_DROP = 0.003  # int8 files ship only within 0.3 points of fp32 test accuracy
VAL_SIZE, DATA_SEED = 5000, 0  # the searches' validation split, reused for selection
HEADROOM_VAL = 10_000  # headroom's validation split: chooses nothing, so it may be larger (a finer estimate)
LATENCY_ROUNDS = 15  # alternating ORT rounds behind a selection's faster-than-peer verdict
RULE = (f"among candidates faster than the peer in ORT at batch 1: in more of {LATENCY_ROUNDS} alternating rounds "
        "than a coin would give (one-sided sign test, p < 0.05; the ratio is the median of per-round p50 ratios)")


def shown(path: Path) -> str:
    """A path as the summaries name it: relative to the repository where it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def train_config(recipe: dict, device: str, seed: int = 0):
    from menas_zoo.data import Augment
    from menas_zoo.train import TrainConfig

    settings = {**recipe, "augment": Augment(**recipe["augment"])}
    return TrainConfig(**settings, seed=seed, device=device)


def copy_summary(run: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("trials.jsonl", "report.md", "pareto.png", "config.json", PEER_FILE):
        if (run / name).exists():
            shutil.copy2(run / name, dest / name)


def stage_search(args) -> None:
    from menas_zoo.io import write_json_atomic
    from menas_zoo.search import SearchConfig, run_search
    from menas_zoo.search.state import RunState

    for cls in args.classes:
        out = RUNS / f"search-{cls}"
        print(f"search {cls}: params <= {CLASSES[cls]:,} -> {out}", flush=True)
        if (out / "state.json").exists():
            state = RunState.load(out)
            if args.faster_than_peer and state.config.max_latency_ms is None:
                raise SystemExit(f"{out} was started without --faster-than-peer; a resume keeps its limits")
            if state.finished:
                print("  finished", flush=True)
            else:
                latency_fn = peer_latency_fn(peer_reference_ms(out, state.config.max_latency_ms)) \
                    if args.faster_than_peer else None
                run_search(None, out, resume=True, overrides={"budget_minutes": args.budget_minutes,
                                                              "device": args.device}, latency_fn=latency_fn)
        else:
            overrides = (("population", args.population), ("generations", args.generations),
                         ("train_subset", args.train_subset), ("seed", args.seed))
            settings = {**SEARCH, **{k: v for k, v in overrides if v is not None}}
            max_macs = int(args.max_macs) if args.max_macs else None
            latency_fn = peer_latency_fn() if args.faster_than_peer else None
            limit = round(latency_fn.reference_ms * args.peer_margin, 4) if latency_fn else None
            cfg = SearchConfig(**settings, max_params=CLASSES[cls], max_macs=max_macs, device=args.device,
                               budget_minutes=args.budget_minutes, max_latency_ms=limit)
            if latency_fn:
                print(f"  candidates must run within {args.peer_margin:g}x the peer's latency "
                      f"({latency_fn.reference_ms:.3f} ms), compared within rounds", flush=True)

            # called in this iteration, once the run folder exists, so a refused search leaves none
            def keep_peer(state) -> None:
                reference_ms = latency_fn.reference_ms  # noqa: B023 (this iteration's)
                write_json_atomic(state.out / PEER_FILE, {"reference_ms": reference_ms,
                                                          "margin": args.peer_margin})

            run_search(cfg, out, latency_fn=latency_fn, on_start=keep_peer if latency_fn else None)
        copy_summary(out, RESULTS / f"search-{cls}")


def peer_reference_ms(run: Path, max_latency_ms: float) -> float:
    """The peer's ms a ``--faster-than-peer`` search scales its candidates' ratios by: recorded in the run
    folder beside the margin (``max_latency_ms`` is margin x reference); a run without the file had margin 1."""
    path = run / PEER_FILE
    return json.loads(path.read_text())["reference_ms"] if path.exists() else max_latency_ms


def peer_latency_fn(reference_ms: float | None = None):
    """A search's latency limit of "faster than the peer": each candidate is timed against the peer within
    rounds (``PairedLatency``), in the peer's ms; ``reference_ms`` is measured now unless a resumed run has it.
    Such a run resumes with this flag: ``menas-zoo search --resume`` would time its candidates alone."""
    from menas_zoo.export.latency import PairedLatency, reference_latency_ms
    from menas_zoo.nets import build_model

    peer = build_model(peer_genotype()).eval()
    if reference_ms is None:
        reference_ms = reference_latency_ms(peer)
    return PairedLatency(peer, reference_ms)


def stage_select(args) -> None:
    from menas_zoo.data import load_splits
    from menas_zoo.io import write_json_atomic
    from menas_zoo.nets import build_model
    from menas_zoo.search.state import read_trials
    from menas_zoo.train import evaluate, train

    splits = load_splits("fashion-mnist", val_size=VAL_SIZE, seed=DATA_SEED, train_subset=args.select_subset)
    recipe = {**RECIPE, "epochs": args.select_epochs}
    for cls in args.classes:
        trials = read_trials(RUNS / f"search-{cls}")  # its records: a search returned without weights will do
        ranked = sorted((t for t in trials if t.feasible), key=lambda t: (-t.fitness, t.index))
        if not ranked:
            raise SystemExit(f"class {cls}: its search has no finished trial under the limit yet; continue it with "
                             f"'build_zoo.py search --classes {cls}'")
        rows, candidates = [], ranked[:args.candidates]
        for t in candidates:
            out = RUNS / f"select-{cls}" / f"trial-{t.index:06d}"
            torch.manual_seed(0)
            model = build_model(t.genotype)
            started = time.perf_counter()
            result = train(model, splits, train_config(recipe, args.device), out_dir=out,
                           desc=f"select {cls} #{t.index}")
            rows.append({"trial": t.index, "fitness": t.fitness, "params": t.params, "macs": t.macs,
                         "val_acc": evaluate(model, splits.val)["acc"], "epochs": result.epochs,
                         "seconds": time.perf_counter() - started, "genotype": t.genotype.to_compact()})
            print(f"  {cls} trial {t.index}: fitness {t.fitness:.4f} -> val {rows[-1]['val_acc']:.4f}", flush=True)
        latency, vs_peer = ort_latencies({"peer": peer_genotype(), **{str(t.index): t.genotype for t in candidates}})
        for r in rows:
            r.update(ort_b1_p50_ms=round(latency[str(r["trial"])], 4), **peer_columns(vs_peer[str(r["trial"])]))
        winner, faster = faster_winner(rows)
        write_json_atomic(RESULTS / f"selection-{cls}.json", {
            "source": f"search under params <= {CLASSES[cls]:,} "
                      f"(its settings: {shown(RESULTS)}/search-{cls}/config.json)",
            "rule": f"best validation accuracy (from scratch) {RULE}",
            "recipe": recipe, "train_images": len(splits.train), "val_images": len(splits.val),
            "peer_ort_b1_p50_ms": round(latency["peer"], 4), "candidates": rows, "winner": winner["trial"],
            "genotype": winner["genotype"]})
        print(f"  {cls}: winner trial {winner['trial']} ({winner['val_acc']:.4f}, ORT {winner['ort_b1_p50_ms']:.3f} ms "
              f"vs peer {latency['peer']:.3f}; {len(faster)} of {len(rows)} faster than the peer)", flush=True)


def peer_columns(verdict: dict) -> dict:
    """A candidate's comparison with the peer, as a selection file records it."""
    return {"vs_peer_p50_ratio": verdict["p50_ratio"],
            "faster_rounds": f"{verdict['faster_rounds']}/{verdict['rounds']}",
            "faster_than_peer": verdict["verdict"] == "faster"}


def faster_winner(rows: list[dict]) -> tuple[dict, list[dict]]:
    """The selection rule: the best validation accuracy (fewer params on a tie) among the candidates faster
    than the peer, or among all when none is; and those faster ones."""
    faster = [r for r in rows if r["faster_than_peer"]]
    return max(faster or rows, key=lambda r: (r["val_acc"], -r["params"])), faster


def peer_genotype():
    """torchvision's mobilenet_v3_small, built for 1x28x28 (tests prove the equivalence)."""
    from menas_zoo.space import resolve_genotype

    return resolve_genotype("mobilenetv3-small", in_chans=1, resolution=28, num_classes=10)


def ort_latencies(genotypes: dict, rounds: int = LATENCY_ROUNDS,
                  runs: int = 200) -> tuple[dict[str, float], dict[str, dict]]:
    """Batch-1, 1-thread ONNX Runtime latency of each genotype (one of them keyed "peer"), measured in
    alternating rounds: its best round's p50 (ms), and its comparison with the peer (``paired_verdict``:
    the median of per-round p50 ratios, the rounds won, and "faster" only where a sign test over the
    rounds says so). Weights do not change latency, so fresh networks are exported."""
    import tempfile

    from menas_zoo.export.bench import interleaved_rounds, paired_verdict
    from menas_zoo.export.onnx import export_onnx
    from menas_zoo.nets import build_model

    with tempfile.TemporaryDirectory() as tmp:
        paths = {key: export_onnx(build_model(g).eval(), Path(tmp) / f"{key.replace('/', '-')}.onnx").path
                 for key, g in genotypes.items()}
        measured = interleaved_rounds(paths, rounds=rounds, runs=runs)
    best = {key: min(s.p50_ms for s in stats) for key, stats in measured.items()}
    return best, {key: paired_verdict(stats, measured["peer"]) for key, stats in measured.items() if key != "peer"}


def stage_adopt(args) -> None:
    """Take a class's winner from a search ablation's from-scratch retraining (MENAS rows only): the best
    mean holdout accuracy among the candidates whose ORT latency is below the peer's (the zoo's promise)."""
    from statistics import mean

    from menas_zoo.io import write_json_atomic
    from menas_zoo.search.state import RunState

    settings = json.loads((args.ablation / "ablation.json").read_text())["args"]  # values as strings
    retrained: dict[tuple[int, int], list[dict]] = {}
    for line in (args.ablation / "retrain.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["row"] == "menas":
            retrained.setdefault((row["seed"], row["trial"]), []).append(row)
    for cls in args.classes:
        if float(settings["max_params"]) != CLASSES[cls]:
            raise SystemExit(f"the ablation searched under {settings['max_params']} params, class {cls} is "
                             f"{CLASSES[cls]:,}")
        records = {(seed, trial): RunState.load(args.ablation / "runs" / f"menas-seed{seed}").by_index[trial]
                   for seed, trial in retrained}
        latency, vs_peer = ort_latencies({"peer": peer_genotype(),
                                          **{f"{s}/{t}": r.genotype for (s, t), r in records.items()}})
        rows = [{"seed": seed, "trial": trial, "fitness": runs[0]["fitness"], "params": runs[0]["params"],
                 "macs": runs[0]["macs"], "val_acc": mean(r["holdout_acc"] for r in runs),
                 "train_seeds": [r["train_seed"] for r in runs], "ort_b1_p50_ms": round(latency[f"{seed}/{trial}"], 4),
                 **peer_columns(vs_peer[f"{seed}/{trial}"])}
                for (seed, trial), runs in sorted(retrained.items())]
        winner, faster = faster_winner(rows)
        run = args.ablation / "runs" / f"menas-seed{winner['seed']}"
        link = RUNS / f"search-{cls}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(run.resolve(), target_is_directory=True)
        copy_summary(run, RESULTS / f"search-{cls}")
        write_json_atomic(RESULTS / f"selection-{cls}.json", {
            "source": f"search ablation, menas seed {winner['seed']}",
            "rule": f"best mean holdout accuracy (from scratch) {RULE}",
            "recipe": {"epochs": int(settings["retrain_epochs"]), "train_images": int(settings["train_subset"]),
                       "batch_size": int(settings["batch_size"])},
            "holdout_images": int(settings["holdout"]), "peer_ort_b1_p50_ms": round(latency["peer"], 4),
            "candidates": rows, "winner": winner["trial"],
            "genotype": records[winner["seed"], winner["trial"]].genotype.to_compact()})
        print(f"{cls}: menas seed {winner['seed']} trial {winner['trial']} (holdout {winner['val_acc']:.4f}, "
              f"{winner['params']:,} params, ORT {winner['ort_b1_p50_ms']:.3f} ms vs peer {latency['peer']:.3f}) "
              f"from {len(rows)} retrained MENAS trials ({len(faster)} faster than the peer)", flush=True)


def winner_genotype(name: str):
    """What a final training builds: the peer, or its class's winner as its selection recorded it (so a
    training needs no search state: the selection file travels alone)."""
    from menas_zoo.space import resolve_genotype

    if name == "peer":
        return peer_genotype()
    cls = name.split("-")[1]
    line = json.loads((RESULTS / f"selection-{cls}.json").read_text())["genotype"]
    genotype = resolve_genotype(line)
    if "profile=" not in line:  # written before a line named its profile (one without is `small`): its search's
        profile = json.loads((RESULTS / f"search-{cls}" / "config.json").read_text())["config"]["profile"]["name"]
        genotype = genotype.replace(profile=profile, stem_stride=genotype.stem_stride)
    return genotype


def search_record(name: str):
    """The winner's trial in its class's search: its trained parent genotype and ticket masks (read from
    trials.jsonl, so a search folder returned without its trials' weights will do, and so will the search's
    committed summary where this machine has no search folder)."""
    from menas_zoo.errors import MenasError
    from menas_zoo.search.state import read_trials

    cls = name.split("-")[1]
    winner = json.loads((RESULTS / f"selection-{cls}.json").read_text())["winner"]
    for folder in (RUNS / f"search-{cls}", RESULTS / f"search-{cls}"):
        if (folder / "trials.jsonl").is_file():
            found = [t for t in read_trials(folder) if t.index == winner]
            if found:
                return found[0]
    raise MenasError(f"trial {winner} of search-{cls} (the {name} winner) is in neither {shown(RUNS)} "
                     f"nor {shown(RESULTS)}")


def registered_ticket(name: str, genotype) -> tuple | None:
    """The parent genotype, masks and their source of the registered model ``name`` where it is this very
    architecture (a new training round of it), so that a round keeps the search's evidence as published
    instead of replaying it on another machine; None for a new architecture or an unregistered name."""
    from menas_zoo.artifact import load_artifact
    from menas_zoo.errors import MenasError
    from menas_zoo.hub.resolve import resolve

    try:
        artifact = load_artifact(resolve(name, offline=True).path)
    except MenasError:
        return None
    if artifact.genotype.to_compact() != genotype.to_compact() or artifact.masks is None:
        return None
    source = artifact.config["provenance"].get("masks") or "the registered model's (an earlier round of it)"
    return artifact.parent_genotype, artifact.masks, source


def winner_masks(run: Path, record) -> tuple[dict, str]:
    """The winner's ticket masks against its trained parent, and where they came from: the search's ticket
    folder, or (for a search folder returned as its committed summary, without tickets) a replay of the
    trial's dense training from its seeds, keeping the recorded width of each block."""
    from menas_zoo.search.run import load_data
    from menas_zoo.search.state import read_run_config, ticket_masks_path
    from menas_zoo.search.trial import replay_ticket_masks
    from menas_zoo.slim import load_masks

    path = ticket_masks_path(run, record.index)
    if path is not None:
        return load_masks(path, record.trained_genotype), f"the ticket of trial {record.index}"
    print(f"{run} has no ticket for trial {record.index}: replaying its dense training for its masks", flush=True)
    cfg = read_run_config(run)
    masks = replay_ticket_masks(record, cfg, load_data(cfg))
    return masks, (f"replayed: trial {record.index}'s dense training from its seeds, each block keeping its "
                   f"recorded width by |gamma| (torch {torch.__version__})")


def final_name(name: str, seed: int, epochs: int) -> str:
    """A final training's folder (under RUNS) and summary (under RESULTS, .json), named for its epochs, so
    that a longer round trains beside the published one: the published model's is seed 0's; another
    training seed, which measures the spread between trainings, is named for it."""
    return f"final-{name}-e{epochs}" + (f"-seed{seed}" if seed else "")


def stage_train(args) -> None:
    from menas_zoo.artifact import save_artifact
    from menas_zoo.data import DataSplits, load_dataset
    from menas_zoo.io import write_json_atomic
    from menas_zoo.nets import build_model
    from menas_zoo.train import evaluate, model_device, train

    full, test = load_dataset("fashion-mnist", split="train"), load_dataset("fashion-mnist", split="test")
    train_images = full.subset(torch.arange(args.train_subset)) if args.train_subset else full  # smoke runs
    splits = DataSplits(train=train_images, val=full.subset(torch.arange(0)))  # all 60k; nothing selected on here
    seed = args.train_seed
    for name in args.models:
        genotype = winner_genotype(name)
        recipe = {**RECIPE, "epochs": args.epochs or RECIPE["epochs"]}
        run = final_name(name, seed, recipe["epochs"])
        out = RUNS / run
        torch.manual_seed(seed)
        model = build_model(genotype)
        result = train(model, splits, train_config(recipe, args.device, seed), out_dir=out,
                       desc=run.replace("-", " ", 1), validate="none")
        accuracy = evaluate(model, test)["acc"]  # the one look at the test split
        save_artifact(out / "model", model.eval(), labels=test.classes,
                      input_spec={"in_chans": 1, "resolution": 28, "mean": list(test.mean), "std": list(test.std)})
        on = model_device(model)
        device = torch.cuda.get_device_name(on) if on.type == "cuda" else "cpu"
        summary = {"name": name, "genotype": genotype.to_compact(), "test_acc": accuracy, "recipe": recipe,
                   "train_seed": seed, "train_images": len(splits.train),
                   "epochs": result.epochs, "train_seconds": result.seconds, "device": device,
                   "history": [{k: h[k] for k in ("epoch", "train_loss", "lr", "seconds")} for h in result.history]}
        write_json_atomic(RESULTS / f"{run}.json", summary)
        print(f"{run.removeprefix('final-')}: test accuracy {accuracy:.4f} after {result.epochs} epochs "
              f"({result.seconds / 60:.1f} min, {device})")


def recipe_summary(recipe: dict) -> str:
    a = recipe["augment"]
    return (f"{recipe['optimizer'].upper()} lr {recipe['lr']} (cosine, {recipe['warmup_epochs']} warm-up epochs), "
            f"weight decay {recipe['weight_decay']}, batch {recipe['batch_size']}, {recipe['epochs']} epochs, "
            f"label smoothing {recipe['label_smoothing']}, random crop (pad {a['crop_padding']}), "
            f"{'flip, ' if a['flip'] else ''}random erasing {a['erasing']}")


def stage_publish(args) -> None:
    """Artifact (with the search's parent genotype and masks), ONNX export with int8, card; the repo folder
    then holds what register_model.py pushes: the artifact, its card and its deployment files."""
    from menas_zoo.artifact import load_artifact, save_artifact
    from menas_zoo.data import FASHION_MNIST_CLASSES, load_dataset
    from menas_zoo.errors import MenasError

    test = load_dataset("fashion-mnist", split="test")
    for name in args.models:
        epochs = args.epochs or PUBLISHED_EPOCHS
        run = final_name(name, 0, epochs)
        if not (RESULTS / f"{run}.json").is_file() or not (RUNS / run / "model").is_dir():
            raise MenasError(f"{name} has no finished {epochs}-epoch training ({shown(RESULTS / run)}.json and "
                             f"{shown(RUNS / run)}/model): run `build_zoo.py train --models {name} --epochs {epochs}`")
        final = json.loads((RESULTS / f"{run}.json").read_text())
        model = load_artifact(RUNS / run / "model").model
        genotype = winner_genotype(name)
        if model.genotype.replace(profile=genotype.profile, stem_stride=model.genotype.stem_stride) != genotype:
            raise MenasError(f"{shown(RUNS / run)}/model is not {name}'s architecture {genotype.to_compact()}")
        model.genotype = genotype  # its search's profile, which a training from an older selection file lost
        record = search_record(name)
        cls = name.split("-")[1]
        parent, masks, masks_source = registered_ticket(name, model.genotype) or (
            record.trained_genotype, *winner_masks(RUNS / f"search-{cls}", record))
        selection = json.loads((RESULTS / f"selection-{cls}.json").read_text())
        out = RUNS / "publish" / name  # the folder name travels in the ONNX metadata
        save_artifact(out, model.eval(), parent_genotype=parent,
                      masks=masks,
                      metrics={"accuracy": {"value": final["test_acc"], "dataset": "fashion-mnist", "split": "test"}},
                      input_spec={"in_chans": 1, "resolution": 28, "mean": list(test.mean), "std": list(test.std)},
                      labels=FASHION_MNIST_CLASSES,
                      provenance={"search": selection.get("source", f"MENAS, {SEARCH}"), "trial": record.index,
                                  "selection": f"{shown(RESULTS)}/selection-{cls}.json "
                                               "(from scratch, validation split)",
                                  "masks": masks_source,
                                  "recipe": final["recipe"], "recipe_summary": recipe_summary(final["recipe"]),
                                  "epochs": final["epochs"], "train_images": final["train_images"],
                                  "trained_on": final["device"],
                                  "train_minutes": round(final["train_seconds"] / 60, 1)})
        deployment_files(out, name)


def deployment_files(out: Path, name: str) -> None:
    """ONNX export with int8 and its measurements, the card, and the repo's deployment files beside the
    artifact."""
    from menas_zoo.artifact import INT8_FILE, ONNX_FILE

    cli = [sys.executable, "-m", "menas_zoo"]
    subprocess.run([*cli, "export", str(out), "--out", str(out / "onnx"), "--int8"], check=True)
    report = out / "onnx" / "export_report.json"
    subprocess.run([*cli, "card", str(out), "--name", name, "--export-report", str(report)], check=True)
    shutil.copy2(out / "onnx" / ONNX_FILE, out / ONNX_FILE)
    int8 = json.loads(report.read_text()).get("int8") or {}
    drop = int8.get("fp32_accuracy", 0) - int8.get("int8_accuracy", 0)
    if int8 and drop <= INT8_MAX_DROP:  # ship int8 only where it keeps the model's accuracy
        shutil.copy2(out / "onnx" / INT8_FILE, out / INT8_FILE)
    print(f"{name}: {out} ready (int8 {'shipped' if (out / INT8_FILE).exists() else 'not shipped'}, "
          f"int8 vs fp32 {-drop * 100:+.2f} pts); register with scripts/register_model.py {out} --name {name} "
          "--bundle ...")


def stage_retime(args) -> None:
    """A published model's deployment numbers measured again on this machine (an idle one): its registered
    artifact exported anew, its card re-rendered; weights, masks and provenance stay as registered."""
    from menas_zoo.artifact import ARTIFACT_FILES, CARD
    from menas_zoo.hub.resolve import resolve

    for name in args.models:
        source = resolve(name, offline=True).path
        out = RUNS / "publish" / name  # the folder name travels in the ONNX metadata, as publish's does
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for file_name in ARTIFACT_FILES:
            if (source / file_name).is_file() and file_name != CARD:  # the card is rendered anew
                shutil.copy2(source / file_name, out / file_name)
        deployment_files(out, name)


def stage_table(args) -> None:
    from menas_zoo.costs import genotype_cost, human

    lines = ["| model | params | MACs | test accuracy | epochs | trained on | minutes |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for name in ("mt-a", "mt-b", "mt-c", "peer"):
        finals = [json.loads(path.read_text()) for path in RESULTS.glob(f"final-{name}-e*.json")]
        for final in sorted(finals, key=lambda f: (f["recipe"]["epochs"], f.get("train_seed", 0))):
            cost = genotype_cost(winner_genotype(name))
            label = f"{name} (training seed {final['train_seed']})" if final.get("train_seed") else name
            lines.append(f"| {label} | {human(cost.params)} | {human(cost.macs)} | {final['test_acc']:.4f} | "
                         f"{final['epochs']} | {final['device']} | {final['train_seconds'] / 60:.0f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def parse_headroom_row(text: str, seed: int) -> tuple[float, int, int]:
    """``2x10``: every width times 2, trained 10 epochs with training seed ``seed``; ``1x10@1``: seed 1."""
    try:
        spec, _, seed_text = text.lower().partition("@")
        width, epochs = spec.split("x")
        width, epochs, seed = float(width), int(epochs), int(seed_text) if seed_text else seed
    except ValueError:
        raise SystemExit(f"error: a headroom row is WIDTHxEPOCHS[@SEED] (e.g. 2x10, 1x10@1), got {text!r}") from None
    if width <= 0 or epochs < 1 or seed < 0:
        raise SystemExit(f"error: a headroom row needs a positive width, at least 1 epoch and a seed >= 0, "
                         f"got {text!r}")
    return width, epochs, seed


def headroom_label(width: float, epochs: int, seed: int) -> str:
    """A row's name, as ``parse_headroom_row`` reads it: ``2x10``, ``1x10@1``."""
    return f"{width:g}x{epochs}" + (f"@{seed}" if seed else "")


def stage_headroom(args) -> None:
    """Validation accuracy of a model's genotype widened and trained longer, each row from scratch with
    RECIPE on the training images less a 10,000-image validation split (the test split is never read),
    paired against the first row on the same validation images (exact McNemar test), with each row's ORT
    batch-1 latency against the peer's in alternating rounds."""
    from menas_zoo.costs import genotype_cost
    from menas_zoo.data import BatchLoader, load_splits
    from menas_zoo.export.bench import mcnemar
    from menas_zoo.io import write_json_atomic
    from menas_zoo.nets import build_model
    from menas_zoo.space.budget import scale_widths
    from menas_zoo.train import train

    specs = [parse_headroom_row(r, args.train_seed) for r in args.rows]
    if args.ema and args.teacher:
        raise SystemExit("error: headroom takes --ema or --teacher, not both (each is paired with the plain row)")
    splits = load_splits("fashion-mnist", val_size=HEADROOM_VAL, seed=DATA_SEED, train_subset=args.train_subset)
    recipe = {**RECIPE, "ema_decay": args.ema} if args.ema else RECIPE
    ema = f"-ema{args.ema:g}" if args.ema else ""  # a row with an average is its own training and summary
    kd = f"-kd{args.teacher.lower()}" if args.teacher else ""  # so is a distilled one

    def row_run(name: str, genotype, width: float, epochs: int, seed: int, config: dict, suffix: str = "", **kw):
        """Train (or, when its checkpoint is finished, load) one row's network; its folder names the row."""
        torch.manual_seed(seed)
        model = build_model(genotype)
        result = train(model, splits, train_config({**config, "epochs": epochs}, args.device, seed),
                       out_dir=RUNS / f"headroom-{name}" / f"w{width:g}-e{epochs}-seed{seed}{suffix}",
                       desc=f"headroom {name} {headroom_label(width, epochs, seed)}{suffix}", validate="none", **kw)
        return model.eval(), result

    def scored(model) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model(x).argmax(1).cpu() == y.cpu()
                              for x, y in BatchLoader(splits.val, 500, device=next(model.parameters()).device)])

    for name in args.models:
        base, rows, correct = winner_genotype(name), [], []
        teacher = distilled = None
        if args.teacher:  # another row of this model, trained alike on the same images (first, if missing)
            tw, te, ts = parse_headroom_row(args.teacher, args.train_seed)
            teacher, _ = row_run(name, scale_widths(base, tw), tw, te, ts, RECIPE)
            teacher_acc = scored(teacher).float().mean().item()
            distilled = {**RECIPE, "distill_alpha": args.distill_alpha, "distill_temperature": args.distill_temperature,
                         "teacher": f"headroom row {args.teacher} of {name} ({teacher_acc:.4f} on validation)"}
            print(f"  {name} teacher {args.teacher}: val {teacher_acc:.4f}", flush=True)
        for width, epochs, seed in specs:
            genotype = scale_widths(base, width)
            label = headroom_label(width, epochs, seed)
            model, result = row_run(name, genotype, width, epochs, seed, recipe, ema)
            right = scored(model)
            correct.append(right)
            cost = genotype_cost(genotype)
            rows.append({"row": label, "width": width, "epochs": epochs, "train_seed": seed, "params": cost.params,
                         "macs": cost.macs, "val_acc": right.sum().item() / len(right),
                         "train_seconds": round(result.seconds, 1), "genotype": genotype.to_compact()})
            if result.ema is not None:  # the same run's average, on the same images
                averaged = scored(result.ema)
                only_ema, only_raw, p = mcnemar(averaged.tolist(), right.tolist())
                rows[-1]["ema"] = {"decay": args.ema, "val_acc": averaged.sum().item() / len(averaged),
                                   "points": round((only_ema - only_raw) / len(right) * 100, 2),
                                   "only_ema": only_ema, "only_raw": only_raw, "mcnemar_p": p}
            if teacher is not None:  # the same row distilled from the teacher, on the same images
                student, learned = row_run(name, genotype, width, epochs, seed, distilled, kd, teacher=teacher)
                taught = scored(student)
                only_kd, only_raw, p = mcnemar(taught.tolist(), right.tolist())
                rows[-1]["distilled"] = {"teacher": args.teacher, "teacher_val_acc": round(teacher_acc, 4),
                                         "alpha": args.distill_alpha, "temperature": args.distill_temperature,
                                         "val_acc": taught.sum().item() / len(taught),
                                         "points": round((only_kd - only_raw) / len(right) * 100, 2),
                                         "only_distilled": only_kd, "only_row": only_raw, "mcnemar_p": p,
                                         "train_seconds": round(learned.seconds, 1)}
            print(f"  {name} {label}: val {rows[-1]['val_acc']:.4f} ({cost.params:,} params, {cost.macs / 1e6:.1f}M "
                  f"MACs, {result.seconds / 60:.1f} min)"
                  + (f"; its EMA {rows[-1]['ema']['val_acc']:.4f}" if result.ema is not None else "")
                  + (f"; distilled {rows[-1]['distilled']['val_acc']:.4f}" if teacher is not None else ""), flush=True)
        for row, right in zip(rows, correct):
            only_row, only_base, p = mcnemar(right.tolist(), correct[0].tolist())
            row["vs_first"] = {"points": round((only_row - only_base) / len(right) * 100, 2), "only_row": only_row,
                               "only_first": only_base, "mcnemar_p": p}
        widths = {f"{r['width']:g}": scale_widths(base, r["width"]) for r in rows}  # latency is the network's
        latency, vs_peer = ort_latencies({"peer": peer_genotype(), **widths})
        for r in rows:
            w = f"{r['width']:g}"
            r.update(ort_b1_p50_ms=round(latency[w], 4), **peer_columns(vs_peer[w]))
        summary = {"model": name, "base_genotype": base.to_compact(), "recipe": {**recipe, "epochs": "per row"},
                   **({"distilled_recipe": {**distilled, "epochs": "per row"}} if distilled else {}),
                   "train_images": len(splits.train), "val_images": len(splits.val),
                   "peer_ort_b1_p50_ms": round(latency["peer"], 4), "rows": rows}
        write_json_atomic(RESULTS / f"headroom-{name}{ema}{kd}.json", summary)
        print(headroom_table(summary))


def headroom_table(summary: dict) -> str:
    from menas_zoo.costs import human

    ema = any("ema" in r for r in summary["rows"])
    kd = any("distilled" in r for r in summary["rows"])
    lines = [f"{summary['model']}: row WxE[@S] = every width x W, E epochs from scratch (training seed S, else 0), "
             f"{summary['train_images']:,} training images, "
             f"{summary['val_images']:,} validation images (peer: {summary['peer_ort_b1_p50_ms']:.3f} ms)",
             "| row | params | MACs | val acc | vs first row | ORT b1 p50 ms | vs peer | minutes |"
             + (" its EMA (vs the row) |" if ema else "") + (" distilled (vs the row) |" if kd else ""),
             "|---|---:|---:|---:|---|---:|---|---:|" + ("---|" if ema else "") + ("---|" if kd else "")]
    for r in summary["rows"]:
        v = r["vs_first"]
        line = (f"| {r['row']} | {human(r['params'])} | {human(r['macs'])} | {r['val_acc'] * 100:.2f}% | "
                f"{v['points']:+.2f} (p {v['mcnemar_p']:.2g}) | {r['ort_b1_p50_ms']:.3f} | "
                f"{r['vs_peer_p50_ratio']:.2f}x ({r['faster_rounds']}) | {r['train_seconds'] / 60:.0f} |")
        if ema:
            e = r["ema"]
            line += f" {e['val_acc'] * 100:.2f}% ({e['points']:+.2f}, p {e['mcnemar_p']:.2g}) |"
        if kd:
            d = r["distilled"]
            line += f" {d['val_acc'] * 100:.2f}% ({d['points']:+.2f}, p {d['mcnemar_p']:.2g}) |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["search", "select", "adopt", "train", "publish", "retime", "table",
                                          "headroom"])
    parser.add_argument("--classes", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    parser.add_argument("--models", nargs="+", default=["mt-a", "mt-b", "mt-c", "peer"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--budget-minutes", type=float, default=None, help="search: stop (resumably) after this")
    parser.add_argument("--max-macs", type=float, default=None,
                        help="search: a MACs limit beside the class's params limit (latency: see zoo_gpu.sh)")
    parser.add_argument("--faster-than-peer", action="store_true",
                        help="search: only candidates faster than the peer in ONNX Runtime, timed against it in "
                             "alternating rounds")
    parser.add_argument("--peer-margin", type=float, default=1.0,
                        help="search, with --faster-than-peer: the most a candidate's latency may be, as a share "
                             "of the peer's (below 1 leaves room for another machine)")
    parser.add_argument("--ablation", type=Path, default=ROOT / "runs" / "ablation",
                        help="adopt: a finished search ablation folder")
    parser.add_argument("--candidates", type=int, default=4, help="select: top trials retrained per class")
    parser.add_argument("--select-epochs", type=int, default=15)
    parser.add_argument("--select-subset", type=int, default=None, help="select: train on only this many images")
    parser.add_argument("--population", type=int, default=None, help="search: override the zoo setting (smoke runs)")
    parser.add_argument("--generations", type=int, default=None, help="search: override the zoo setting")
    parser.add_argument("--seed", type=int, default=None,
                        help="search: its seed (default 0), so that searches under different limits draw differently")
    parser.add_argument("--train-subset", type=int, default=None, help="search and train: fewer images (smoke runs)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"train: the recipe's epochs (default {RECIPE['epochs']}); publish: the round to "
                             f"publish (default {PUBLISHED_EPOCHS})")
    parser.add_argument("--train-seed", type=int, default=0,
                        help="train: another training seed (0, the default, is the published model's)")
    parser.add_argument("--rows", nargs="+", default=["1x10", "2x10", "1x30"],
                        help="headroom: WIDTHxEPOCHS[@SEED] rows (every width times WIDTH, trained EPOCHS with "
                             "training seed SEED, else --train-seed)")
    parser.add_argument("--ema", type=float, default=None, metavar="DECAY",
                        help="headroom: each row also scores its run's exponential moving average of the weights "
                             "(decay per step), paired with the row on the same images")
    parser.add_argument("--teacher", default=None, metavar="ROW",
                        help="headroom: each row is also trained distilled from another row of the same model "
                             "(WIDTHxEPOCHS[@SEED], trained first if missing), paired with the row on the same images")
    parser.add_argument("--distill-alpha", type=float, default=0.9,
                        help="headroom --teacher: the share of the loss that follows the teacher")
    parser.add_argument("--distill-temperature", type=float, default=4.0, help="headroom --teacher: the softening")
    parser.add_argument("--runs", type=Path, default=None, help="state folder (default runs/zoo)")
    parser.add_argument("--results", type=Path, default=None, help="summary folder (default results/zoo)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0 < args.peer_margin <= 1:
        parser.error(f"--peer-margin must lie in (0, 1], got {args.peer_margin}")
    global RUNS, RESULTS
    RUNS, RESULTS = args.runs or RUNS, args.results or RESULTS
    from menas_zoo.errors import MenasError

    try:
        {"search": stage_search, "select": stage_select, "adopt": stage_adopt, "train": stage_train,
         "publish": stage_publish, "retime": stage_retime, "table": stage_table,
         "headroom": stage_headroom}[args.stage](args)
    except MenasError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
