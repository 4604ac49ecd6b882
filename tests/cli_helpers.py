"""What CLI tests share: invoke the app, and check that a user's mistake ends as one line with exit code 2."""

import re

from typer.testing import CliRunner

from menas_zoo.cli import app


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, result.stdout, result.stderr


def assert_one_line_error(result, stderr, pattern):
    assert result.exit_code == 2, result.output
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in result.output
    assert re.search(pattern, stderr), stderr
