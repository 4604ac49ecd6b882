"""Exit codes: a user's mistake, a parity failure and a latency over budget end in distinct, documented codes.

The export and bench tests pin 3 and 4 on real runs; here the mapping itself, a usage error, and the
README's table (which must say what the code does).
"""

import re
from pathlib import Path

import pytest
import typer
from cli_helpers import assert_one_line_error, run
from typer.testing import CliRunner

from menas_zoo import errors
from menas_zoo.cli.app import user_errors

README = Path(__file__).resolve().parents[1] / "README.md"


def _app_raising(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @user_errors
    def fail() -> None:
        raise exc

    return app


@pytest.mark.parametrize("exc, code", [
    (errors.MenasError("unknown model 'x'"), 2),
    (errors.GenotypeError("bad block 'k4'"), 2),
    (errors.ParityError("parity failed for m.onnx"), 3),
    (errors.LatencyBudgetError("p90 latency 2 ms is 1 ms over the 1 ms budget"), 4),
    (KeyboardInterrupt(), 130),
])
def test_each_failure_has_its_exit_code_and_one_line(exc, code):
    result = CliRunner().invoke(_app_raising(exc), [])
    assert result.exit_code == code, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr == (f"error: {exc}\n" if code != 130 else "interrupted\n")


def test_the_three_kinds_of_failure_are_told_apart():
    codes = [errors.MenasError.exit_code, errors.ParityError.exit_code, errors.LatencyBudgetError.exit_code]
    assert codes == [errors.EXIT_USER_ERROR, errors.EXIT_PARITY, errors.EXIT_OVER_BUDGET] and len(set(codes)) == 3
    assert errors.EXIT_BUG not in codes


def test_a_usage_mistake_is_exit_2():
    result, _, stderr = run("export")  # no REF, no --out
    assert result.exit_code == errors.EXIT_USER_ERROR and "Missing argument 'REF'" in stderr


def test_an_unknown_model_is_exit_2(tmp_path):
    result, _, stderr = run("load", "no-such-model-xyz", "--offline")
    assert_one_line_error(result, stderr, r"unknown model 'no-such-model-xyz'")


def test_the_readme_documents_every_code():
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", README.read_text(), flags=re.M))
    assert {int(code) for code in table} == {errors.EXIT_OK, errors.EXIT_BUG, errors.EXIT_USER_ERROR,
                                             errors.EXIT_PARITY, errors.EXIT_OVER_BUDGET, errors.EXIT_INTERRUPTED}
    assert "mistake" in table[str(errors.EXIT_USER_ERROR)]
    assert "parity" in table[str(errors.EXIT_PARITY)] and "budget" in table[str(errors.EXIT_OVER_BUDGET)]


@pytest.mark.parametrize("exc, line", [
    (RuntimeError("\n  [ONNXRuntimeError] : 2 : INVALID_ARGUMENT  \n  at Conv_3\n  at Graph\n"),
     "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT"),
    (ValueError("one line"), "one line"),
    (OSError(), "OSError"),
    (KeyError(""), "''"),
    (RuntimeError("   \n  "), "RuntimeError"),
])
def test_first_line_is_the_message_in_one_line(exc, line):
    assert errors.first_line(exc) == line
