"""The zoo table's pairing of models with peers (benchmarks/zoo_table.py): each model meets the peer trained
for its own epochs, so a longer round is never credited against a shorter-trained peer."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("zoo_table", ROOT / "benchmarks" / "zoo_table.py")
zoo_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zoo_table)


def test_each_model_meets_the_peer_of_its_epochs():
    models = [{"name": "mt-a", "epochs": 30}, {"name": "mt-c", "epochs": 60}]
    peers = zoo_table.peers(models, None)
    assert [(p["name"], p["epochs"]) for p in peers] == [("peer-e30", 30), ("peer-e60", 60)]
    longer = zoo_table.peers(models + [{"name": "mt-b", "epochs": 100}], None)  # by number, not as text
    assert [p["epochs"] for p in longer] == [30, 60, 100]
    everyone = models + peers
    assert zoo_table.peer_of(models[0], everyone)["name"] == "peer-e30"
    assert zoo_table.peer_of(models[1], everyone)["name"] == "peer-e60"
    assert zoo_table.peer_of({"name": "x", "epochs": 100}, everyone) is None  # no peer of 100 epochs: none


def test_one_round_has_one_peer_and_a_named_peer_serves_every_model(tmp_path):
    models = [{"name": "mt-a", "epochs": 30}, {"name": "mt-b", "epochs": 30}]
    assert [p["name"] for p in zoo_table.peers(models, None)] == ["peer"]
    (named,) = zoo_table.peers(models + [{"name": "mt-c", "epochs": 60}], tmp_path)  # no weights there: untrained
    assert named["untrained"] and zoo_table.peer_of({"name": "mt-c", "epochs": 60}, [named]) is named


def test_a_peer_without_weights_shows_the_accuracy_its_final_training_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo_table, "ROOT", tmp_path)  # no runs/ there: no trained peer on this machine
    (peer,) = zoo_table.peers([{"name": "mt-a", "epochs": 60}], None)
    recorded = json.loads((zoo_table.RESULTS / "final-peer-e60.json").read_text())["test_acc"]
    assert peer["untrained"] and peer["recorded_acc"] == recorded
    (unrecorded,) = zoo_table.peers([{"name": "mt-a", "epochs": 7}], None)  # no 7-epoch training on record
    assert unrecorded["untrained"] and "recorded_acc" not in unrecorded
    timing = {"p50_ms": 0.2, "p90_ms": 0.3}
    peer.update(params=1_527_818, macs=2_060_000, fp32_b1=timing, eager_b1=timing, int8_b1=timing)
    (row,) = zoo_table.rows([peer])
    assert row[zoo_table.COLUMNS.index("test acc")] == f"{recorded * 100:.2f}% (recorded)"
    assert "as its final training recorded it" in zoo_table.significance([peer])
