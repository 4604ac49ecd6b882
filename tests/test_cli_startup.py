"""``menas-zoo --help``, ``--version`` and ``list`` start without torch (or onnx, onnxruntime).

Checked in a fresh interpreter, because this test session has long imported torch itself: the child
imports the CLI, runs the three commands, and reports which heavy modules got loaded.
"""

import json
import subprocess
import sys

import menas_zoo

HEAVY = ["torch", "onnx", "onnxruntime", "numpy"]

CHILD = """
import json, sys
from typer.testing import CliRunner
from menas_zoo.cli import app

results = {}
for args in (["--help"], ["--version"], ["list"], ["list", "--json"], ["space", "sample", "--help"],
             ["export", "--help"], ["search", "--help"], ["train", "--help"]):
    result = CliRunner().invoke(app, args)
    results[" ".join(args)] = [result.exit_code, result.stdout]
print(json.dumps({"results": results, "loaded": [m for m in HEAVY if m in sys.modules]}))
"""


def run_child():
    code = f"HEAVY = {HEAVY!r}\n" + CHILD
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def test_help_version_and_list_import_no_torch():
    report = run_child()
    assert report["loaded"] == [], f"the CLI imported {report['loaded']} for --help/--version/list"
    results = report["results"]
    assert all(code == 0 for code, _ in results.values()), results
    assert results["--version"][1] == f"menas-zoo {menas_zoo.__version__}\n"
    assert "Commands:" in results["--help"][1] and "export" in results["--help"][1]
    assert isinstance(json.loads(results["list --json"][1]), list)

