"""nn.Module -> single-file ONNX, with the exporter chosen explicitly and the result fully checked.

Exporter: ``dynamo`` (``torch.onnx.export(..., dynamo=True)``, built on ``torch.export``) is the default
because it is the path PyTorch maintains: since torch 2.9 it is torch's own default, and the TorchScript
exporter warns that it will be removed. ``torchscript`` is kept as an explicit choice because it is about
ten times faster to run (seconds instead of tens of seconds on a small CPU), which matters when the latency
table exports hundreds of single-block graphs; both give the same operators for these networks
(Conv, HardSwish, HardSigmoid, ReduceMean, Gemm/MatMul), so latencies measured with one hold for the other.

Opsets: the dynamo exporter emits opset 18 natively and converts to newer ones; older opsets would go through
onnx's version converter, which we do not trust for a shipped file, so they are refused. The TorchScript
exporter supports 13 to 20 here. Everything is written to a temporary name and renamed once checked.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from menas_zoo.errors import MenasError, first_line
from menas_zoo.export.defaults import DEFAULT_OPSET, EXPORTERS
from menas_zoo.io import atomic_path
from menas_zoo.export.runtime import optimize_offline

#: Opsets each exporter is allowed to write (the upper bound is what onnxruntime 1.18+ runs).
SUPPORTED_OPSETS = {"dynamo": range(18, 22), "torchscript": range(13, 21)}
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass
class ExportResult:
    """What was written and how; recorded in the export report."""

    path: str
    exporter: str
    opset: int
    dynamic_batch: bool
    export_batch: int
    input_shape: list[int | str]
    optimized: bool
    size_bytes: int
    seconds: float
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME

    def as_dict(self) -> dict:
        return asdict(self)


def check_opset(opset: int, exporter: str = "dynamo") -> None:
    if exporter not in EXPORTERS:
        raise MenasError(f"unknown exporter {exporter!r}; known: {', '.join(EXPORTERS)}")
    allowed = SUPPORTED_OPSETS[exporter]
    if opset not in allowed:
        raise MenasError(f"opset {opset} is not supported by the {exporter} exporter; "
                         f"use {allowed.start} to {allowed.stop - 1} (default {DEFAULT_OPSET})")


def input_shape_of(model: nn.Module, batch: int = 1) -> tuple[int, int, int, int]:
    """The (B, C, H, W) a MobileNetMT reads, from its genotype."""
    genotype = getattr(model, "genotype", None)
    if genotype is None:
        raise MenasError("the model has no genotype; pass input_shape=(C, H, W) explicitly")
    return batch, genotype.in_chans, genotype.resolution, genotype.resolution


def export_onnx(model: nn.Module, path: str | Path, *, opset: int = DEFAULT_OPSET, exporter: str = "dynamo",
                dynamic_batch: bool = True, export_batch: int = 2, input_shape: tuple[int, int, int] | None = None,
                optimize: bool = False) -> ExportResult:
    """Export ``model`` (eval mode, fp32, CPU) to one ONNX file at ``path`` and check it.

    ``export_batch`` is the batch of the example input used for tracing; parity is then proved at a
    different batch size, which catches a batch dimension baked in as a constant. ``optimize`` runs
    ONNX Runtime's offline graph optimization (the file then needs ONNX Runtime to run).
    """
    check_opset(opset, exporter)
    if export_batch < 1:
        raise MenasError(f"export batch must be at least 1, got {export_batch}")
    path = Path(path)
    shape = (export_batch, *input_shape) if input_shape else input_shape_of(model, export_batch)
    # A private copy: exporting must not flip a caller's model to eval or move it off its device.
    net = copy.deepcopy(model).float().cpu().eval()
    example = torch.randn(*shape)
    start = time.perf_counter()
    with atomic_path(path) as tmp:
        _run_exporter(net, example, tmp, opset=opset, exporter=exporter, dynamic_batch=dynamic_batch)
        check_onnx(tmp)
        if optimize:  # checked first: the optimized file may hold ORT contrib ops the checker does not know
            raw = tmp.with_name(tmp.name + ".raw")
            tmp.replace(raw)
            try:
                optimize_offline(raw, tmp)
            finally:
                raw.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    batch_dim: int | str = "batch" if dynamic_batch else export_batch
    return ExportResult(path=str(path), exporter=exporter, opset=opset, dynamic_batch=dynamic_batch,
                        export_batch=export_batch, input_shape=[batch_dim, *shape[1:]], optimized=optimize,
                        size_bytes=path.stat().st_size, seconds=round(seconds, 3))


def _run_exporter(net: nn.Module, example: torch.Tensor, dst: Path, *, opset: int, exporter: str,
                  dynamic_batch: bool) -> None:
    try:
        if exporter == "dynamo":
            dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
            program = torch.onnx.export(net, (example,), None, dynamo=True, opset_version=opset,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=dynamic_shapes, external_data=False, optimize=True,
                                        verbose=False)
            program.save(str(dst), external_data=False)  # one file: weights inline, not beside it
            strip_stack_traces(dst)
        else:
            dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
            with warnings.catch_warnings():
                # Chosen on purpose (see module doc): the deprecation notice is not news to the user.
                warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export.*")
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                torch.onnx.export(net, (example,), str(dst), dynamo=False, opset_version=opset,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes,
                                  do_constant_folding=True)
    except MenasError:
        raise
    except Exception as exc:  # exporter failures are torch-internal; report them in one line
        detail = first_line(exc)
        raise MenasError(f"ONNX export ({exporter}, opset {opset}) failed: {detail}") from None


#: Node metadata the dynamo exporter adds for debugging: Python stack traces, which name the exporting
#: machine's file paths. A published file must not carry them.
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


def strip_stack_traces(path: str | Path) -> None:
    """Remove the exporter's per-node stack traces from the ONNX file at ``path`` (in place)."""
    model = onnx.load(str(path))

    def strip(nodes) -> None:
        for node in nodes:
            kept = [p for p in node.metadata_props if p.key != STACK_TRACE_KEY]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
            for attribute in node.attribute:  # control-flow subgraphs
                for graph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    strip(graph.node)

    strip(model.graph.node)
    for function in model.functions:
        strip(function.node)
    onnx.save(model, str(path))


def check_onnx(path: str | Path) -> onnx.ModelProto:
    """Load and run ``onnx.checker`` with ``full_check`` (strict shape inference included)."""
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise MenasError(f"{path} fails the ONNX checker: {first_line(exc)}") from None
    return model


def embed_metadata(path: str | Path, props: dict[str, str]) -> None:
    """Write ``props`` into the file's ``metadata_props`` (replacing keys of the same name), atomically.

    These are what make the file self-contained: :mod:`menas_zoo.edge` reads labels, normalization and
    input size from them (see its module doc for the keys).
    """
    path = Path(path)
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=str(value))
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
