"""The zoo pipeline script's stages that train, run end to end on a few hundred images (smoke runs)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_zoo(tmp_path, *args):
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    shutil.copy(ROOT / "results" / "zoo" / "selection-c.json", results)  # what a final training builds
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "build_zoo.py"), *args, "--device", "cpu",
                           "--threads", "1", "--train-subset", "256", "--runs", str(tmp_path / "runs"),
                           "--results", str(results)], capture_output=True, text=True, timeout=600)


def test_train_stage_records_its_training_seed(tmp_path):
    done = build_zoo(tmp_path, "train", "--models", "mt-c", "--epochs", "1", "--train-seed", "1")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "results" / "final-mt-c-e1-seed1.json").read_text())
    assert summary["train_seed"] == 1 and summary["epochs"] == 1 and summary["train_images"] == 256


def test_a_round_of_other_epochs_trains_beside_the_published_one(tmp_path):
    for epochs in ("1", "2"):  # one folder for both would refuse the second ("other training settings")
        done = build_zoo(tmp_path, "train", "--models", "mt-c", "--epochs", epochs)
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["final-mt-c-e1", "final-mt-c-e2"]
    missing = build_zoo(tmp_path, "publish", "--models", "mt-c", "--epochs", "3")  # no such round: one line
    assert missing.returncode != 0 and "no finished 3-epoch training" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "runs" / "publish").exists()
    table = build_zoo(tmp_path, "table")
    assert table.returncode == 0, table.stderr
    rows = [line.split(" | ") for line in table.stdout.splitlines() if line.startswith("| mt-c")]
    assert [row[4] for row in rows] == ["1", "2"]  # the epochs column, one row per round


def test_headroom_pairs_rows_on_the_same_validation_images(tmp_path):
    done = build_zoo(tmp_path, "headroom", "--models", "mt-c", "--rows", "1x1", "1x1@1", "1.5x1")
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "results" / "headroom-mt-c.json").read_text())["rows"]
    assert [(r["row"], r["train_seed"]) for r in rows] == [("1x1", 0), ("1x1@1", 1), ("1.5x1", 0)]
    assert rows[0]["vs_first"] == {"points": 0.0, "only_row": 0, "only_first": 0, "mcnemar_p": 1.0}
    assert rows[2]["params"] > rows[0]["params"] and rows[1]["params"] == rows[0]["params"]
    for r in rows:  # the paired counts give back the accuracy difference
        assert abs(r["val_acc"] - rows[0]["val_acc"] - r["vs_first"]["points"] / 100) < 1e-4
    # --ema: the same run (its row unchanged) also scores its average, paired on the same images, in a
    # summary of its own, so the rows above are kept.
    done = build_zoo(tmp_path, "headroom", "--models", "mt-c", "--rows", "1x1", "--ema", "0.9")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((tmp_path / "results" / "headroom-mt-c-ema0.9.json").read_text())["rows"]
    assert row["val_acc"] == rows[0]["val_acc"] and row["ema"]["decay"] == 0.9
    assert abs(row["ema"]["val_acc"] - row["val_acc"] - row["ema"]["points"] / 100) < 1e-4
    assert len(json.loads((tmp_path / "results" / "headroom-mt-c.json").read_text())["rows"]) == 3
    assert "its EMA" in done.stdout
    # --teacher: the row is also trained distilled from another row (here 1x1@1, already trained above and
    # so reused), paired with the plain row on the same images, in a summary of its own.
    done = build_zoo(tmp_path, "headroom", "--models", "mt-c", "--rows", "1x1", "--teacher", "1x1@1")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "results" / "headroom-mt-c-kd1x1@1.json").read_text())
    (row,) = summary["rows"]
    kd = row["distilled"]
    assert row["val_acc"] == rows[0]["val_acc"] and kd["teacher_val_acc"] == round(rows[1]["val_acc"], 4)
    assert abs(kd["val_acc"] - row["val_acc"] - kd["points"] / 100) < 1e-4
    assert summary["distilled_recipe"]["distill_alpha"] == kd["alpha"] == 0.9 and "distilled" in done.stdout
    both = build_zoo(tmp_path, "headroom", "--rows", "1x1", "--teacher", "1x1@1", "--ema", "0.9")
    assert both.returncode != 0 and "not both" in both.stderr and "Traceback" not in both.stderr
    bad = build_zoo(tmp_path, "headroom", "--rows", "2by10")
    assert bad.returncode != 0 and "WIDTHxEPOCHS" in bad.stderr and "Traceback" not in bad.stderr


def test_retime_measures_a_registered_model_anew_and_keeps_its_weights(tmp_path):
    from menas_zoo.artifact import file_sha256
    from menas_zoo.hub.registry import get_entry

    done = build_zoo(tmp_path, "retime", "--models", "mt-test")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "runs" / "publish" / "mt-test"
    entry = get_entry("mt-test")
    for name in ("model.safetensors", "masks.safetensors"):  # what was trained stays as registered
        if name in entry.files:
            assert file_sha256(out / name) == entry.files[name], name
    config = json.loads((out / "config.json").read_text())
    fp32 = config["metrics"]["deployment"]["precisions"]["fp32"]
    assert fp32["batches"]["1"]["p50_ms"] > 0 and (out / "model.onnx").is_file()
    assert "Runtime performance" in (out / "README.md").read_text()


def test_a_new_round_of_a_registered_architecture_keeps_its_published_ticket():
    import importlib.util

    from menas_zoo.artifact import load_artifact
    from menas_zoo.hub.resolve import resolve

    spec = importlib.util.spec_from_file_location("build_zoo", ROOT / "scripts" / "build_zoo.py")
    build_zoo_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_zoo_module)
    registered = load_artifact(resolve("mt-c", offline=True).path)
    parent, masks, source = build_zoo_module.registered_ticket("mt-c", build_zoo_module.winner_genotype("mt-c"))
    assert parent.to_compact() == registered.parent_genotype.to_compact() and source.startswith("replayed")
    assert masks.keys() == registered.masks.keys() and all((masks[k] == registered.masks[k]).all() for k in masks)
    assert build_zoo_module.registered_ticket("mt-c", build_zoo_module.winner_genotype("mt-a")) is None  # another net
    assert build_zoo_module.registered_ticket("mt-nope", registered.genotype) is None  # not registered


def test_each_winner_is_its_search_trial_and_registered_architecture_whatever_its_selection_line_says():
    import importlib.util

    from menas_zoo.artifact import load_artifact
    from menas_zoo.hub.resolve import resolve

    spec = importlib.util.spec_from_file_location("build_zoo", ROOT / "scripts" / "build_zoo.py")
    build_zoo_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_zoo_module)
    selection_a = json.loads((ROOT / "results" / "zoo" / "selection-a.json").read_text())["genotype"]
    assert "profile=" not in selection_a  # written before a genotype line named its profile
    for name in ("mt-a", "mt-b", "mt-c"):
        genotype = build_zoo_module.winner_genotype(name)
        assert genotype == build_zoo_module.search_record(name).genotype  # the tiny profile, as searched
        assert genotype == load_artifact(resolve(name, offline=True).path).genotype
        assert build_zoo_module.registered_ticket(name, genotype) is not None  # a new round keeps its ticket
