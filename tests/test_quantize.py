"""int8: static QDQ with per-channel weights, calibrated on real images, compared honestly with fp32."""

import onnx
import pytest
import torch
from onnx import numpy_helper

from menas_zoo.errors import MenasError
from menas_zoo.export import compare_int8, ort_session, quantize_int8, real_images


@pytest.fixture(scope="module")
def int8_model(tiny_onnx, tmp_path_factory, fashion_test):
    # The product calibrates on training images; here any real images not used for accuracy will do.
    calibration = real_images(fashion_test, 64, offset=5000)
    path = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    return quantize_int8(tiny_onnx[1], path, calibration)


def test_int8_model_is_static_qdq_with_per_channel_weights(int8_model):
    model = onnx.load(str(int8_model))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "DynamicQuantizeLinear" not in ops  # static: activation scales fixed by calibration
    inits = {i.name: i for i in model.graph.initializer}
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[1] in inits
                   and numpy_helper.to_array(inits[n.input[1]]).size > 1]
    assert per_channel, "expected at least one weight dequantized with one scale per output channel"
    assert sorted(p.name for p in int8_model.parent.iterdir()) == [int8_model.name]


def test_comparison_reports_size_latency_accuracy_and_a_recommendation(tiny_onnx, int8_model, fashion_test):
    images, labels = real_images(fashion_test, 300), fashion_test.labels[:300]
    result = compare_int8(tiny_onnx[1], int8_model, images, labels, runs=10, warmup=2)
    assert result.fp32_bytes == tiny_onnx[1].stat().st_size and result.int8_bytes == int8_model.stat().st_size
    session = ort_session(int8_model)  # the accuracy reported is the int8 file's own, recomputed here
    logits = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    assert result.int8_accuracy == pytest.approx(float((logits.argmax(1) == labels.numpy()).mean()))
    assert result.test_images == 300
    assert result.fp32_p50_ms > 0 and result.int8_p50_ms > 0
    slower = result.int8_p50_ms >= result.fp32_p50_ms
    lossy = result.fp32_accuracy - result.int8_accuracy > 0.01
    assert result.recommended == ("fp32" if slower or lossy else "int8")
    assert any("not faster" in r for r in result.reasons) == slower


def test_accuracy_loss_beyond_the_limit_keeps_fp32(tiny_onnx, int8_model, fashion_test):
    images, labels = real_images(fashion_test, 100), fashion_test.labels[:100]
    # A limit below zero makes any int8 model "lose too much": the verdict must then say so.
    result = compare_int8(tiny_onnx[1], int8_model, images, labels, runs=5, warmup=1, max_accuracy_drop=-1.0)
    assert result.recommended == "fp32" and any("points of accuracy" in r for r in result.reasons)


def test_quantizing_a_broken_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(MenasError, match="does not load"):
        quantize_int8(bad, tmp_path / "out.onnx", torch.zeros(4, 1, 28, 28))
    assert not (tmp_path / "out.onnx").exists()
