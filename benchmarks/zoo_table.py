"""The zoo's table: every listed model and the MobileNetV3-Small peer, measured side by side in one run.

    python benchmarks/zoo_table.py [--peer runs/zoo/final-peer-e30/model] [--rounds 15] [--write-docs] [--json]

Per model: params and MACs of the live network, Fashion-MNIST test accuracy of the live PyTorch model
(all 10,000 test images, measured now, never used to choose anything), an int8 file quantized the way
``menas-zoo export --int8`` does (static QDQ, calibrated on training images) and its test accuracy, ONNX
Runtime batch-1 latency p50/p90 of fp32 and int8, and eager PyTorch batch-1 p50, all with one thread.
ONNX Runtime latencies are measured in rounds that alternate the files (``interleaved_rounds``); each
file's p50/p90 is its fastest round. "Faster than peer" compares within rounds (``paired_verdict``): the
median over rounds of the model's p50 over the peer's, and in how many rounds the model was the faster, so
neither a burst of load in one round nor a machine that speeds up or slows down between runs decides it;
the verdict is yes or no only where a sign test over the rounds says so (p < 0.05), else tie.

The peer is torchvision's ``mobilenet_v3_small`` built for 1x28x28 and trained with the zoo's recipe
and epochs (``scripts/build_zoo.py train --models peer --epochs E``): each model meets the peer trained
for its own epochs, one peer row per epoch count. Without its trained weights (``runs/`` is not kept from
machine to machine) its latency is measured all the same, which weights do not change, and its test
accuracy is the one its final training recorded (``results/zoo/final-peer-e<epochs>.json``), shown as
such; the paired test needs the weights. Writes ``results/zoo/table.md`` and ``table.json``; with
``--write-docs`` the table also replaces the one between the zoo-table markers in README.md and
MODEL_CARD.md (both copies).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from menas_zoo.artifact import load_artifact
from menas_zoo.costs import genotype_cost
from menas_zoo.data import load_dataset
from menas_zoo.export.bench import bench_eager, cpu_model, interleaved_rounds, mcnemar, paired_verdict
from menas_zoo.export.onnx import export_onnx
from menas_zoo.export.parity import real_images
from menas_zoo.export.quantize import onnx_accuracy, quantize_int8
from menas_zoo.hub.registry import get_entry, list_models
from menas_zoo.hub.resolve import resolve
from menas_zoo.nets import build_model
from menas_zoo.space import resolve_genotype

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "zoo"
DOCS = (ROOT / "README.md", ROOT / "MODEL_CARD.md", ROOT / "menas_zoo" / "hub" / "MODEL_CARD.md")
BEGIN, END = "<!-- zoo-table:begin (written by benchmarks/zoo_table.py) -->", "<!-- zoo-table:end -->"
#: The best published Fashion-MNIST results per size class (see the README), and the zoo's targets.
CLASSES = {"mt-a": ("<= 100K", 0.930, "92.5% (2 conv layers, < 100K)"),
           "mt-b": ("<= 500K", 0.945, "93.9% (Google AutoML, 24 compute-hours)"),
           "mt-c": ("<= 1M", 0.955, "95.4% (DenseNet-BC, 768K)")}


def zoo_models() -> list[dict]:
    models = []
    for name in list_models(pretrained=True):
        artifact = load_artifact(resolve(name, offline=True).path)
        spec = artifact.config["input_spec"]
        models.append({"name": name, "model": artifact.model, "mean": spec.get("mean"), "std": spec.get("std"),
                       "recorded": get_entry(name).metrics["accuracy"]["value"],
                       "epochs": artifact.config.get("provenance", {}).get("epochs")})
    return models


def peers(models: list[dict], weights: Path | None) -> list[dict]:
    """The peer trained for each epoch count among the zoo's models (``final-peer-e<epochs>``), so that every
    model meets a peer of its own recipe and epochs; or only the one ``--peer`` names, for every model."""
    if weights is not None:
        return [peer_model(weights, "peer", None)]
    rounds = sorted({m["epochs"] for m in models}, key=lambda e: (e is None, e or 0))  # 30 before 100
    folder = ROOT / "runs" / "zoo"
    return [peer_model(folder / f"final-peer-e{e}" / "model", "peer" if len(rounds) == 1 else f"peer-e{e}", e)
            for e in rounds]


def peer_model(weights: Path, name: str, epochs: int | None) -> dict:
    if (weights / "config.json").exists():
        artifact = load_artifact(weights)
        spec = artifact.config["input_spec"]
        return {"name": name, "model": artifact.model, "mean": spec.get("mean"), "std": spec.get("std"),
                "epochs": epochs, "peer": True}
    genotype = resolve_genotype("mobilenetv3-small", in_chans=1, resolution=28, num_classes=10)
    peer = {"name": name, "model": build_model(genotype).eval(), "untrained": True, "epochs": epochs, "peer": True}
    record = RESULTS / f"final-peer-e{epochs}.json"
    if epochs is not None and record.is_file():
        peer["recorded_acc"] = json.loads(record.read_text())["test_acc"]
    return peer


def peer_of(model: dict, models: list[dict]) -> dict | None:
    """The peer a model is compared with: the one trained for its epochs, else the only one."""
    found = [m for m in models if m.get("peer")]
    return next((m for m in found if m["epochs"] == model["epochs"]), found[0] if len(found) == 1 else None)


def measure(models: list[dict], rounds: int, runs: int) -> None:
    test, train = load_dataset("fashion-mnist", split="test"), load_dataset("fashion-mnist", split="train")
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            net = m["model"].eval()
            g = net.genotype
            cost = genotype_cost(g)
            m["params"], m["macs"] = sum(p.numel() for p in net.parameters()), cost.macs
            assert m["params"] == cost.params, f"{m['name']}: closed-form params disagree with the network"
            m["fp32"] = Path(tmp) / f"{m['name']}.onnx"
            m["int8"] = Path(tmp) / f"{m['name']}.int8.onnx"
            export_onnx(net, m["fp32"])
            images = real_images(test, len(test), mean=m.get("mean"), std=m.get("std"))  # as it was trained
            quantize_int8(m["fp32"], m["int8"], real_images(train, 512, mean=m.get("mean"), std=m.get("std")))
            if not m.get("untrained"):
                m["correct"] = correct_per_image(net, images, test.labels)  # per image, for the paired test
                m["test_acc"] = int(m["correct"].sum()) / len(m["correct"])
                m["int8_acc"] = onnx_accuracy(m["int8"], images, test.labels)
            print(f"{m['name']}: exported and evaluated", flush=True)
        files = {(m["name"], kind): m[kind] for m in models for kind in ("fp32", "int8")}
        measured = interleaved_rounds(files, rounds=rounds, runs=runs)  # ORT files alternate, round by round
        for m in models:
            for kind in ("fp32", "int8"):
                s = min(measured[m["name"], kind], key=lambda s: s.p50_ms)
                m[f"{kind}_b1"] = {"p50_ms": s.p50_ms, "p90_ms": s.p90_ms}
            peer = peer_of(m, models)
            if peer is not None and not m.get("peer"):
                m["vs_peer"] = paired_verdict(measured[m["name"], "fp32"], measured[peer["name"], "fp32"])
                if "correct" in m and "correct" in peer:
                    m["vs_peer_test"] = {"peer": peer["name"], **versus_peer(m["correct"], peer["correct"])}
            s = min((bench_eager(m["model"], (1, 28, 28), runs=runs)[0] for _ in range(rounds)), key=lambda s: s.p50_ms)
            m["eager_b1"] = {"p50_ms": s.p50_ms, "p90_ms": s.p90_ms}


@torch.no_grad()
def correct_per_image(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Which test images the network classifies right (bool per image): its accuracy, and the paired test below."""
    return torch.cat([net(images[i:i + 500]).argmax(1) == labels[i:i + 500] for i in range(0, len(images), 500)])


