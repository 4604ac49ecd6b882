"""A per-device latency lookup table: each distinct part of a network timed alone in ONNX Runtime.

A network is a sum of parts (stem, each inverted-residual block, head), and a part's cost depends only
on its configuration and input size, so one table measured on a machine predicts the latency of any
genotype built from known parts, in microseconds instead of an export and a benchmark. This is what a
search can use to screen candidates against a latency budget before training them.

Keys name a part completely: ``block:i16_k5_h96_c40_s2_se_hs@28`` is that block reading 16 channels at
28x28; ``stem:i1_c16_k3_s1@28``; ``head:i96_c576_fc1024_n10@7``. Entries hold the part's latency as
:mod:`menas_zoo.export.latency` defines it (``p90``, the statistic a latency limit is checked against) and
``{count, mean, var}`` of its per-call milliseconds. Every ``session.run`` pays a fixed cost (input
binding, output allocation) that a whole network pays once, not once per part; the table measures it on a
one-op graph (``overhead``) and the predictor counts it once: a network's predicted latency is the
overhead's p90 plus each part's p90 above it. Summing p90s assumes the parts' slow calls coincide;
:func:`evaluate_predictor` reports how far that lands from whole networks measured as a search measures
them, on the machine at hand.

Parts and networks are exported and timed by :func:`menas_zoo.export.latency.onnx_call_times` (TorchScript
exporter, opset ``LATENCY_OPSET``): the table needs hundreds of tiny graphs, and that exporter is about ten
times faster to run than dynamo, for the same operators (see onnx.py).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from menas_zoo.errors import MenasError
from menas_zoo.export.bench import machine_fingerprint
from menas_zoo.export.defaults import LATENCY_OPSET, LATENCY_PERCENTILE
from menas_zoo.export.latency import LATENCY_EXPORTER, latency_statistic, onnx_call_times
from menas_zoo.io import write_json_atomic
from menas_zoo.nets import MobileNetMT, build_model
from menas_zoo.space.genotype import Genotype

TABLE_KIND = "menas-zoo latency table"
TABLE_VERSION = 2  # 2: entries carry the p90 a limit is checked against (1 predicted a mean)
OVERHEAD = "overhead"
TABLE_EXPORTER = LATENCY_EXPORTER
TABLE_OPSET = LATENCY_OPSET
STATISTIC = f"p{LATENCY_PERCENTILE}"


class _Head(nn.Module):
    """The tail of a MobileNetMT after the last block: head conv, pool, [fc], classifier."""

    def __init__(self, model: MobileNetMT):
        super().__init__()
        self.head, self.fc, self.classifier = model.head, model.fc, model.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fc(self.head(x).mean((2, 3))))


@dataclass
class Part:
    key: str
    module: nn.Module
    input_shape: tuple[int, int, int]  # (C, H, W) at batch 1


def part_keys(genotype: Genotype) -> list[str]:
    """The table keys of ``genotype``'s parts, in network order, from the genotype alone (no model built)."""
    g = genotype
    # Spatial sizes follow from the strides (odd kernels with 'same' padding): ceil(size / stride).
    size = g.resolution
    keys = [f"stem:i{g.in_chans}_c{g.stem}_k3_s{g.stem_stride}@{size}"]
    size = -(-size // g.stem_stride)
    for _, _, in_ch, spec in g.blocks():
        keys.append(f"block:i{in_ch}_{spec.to_string(in_ch)}@{size}")
        size = -(-size // spec.stride)
    keys.append(f"head:i{g.last_channels}_c{g.head}_fc{g.fc}_n{g.num_classes}@{size}")
    return keys


def network_parts(model: MobileNetMT) -> list[Part]:
    """The stem, every block and the head of ``model`` with their keys and the input each one sees
    (recorded in a forward pass and checked against the key, so the two cannot drift apart)."""
    g = model.genotype
    modules = [model.stem, *(block for _, _, block in model.blocks()), model.head]
    shapes: list[tuple[int, int, int]] = []
    hooks = [m.register_forward_pre_hook(lambda _, args: shapes.append(tuple(args[0].shape[1:]))) for m in modules]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, g.in_chans, g.resolution, g.resolution))
    finally:
        for hook in hooks:
            hook.remove()
    keys = part_keys(g)
    for key, shape in zip(keys, shapes):
        if not key.endswith(f"@{shape[-1]}"):
            raise AssertionError(f"part {key} sees a {shape[-1]}px input: part_keys disagrees with the network")
    parts = [Part(key, module, shape) for key, module, shape in zip(keys, modules, shapes)]
    parts[-1] = Part(keys[-1], _Head(model), shapes[-1])  # the head part runs pool, fc and classifier too
    return parts


