"""Every command speaks the same way: help on every option and argument, one meaning per flag name."""

import typer
from typer.core import TyperArgument, TyperOption
from cli_helpers import run

from menas_zoo.cli import app
from menas_zoo.cli.options import DATASET_NAMES
from menas_zoo.space import PROFILES


def commands():
    """(path, click command) of every command, subcommands included."""
    def walk(command, path):
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), command

    found = list(walk(typer.main.get_command(app), []))
    assert {"export", "bench", "load", "train", "search", "space sample", "predict"} <= {path for path, _ in found}
    return found


def visible_params(command):
    return [p for p in command.params if not getattr(p, "hidden", False)]


def test_every_option_and_argument_has_help():
    missing = [f"{path} {p.opts[0] if p.opts else p.name}" for path, command in commands()
               for p in visible_params(command) if not (p.help or "").strip()]
    assert missing == []


def test_a_flag_means_the_same_everywhere():
    """The same flag has the same metavar in every command (--threads: N, or N[,N...] where each is timed;
    --out: a folder, or the one file demo writes)."""
    seen: dict[str, set] = {}
    for _, command in commands():
        for p in visible_params(command):
            if isinstance(p, TyperOption) and p.metavar:
                seen.setdefault(p.opts[0], set()).add(p.metavar)
    assert seen["--threads"] == {"N", "N[,N...]"}
    assert seen["--out"] == {"DIR", "FILE"}
    assert {flag: m for flag, m in seen.items() if flag not in ("--threads", "--out") and len(m) > 1} == {}


def test_every_command_that_resolves_a_ref_can_go_offline_or_elsewhere():
    for path, command in commands():
        names = {p.name for p in command.params}
        arguments = {p.metavar for p in command.params if isinstance(p, TyperArgument)}
        if arguments & {"REF", "REF_OR_ONNX"}:
            assert {"offline", "endpoint"} <= names, path


def test_help_lists_every_profile_and_dataset():
    from menas_zoo.data import DATASETS

    assert DATASET_NAMES == DATASETS
    for args in (["space", "sample", "--help"], ["search", "--help"]):
        result, stdout, _ = run(*args)
        assert result.exit_code == 0
        assert all(name in " ".join(stdout.split()) for name in PROFILES), (args, stdout)
    result, stdout, _ = run("train", "--help")
    assert all(name in stdout for name in DATASETS)


def test_load_takes_eval_test_and_the_old_eval(monkeypatch):
    """--eval-test is the one name (as in train); --eval still works, hidden."""
    from menas_zoo import train

    seen = []
    monkeypatch.setattr(train, "evaluate_test_split",
                        lambda model, dataset, data_dir, **normalization: seen.append(dataset) or 0.5)
    for flag in ("--eval-test", "--eval"):
        result, stdout, _ = run("load", "mt-test", "--offline", flag, "--json")
        assert result.exit_code == 0, result.output
        assert '"measured_test_accuracy": 0.5' in stdout
    assert seen == ["fashion-mnist", "fashion-mnist"]
    assert "--eval " not in run("load", "--help")[1] and "--eval-test" in run("load", "--help")[1]


def test_usage_lines_speak_one_style():
    """Every argument and valued option shows an upper-case metavar (REF, GENOTYPE, DIR, N, ...), never
    typer's per-type ``<int range>``."""
    odd = [f"{path} {p.name}={p.metavar}" for path, command in commands() for p in visible_params(command)
           if not getattr(p, "is_flag", False) and not getattr(p, "count", False)
           and not (p.metavar and p.metavar == p.metavar.upper() and "<" not in p.metavar)]
    assert odd == []
    for path, _ in commands():
        result, stdout, _ = run(*path.split(), "--help")
        assert result.exit_code == 0 and "<int" not in stdout and "<float" not in stdout, (path, stdout)
