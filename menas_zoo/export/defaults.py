"""Default export and timing settings, in a module that imports nothing heavy (the CLI shows them in --help)."""

DEFAULT_OPSET = 18
EXPORTERS = ("dynamo", "torchscript")
DEFAULT_RUNS = 200  # timed runs per configuration
DEFAULT_WARMUP = 20  # untimed runs first
DEFAULT_ATOL = 1e-4  # parity: largest allowed |logit difference| between PyTorch and ONNX Runtime

# What a latency limit (--max-latency-ms) is checked against, in every command and in the library: the
# p90 of ONNX Runtime's per-call milliseconds of a file exported at this opset (see export/latency.py).
LATENCY_OPSET = DEFAULT_OPSET
LATENCY_PERCENTILE = 90
