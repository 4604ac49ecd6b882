"""ONNX Runtime sessions for measurement: pinned thread counts, chosen providers, load errors as one line.

Execution providers are the CPU one unless the caller names others (``--providers cuda,cpu``); names
are checked by :func:`menas_zoo.edge.resolve_providers`, so an unknown or unavailable provider is one line.

Threads are pinned explicitly because ORT's default (one intra-op thread per core, spinning) makes
latency depend on whatever else runs on the machine; a benchmark states its thread count instead.
Sequential execution with one inter-op thread is right for these single-branch convnets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from menas_zoo.edge import resolve_providers
from menas_zoo.errors import MenasError, first_line

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(threads: int = 1, optimization: str = "all") -> ort.SessionOptions:
    if threads < 1:
        raise MenasError(f"thread count must be at least 1, got {threads}")
    if optimization not in _LEVELS:
        raise MenasError(f"unknown ORT optimization level {optimization!r}; known: {', '.join(_LEVELS)}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = _LEVELS[optimization]
    opts.log_severity_level = 3  # errors only: ORT's warnings would land in the middle of CLI tables
    if threads == 1:
        # With one thread there is nobody to hand work to; spinning only steals a core from the timer.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def ort_session(path: str | Path, *, threads: int = 1, optimization: str = "all",
                providers: str | Sequence[str] | None = None) -> ort.InferenceSession:
    """An inference session for ``path`` (CPU unless ``providers`` says otherwise); a missing or malformed
    file, or an unknown provider, raises :class:`MenasError`."""
    chosen = resolve_providers(providers)
    path = Path(path)
    if not path.is_file():
        raise MenasError(f"ONNX file not found: {path}")
    try:
        return ort.InferenceSession(str(path), sess_options=session_options(threads, optimization),
                                    providers=chosen)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types, all RuntimeError-ish
        detail = first_line(exc)
        raise MenasError(f"{path} does not load in ONNX Runtime: {detail}") from None


def optimize_offline(src: str | Path, dst: str | Path, *, level: str = "extended") -> None:
    """Write ORT's graph-optimized model (fusions, constant folding) to ``dst`` ahead of time.

    ``extended`` rather than ``all``: ``all`` adds layout transforms for this CPU's vector width (NCHWc),
    so the file would be tied to the machine that wrote it. Extended fusions may use ORT contrib ops,
    so the optimized file is for ONNX Runtime only (the report says so).
    """
    opts = session_options(1, level)
    opts.optimized_model_filepath = str(dst)
    try:
        ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise MenasError(f"ONNX Runtime could not optimize {src}: {first_line(exc)}") from None