def versus_peer(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Model ``a`` against ``b`` on the same test images: the accuracy difference in points, the images only
    one of them gets right, and the exact two-sided McNemar p-value (a binomial test on those images),
    which says whether the difference is more than the luck of which 10,000 images were drawn."""
    only_a, only_b, p = mcnemar(a.tolist(), b.tolist())
    return {"points": round((only_a - only_b) / len(a) * 100, 2), "only_model": only_a, "only_peer": only_b,
            "mcnemar_p": p}


def rows(models: list[dict]) -> list[list[str]]:
    out = []
    for m in models:
        acc = f"{m['test_acc'] * 100:.2f}%" if "test_acc" in m else "untrained"
        if "recorded_acc" in m:
            acc = f"{m['recorded_acc'] * 100:.2f}% (recorded)"
        int8 = f"{m['int8_acc'] * 100:.2f}%" if "int8_acc" in m else "-"
        size, target, published = CLASSES.get(m["name"], ("-", None, "-"))
        faster = "-"
        if "vs_peer" in m:
            v = m["vs_peer"]
            verdict = {"faster": "yes", "slower": "no", "tie": "tie"}[v["verdict"]]
            faster = f"{verdict} ({v['p50_ratio']:.2f}x, {v['faster_rounds']}/{v['rounds']})"
        out.append([m["name"], size, f"{m['params']:,}", f"{m['macs'] / 1e6:.1f}M", str(m.get("epochs") or "-"),
                    acc,
                    f"{target * 100:.1f}%" if target else "-", published,
                    f"{m['fp32_b1']['p50_ms']:.3f} / {m['fp32_b1']['p90_ms']:.3f}", f"{m['eager_b1']['p50_ms']:.3f}",
                    int8, f"{m['int8_b1']['p50_ms']:.3f}", faster])
    return out


COLUMNS = ["model", "class", "params", "MACs", "epochs", "test acc", "target", "best published", "ORT b1 p50 / p90 ms",
           "eager b1 p50 ms", "int8 acc", "int8 b1 p50 ms", "faster than peer"]


def markdown(models: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(models)]
    machine = (f"{cpu_model()}, ONNX Runtime and PyTorch on 1 thread, "
               f"onnxruntime {__import__('onnxruntime').__version__}")
    return "\n".join(lines) + (f"\n\nFashion-MNIST test split (10,000 images). Latency measured on {machine}. "
                                "Faster than peer: the median over rounds of the model's ORT p50 over the peer's "
                                "in the same round, and the rounds in which the model was the faster; yes or no "
                                "when a one-sided sign test over the rounds gives p < 0.05, else tie (the order "
                                "flips between rounds). A verdict holds for this machine: near 1x it can change "
                                "on another."
                                + significance(models) + "\n")


def significance(models: list[dict]) -> str:
    tested = [m for m in models if "vs_peer_test" in m]
    recorded = [m["name"] for m in models if "recorded_acc" in m]
    if recorded:
        return (f" {', '.join(recorded)}: test accuracy as its final training recorded it; its weights were not "
                "on the machine, so its latency was measured untrained (weights do not change it) and no model "
                "was paired with it on the test images.")
    if not tested:
        return ""
    parts = [f"{m['name']} {m['vs_peer_test']['points']:+.2f} points (p = {m['vs_peer_test']['mcnemar_p']:.2g})"
             for m in tested]
    return (" Test accuracy over the peer's trained for the same epochs, on the same images (exact McNemar test): "
            + ", ".join(parts)
            + "; one training seed each, so the spread between trainings is not in these p-values.")


def write_docs(table: str) -> None:
    for path in DOCS:
        text = path.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{path} has no zoo-table markers")
        head, rest = text.split(BEGIN, 1)
        path.write_text(head + BEGIN + "\n" + table + rest[rest.index(END):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", type=Path, default=None,
                        help="the trained peer's artifact folder, for every model (default: the peer's final "
                             "training with each model's epochs)")
    parser.add_argument("--rounds", type=int, default=15, help="alternating ORT rounds (the sign test's n)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per model and round")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = zoo_models()
    models += peers(models, args.peer)
    measure(models, args.rounds, args.runs)
    table = markdown(models)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "table.md").write_text(table)
    summary = [{k: v for k, v in m.items() if k not in ("model", "fp32", "int8", "correct")} for m in models]
    (RESULTS / "table.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.write_docs:
        write_docs(table)
    print(json.dumps(summary, indent=2) if args.json else table)


if __name__ == "__main__":
    main()
