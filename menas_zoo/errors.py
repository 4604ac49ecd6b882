"""The exceptions a user can cause, the exit code each one ends in, and how one is told in one line.

Everything a user can get wrong (a bad genotype, an unknown model, a corrupt file, missing data, an
unreachable Hub) raises :class:`MenasError` with a message that says what to do. Two failures are not
mistakes but verdicts on a model, and a script must be able to tell them apart: a parity failure
(:class:`ParityError`) and a latency over its budget (:class:`LatencyBudgetError`). The CLI turns each
into one line on stderr and its exit code; library callers catch them like any error.

Exit codes of ``menas-zoo`` (the README's table is this one):

====  ==============================================================================
0     success
1     a bug: an unexpected exception (please report it, with its traceback)
2     a user's mistake or environment: bad option, unknown model, corrupt file, no network
3     parity failure: the exported model does not compute what the PyTorch model computes
4     latency budget overrun: the model is slower than ``--max-latency-ms``
130   interrupted (Ctrl-C)
====  ==============================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_PARITY = 3
EXIT_OVER_BUDGET = 4
EXIT_INTERRUPTED = 130


class MenasError(Exception):
    """An error caused by input, environment or budget, with a message meant for the user."""

    exit_code = EXIT_USER_ERROR


class GenotypeError(MenasError, ValueError):
    """A genotype (block string, JSON document or file) that does not parse or validate."""


class NonFiniteWeightsError(MenasError):
    """Weights that hold NaN or infinities: the trace of a training that diverged."""


class ParityError(MenasError):
    """The ONNX model's outputs differ from PyTorch's beyond tolerance."""

    exit_code = EXIT_PARITY


class LatencyBudgetError(MenasError):
    """Latency is over the budget."""

    exit_code = EXIT_OVER_BUDGET


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors.

    Errors from onnx, onnxruntime, safetensors or the Hub client often span many lines (a C++ stack, a
    response body); the first names the problem.
    """
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__
