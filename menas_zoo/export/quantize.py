"""Static int8: QDQ with per-channel weights, calibrated on real training images, judged against fp32.

Static, not dynamic: dynamic quantization leaves activations in float and re-quantizes them on every
call, which on these small convnets is several times slower than fp32. QDQ (QuantizeLinear/DequantizeLinear
pairs around each op) is the format ORT fuses into integer kernels and other runtimes understand.
Activations are uint8 and weights int8 per output channel (ORT's recommended x86 combination);
``reduce_range`` keeps weights to 7 bits, which avoids the u8s8 overflow of AVX2 machines without VNNI
at a small cost in accuracy.

The calibration method is the user's choice (:data:`CALIBRATION_METHODS`): min-max is fast and the
default; entropy and percentile clip outliers, which can help when a few large activations waste the range.
Per-layer error comes from ONNX Runtime's QDQ debugging tools: the signal-to-quantization-noise ratio (dB,
higher is better) of every quantized activation against the fp32 model's, so a loss of accuracy can be
traced to the layers that cause it.

The verdict is honest: when int8 is slower than fp32 or loses more than ``max_accuracy_drop`` of test
accuracy, the comparison says so and recommends the fp32 file.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quant_pre_process, quantize_static)

from menas_zoo.errors import MenasError, first_line
from menas_zoo.export.bench import best_of_rounds
from menas_zoo.export.runtime import ort_session
from menas_zoo.io import atomic_path

DEFAULT_CALIBRATION_IMAGES = 512
CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile, "distribution": CalibrationMethod.Distribution}
MAX_ACCURACY_DROP = 0.01  # one point of top-1


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds normalized real images to the calibrator, a batch at a time."""

    def __init__(self, images: torch.Tensor, input_name: str, batch_size: int = 32):
        self.batches = [images[i:i + batch_size].numpy().astype(np.float32)
                        for i in range(0, len(images), batch_size)]
        self.input_name = input_name
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.batches):
            return None
        self.index += 1
        return {self.input_name: self.batches[self.index - 1]}

    def rewind(self) -> None:
        self.index = 0


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration_images: torch.Tensor, *,
                  per_channel: bool = True, reduce_range: bool = True,
                  method: str | CalibrationMethod = "minmax") -> Path:
    """Write the static int8 QDQ version of ``fp32_path`` to ``int8_path`` (atomically)."""
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    method = calibration_method(method)
    if len(calibration_images) == 0:
        raise MenasError("int8 calibration needs at least one image")
    input_name = ort_session(fp32_path).get_inputs()[0].name
    with atomic_path(int8_path) as tmp:
        prepared = tmp.with_name(tmp.name + ".prep.onnx")
        try:
            # ORT's recommended pre-processing: symbolic shape inference and graph cleanup (BN folding is
            # already done by the exporter), so the quantizer sees every tensor's shape.
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
            # The histogram calibrators print progress to stdout, which must stay clean for --json.
            with contextlib.redirect_stdout(sys.stderr):
                quantize_static(str(prepared), str(tmp), ImageCalibrationReader(calibration_images, input_name),
                                quant_format=QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=method)
        except MenasError:
            raise
        except Exception as exc:
            raise MenasError(f"int8 quantization of {fp32_path} failed: {first_line(exc)}") from None
        finally:
            prepared.unlink(missing_ok=True)
    return int8_path


def calibration_method(name: str | CalibrationMethod) -> CalibrationMethod:
    if isinstance(name, CalibrationMethod):
        return name
    if name not in CALIBRATION_METHODS:
        raise MenasError(f"unknown calibration method {name!r}; known: {', '.join(CALIBRATION_METHODS)}")
    return CALIBRATION_METHODS[name]


