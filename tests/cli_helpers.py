"""What CLI tests share: invoke the app, and check that a failure ends as one line with its exit code."""

import re

from typer.testing import CliRunner

from menas_zoo.cli import app
from menas_zoo.errors import EXIT_USER_ERROR


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, result.stdout, result.stderr


def assert_one_line_error(result, stderr, pattern, code=EXIT_USER_ERROR):
    """One line on stderr matching ``pattern``, no traceback, exit ``code`` (a user's mistake by default)."""
    assert result.exit_code == code, result.output
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in result.output
    assert re.search(pattern, stderr), stderr