def _stats(times: np.ndarray) -> dict:
    """The part's latency (``p90``, of every call) and ``{count, mean, var}`` of the calls that measured
    the part, not the machine's other tenants.

    On a shared machine a few calls are preempted and take 10-100x longer; they would dominate a mean of
    sub-millisecond calls. Tukey's far-out fence (above Q3 + 3 IQR) drops them from the mean and variance;
    ``count`` is what is left. The p90 needs no fence: fewer than one call in ten cannot move it.
    """
    q1, q3 = np.percentile(times, [25, 75])
    kept = times[times <= q3 + 3 * (q3 - q1)]
    return {STATISTIC: latency_statistic(times), "count": int(len(kept)), "mean": round(float(kept.mean()), 5),
            "var": float(kept.var(ddof=1)) if len(kept) > 1 else 0.0}


@dataclass
class LatencyTable:
    entries: dict[str, dict] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def missing(self, genotype: Genotype) -> list[str]:
        return [k for k in dict.fromkeys(part_keys(genotype)) if k not in self.entries]

    def predict(self, genotype: Genotype) -> tuple[float, float]:
        """Predicted latency in ms (the p90 of :mod:`menas_zoo.export.latency`) and the standard deviation of
        one call (parts taken as independent)."""
        missing = self.missing(genotype)
        if missing or OVERHEAD not in self.entries:
            missing = missing or [OVERHEAD]
            raise MenasError(f"latency table lacks {len(missing)} part(s) of this genotype (e.g. {missing[0]}); "
                             "measure them with 'menas-zoo bench GENOTYPE --per-block --table FILE'")
        overhead = self.entries[OVERHEAD][STATISTIC]
        keys = part_keys(genotype)
        latency = overhead + sum(max(self.entries[k][STATISTIC] - overhead, 0.0) for k in keys)
        var = sum(self.entries[k]["var"] for k in keys)
        return latency, var ** 0.5

    def to_dict(self) -> dict:
        return {"kind": TABLE_KIND, "version": TABLE_VERSION, "unit": "ms", **self.meta, "entries": self.entries}

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise MenasError(f"cannot read latency table {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("kind") != TABLE_KIND or not isinstance(data.get("entries"), dict):
            raise MenasError(f"{path} is not a menas-zoo latency table")
        if data.get("version") != TABLE_VERSION:
            raise MenasError(f"{path} is a version {data.get('version')} latency table; this menas-zoo reads "
                             f"version {TABLE_VERSION} (each part's {STATISTIC}): measure it again with "
                             "'menas-zoo bench --per-block --table FILE'")
        meta = {k: v for k, v in data.items() if k not in ("kind", "version", "unit", "entries")}
        return cls(entries=data["entries"], meta=meta)


def build_latency_table(genotypes: Iterable[Genotype], *, table: LatencyTable | None = None, threads: int = 1,
                        runs: int = 100, warmup: int = 10, exporter: str = TABLE_EXPORTER,
                        progress: bool = False) -> LatencyTable:
    """Time every distinct part of ``genotypes`` not yet in ``table`` (a new one by default)."""
    table = table or LatencyTable()
    if table.meta and (table.meta.get("threads"), table.meta.get("exporter")) != (threads, exporter):
        raise MenasError(f"the table was measured with {table.meta.get('threads')} thread(s) and the "
                         f"{table.meta.get('exporter')} exporter; extend it with the same settings")
    table.meta = {"machine": machine_fingerprint(), "threads": threads, "batch_size": 1, "runs": runs,
                  "warmup": warmup, "exporter": exporter, "opset": TABLE_OPSET, "statistic": STATISTIC,
                  "ort_optimization": "all"}
    todo: dict[str, Part] = {}
    if OVERHEAD not in table.entries:
        todo[OVERHEAD] = Part(OVERHEAD, nn.ReLU(), (1, 1, 1))
    for genotype in genotypes:
        for part in network_parts(build_model(genotype).eval()):
            if part.key not in table.entries:
                todo.setdefault(part.key, part)
    with tempfile.TemporaryDirectory(prefix="menas-zoo-latency-") as tmp:
        for key, part in tqdm(todo.items(), desc="per-block latency", unit="part", disable=not progress):
            times = onnx_call_times(part.module, part.input_shape, tmp, threads=threads, runs=runs,
                                    warmup=warmup, exporter=exporter)
            table.entries[key] = _stats(times)
    return table


def evaluate_predictor(table: LatencyTable, genotypes: Iterable[Genotype], *, runs: int | None = None,
                       warmup: int | None = None, progress: bool = False) -> dict:
    """Predicted vs measured whole-network latency (the p90 of :mod:`menas_zoo.export.latency`; batch 1, the
    table's threads and exporter).

    Returns ``{"networks": [...], "median_abs_error_pct", "worst_abs_error_pct", "mean_error_pct"}``;
    a positive error means the table over-predicts."""
    threads, exporter = table.meta.get("threads", 1), table.meta.get("exporter", TABLE_EXPORTER)
    runs, warmup = runs or table.meta.get("runs", 100), warmup if warmup is not None else table.meta.get("warmup", 10)
    rows = []
    genotypes = list(genotypes)
    with tempfile.TemporaryDirectory(prefix="menas-zoo-latency-") as tmp:
        for genotype in tqdm(genotypes, desc="whole networks", unit="net", disable=not progress):
            predicted, predicted_std = table.predict(genotype)
            g = genotype
            times = onnx_call_times(build_model(g).eval(), (g.in_chans, g.resolution, g.resolution), tmp,
                                    threads=threads, runs=runs, warmup=warmup, exporter=exporter)
            measured = latency_statistic(times)
            rows.append({"genotype": genotype.to_compact(), "predicted_ms": round(predicted, 4),
                         "predicted_std_ms": round(predicted_std, 4), "measured_ms": round(measured, 4),
                         "error_pct": round((predicted - measured) / measured * 100, 2)})
    errors = [abs(r["error_pct"]) for r in rows]
    return {"networks": rows, "median_abs_error_pct": round(statistics.median(errors), 2) if errors else None,
            "worst_abs_error_pct": round(max(errors), 2) if errors else None,
            "mean_error_pct": round(statistics.fmean(r["error_pct"] for r in rows), 2) if rows else None}


def per_block_table(ref: str | None, table_path: str | Path, *, weights: str | Path | None = None, threads: int = 1,
                    runs: int = 100, warmup: int = 10, genotypes: int = 20, profile: str = "small", seed: int = 0,
                    progress: bool = False, offline: bool | None = None,
                    endpoint: str | None = None) -> tuple[LatencyTable, dict, list[Genotype]]:
    """``menas-zoo bench --per-block``: extend (or start) the table at ``table_path`` with the parts of
    ``ref``'s architecture (a genotype, or a model ref's) and of ``genotypes`` sampled from ``profile``,
    save it, and evaluate its predictor on those networks. Returns the table, the evaluation and the
    networks, ``ref``'s first."""
    from menas_zoo.space import get_profile, sample_genotype

    search_profile = get_profile(profile)
    sampled = [sample_genotype(search_profile, seed + i) for i in range(genotypes)]
    if ref is None and not sampled:
        raise MenasError("--per-block needs a REF or at least one sampled genotype (--genotypes N)")
    if ref is not None:
        if ref.endswith(".onnx"):
            raise MenasError("--per-block needs a genotype or model REF, not an .onnx file")
        sampled.insert(0, _architecture(ref, weights, offline, endpoint))
    table_path = Path(table_path)
    table = LatencyTable.load(table_path) if table_path.exists() else LatencyTable()
    table = build_latency_table(sampled, table=table, threads=threads, runs=runs, warmup=warmup, progress=progress)
    table.save(table_path)
    return table, evaluate_predictor(table, sampled, progress=progress), sampled


def _architecture(ref: str, weights: str | Path | None, offline: bool | None, endpoint: str | None) -> Genotype:
    """Only the architecture matters for latency: a genotype as it is, a model ref's genotype."""
    from menas_zoo.errors import GenotypeError
    from menas_zoo.hub.resolve import resolve_model
    from menas_zoo.space import resolve_genotype

    try:
        return resolve_genotype(ref)
    except GenotypeError:
        return resolve_model(ref, weights=weights, offline=offline, endpoint=endpoint).model.genotype