def layer_errors(fp32_path: str | Path, int8_path: str | Path, images: torch.Tensor, *, worst: int = 10) -> list[dict]:
    """The ``worst`` quantized activations by SQNR against fp32 (dB, lowest first), on ``images``."""
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                         create_activation_matching,
                                                         modify_model_output_intermediate_tensors)

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    input_name = ort_session(fp32_path).get_inputs()[0].name
    with tempfile.TemporaryDirectory(prefix="menas-zoo-int8-debug-") as tmp:
        try:
            augmented = {}
            for key, path in (("fp32", fp32_path), ("int8", int8_path)):
                augmented[key] = str(Path(tmp) / f"{key}.onnx")
                modify_model_output_intermediate_tensors(str(path), augmented[key])
            reader = ImageCalibrationReader(images, input_name)
            float_acts = collect_activations(augmented["fp32"], reader)
            reader.rewind()
            int8_acts = collect_activations(augmented["int8"], reader)
            matching = create_activation_matching(int8_acts, float_acts)
            # Tensors the pre-processing renamed have no fp32 counterpart; ORT's error function expects one.
            errors = compute_activation_error({k: v for k, v in matching.items() if "float" in v and v["pre_qdq"]})
        except Exception as exc:
            raise MenasError(f"per-layer int8 error of {int8_path} failed: {first_line(exc)}") from None
    rows = [{"tensor": name, "sqnr_db": round(float(e["xmodel_err"]), 2), "qdq_sqnr_db": round(float(e["qdq_err"]), 2)}
            for name, e in errors.items() if "xmodel_err" in e and np.isfinite(e["xmodel_err"])]
    return sorted(rows, key=lambda r: r["sqnr_db"])[:worst]


def onnx_accuracy(path: str | Path, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500,
                  threads: int = 1) -> float:
    session = ort_session(path, threads=threads)
    name = session.get_inputs()[0].name
    correct = 0
    for i in range(0, len(images), batch_size):
        (logits,) = session.run(None, {name: images[i:i + batch_size].numpy().astype(np.float32)})
        correct += int((logits.argmax(1) == labels[i:i + batch_size].numpy()).sum())
    return correct / max(1, len(images))


@dataclass
class Int8Comparison:
    fp32_bytes: int
    int8_bytes: int
    fp32_p50_ms: float
    int8_p50_ms: float
    fp32_accuracy: float
    int8_accuracy: float
    test_images: int
    batch_size: int
    threads: int
    recommended: str  # "int8" | "fp32"
    reasons: list[str]
    calibration_method: str = "minmax"
    layer_errors: list[dict] | None = None  # worst activations by SQNR, see :func:`layer_errors`

    @property
    def accuracy_change(self) -> float:
        return self.int8_accuracy - self.fp32_accuracy

    @property
    def speedup(self) -> float:
        return self.fp32_p50_ms / self.int8_p50_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "accuracy_change": round(self.accuracy_change, 4),
                "size_ratio": round(self.int8_bytes / self.fp32_bytes, 3), "speedup": round(self.speedup, 2)}


def compare_int8(fp32_path: str | Path, int8_path: str | Path, test_images: torch.Tensor, test_labels: torch.Tensor, *,
                 batch_size: int = 1, threads: int = 1, runs: int = 200, warmup: int = 20,
                 max_accuracy_drop: float = MAX_ACCURACY_DROP) -> Int8Comparison:
    """Size, ORT p50 latency and test accuracy of both files, and which one to ship."""
    fp32_acc = onnx_accuracy(fp32_path, test_images, test_labels, threads=threads)
    int8_acc = onnx_accuracy(int8_path, test_images, test_labels, threads=threads)
    # Interleaved (fp32, int8, fp32, int8), each file's better round kept: see best_of_rounds.
    best = best_of_rounds({"fp32": fp32_path, "int8": int8_path}, rounds=2, batch_size=batch_size, threads=threads,
                          runs=runs, warmup=warmup)
    fp32_ms, int8_ms = best["fp32"].p50_ms, best["int8"].p50_ms
    reasons = []
    if int8_ms >= fp32_ms:
        reasons.append(f"int8 is not faster than fp32 here (p50 {int8_ms:.3f} vs {fp32_ms:.3f} ms)")
    if fp32_acc - int8_acc > max_accuracy_drop:
        reasons.append(f"int8 loses {(fp32_acc - int8_acc) * 100:.2f} points of accuracy "
                       f"(limit {max_accuracy_drop * 100:.1f})")
    return Int8Comparison(fp32_bytes=Path(fp32_path).stat().st_size, int8_bytes=Path(int8_path).stat().st_size,
                          fp32_p50_ms=fp32_ms, int8_p50_ms=int8_ms, fp32_accuracy=fp32_acc, int8_accuracy=int8_acc,
                          test_images=len(test_images), batch_size=batch_size, threads=threads,
                          recommended="fp32" if reasons else "int8", reasons=reasons)
