"""Other files of one export, for other runtimes and precisions: fp16 ONNX and ORT Mobile's ``.ort``.

fp16: weights and activations in half precision with float32 input and output (``keep_io_types``), made
by ONNX Runtime's own converter. Half precision cannot match fp32 to 1e-4, so it is proved with its own
tolerance (:data:`FP16_ATOL` on logits, :data:`FP16_MIN_AGREEMENT` top-1 agreement) on the same real
images; a file that misses them is not written. On CPUs without fp16 arithmetic ORT inserts casts, so
fp16 is mostly a size (and GPU/NPU) win, not a CPU speed-up; the report's latency says which.

ORT format: what ORT Mobile loads. Written by an ONNX Runtime session at the ``basic`` optimization level
(the portable level ORT's own converter uses), after ORT's mobile usability check, which says whether
NNAPI (Android) and CoreML (iOS) are likely to run the model well.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import onnx
from onnxscript import ir
import onnxruntime as ort
import torch
from torch import nn

from menas_zoo.errors import MenasError, first_line
from menas_zoo.export.parity import ParityResult, check_parity
from menas_zoo.export.runtime import session_options
from menas_zoo.io import atomic_path

FP16_ATOL = 5e-2  # logits of magnitude ~10 carry fp16 rounding of ~1e-2
FP16_MIN_AGREEMENT = 0.99


def convert_fp16(fp32_path: str | Path, fp16_path: str | Path) -> Path:
    """Write the float16 version of ``fp32_path`` (float32 input and output), atomically; metadata is kept."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp16_path = Path(fp16_path)
    try:
        model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
        # The converter appends the input casts after the nodes that read them; ONNX wants topological order.
        graph = ir.from_proto(model)
        graph.graph.sort()
        model = ir.to_proto(graph)
        with atomic_path(fp16_path) as tmp:
            onnx.save(model, str(tmp))
            onnx.checker.check_model(str(tmp), full_check=True)
    except Exception as exc:
        raise MenasError(f"fp16 conversion of {fp32_path} failed: {first_line(exc)}") from None
    return fp16_path


def check_fp16_parity(model: nn.Module, fp16_path: str | Path, images: torch.Tensor, *, batch_size: int,
                      raw_images: torch.Tensor | None = None) -> ParityResult:
    return check_parity(model, fp16_path, images, batch_size=batch_size, atol=FP16_ATOL,
                        min_agreement=FP16_MIN_AGREEMENT, raw_images=raw_images)


def mobile_usability(onnx_path: str | Path) -> dict:
    """ORT's mobile usability check: per mobile execution provider, YES / MAYBE / NO."""
    from onnxruntime.tools.mobile_helpers.usability_checker import analyze_model

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("menas_zoo.usability_checker")
    logger.propagate, logger.handlers = False, [Collect()]
    logger.setLevel(logging.INFO)
    try:
        worth_trying = bool(analyze_model(Path(onnx_path), skip_optimize=False, logger=logger))
    except Exception as exc:
        raise MenasError(f"ORT mobile usability check of {onnx_path} failed: {first_line(exc)}") from None
    verdicts = {}
    for line in lines:
        match = re.match(r"Model should perform well with (.+?) as is: (\w+)", line)
        if match:
            verdicts[match[1]] = match[2]
    return {"mobile_eps": verdicts, "nnapi_or_coreml_worth_trying": worth_trying}


def convert_ort_format(onnx_path: str | Path, ort_path: str | Path) -> Path:
    """Write the ORT-format file of ``onnx_path`` for ORT Mobile (basic optimizations), atomically."""
    ort_path = Path(ort_path)
    with atomic_path(ort_path) as tmp:
        opts = session_options(1, "basic")
        opts.optimized_model_filepath = str(tmp)
        opts.add_session_config_entry("session.save_model_format", "ORT")
        try:
            ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise MenasError(f"ORT-format conversion of {onnx_path} failed: {first_line(exc)}") from None
    return ort_path
