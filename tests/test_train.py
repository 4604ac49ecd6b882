"""The training loop: it learns, a resumed run equals an uninterrupted one, and a SIGKILLed CLI run resumes."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY_GENOTYPE
from safetensors import safe_open

from menas_zoo.data import BatchLoader
from menas_zoo.errors import MenasError
from menas_zoo.nets import build_model
from menas_zoo.space import Genotype
from menas_zoo.train import CHECKPOINT, TrainConfig, evaluate, recalibrate_bn, train

def fresh_model():
    torch.manual_seed(0)
    return build_model(Genotype.from_compact(TINY_GENOTYPE))


def test_training_learns(train_splits):
    model = fresh_model()
    before = evaluate(model, train_splits.val)["acc"]
    result = train(model, train_splits, TrainConfig(epochs=3, batch_size=64, lr=0.1, warmup_epochs=0.2), progress=False)
    assert result.epochs == 3 and [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.val_acc > max(0.4, before + 0.2)  # chance is 0.1


def test_resumed_run_equals_uninterrupted_run(train_splits, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=256, bn_l1=1e-4)
    reference = fresh_model()
    full = train(reference, train_splits, cfg, progress=False)

    class Killed(Exception):
        pass

    def die_in_epoch_2(epoch, model, metrics):
        if epoch == 2:
            raise Killed  # after epoch 1's checkpoint, before epoch 2's
        return False

    with pytest.raises(Killed):
        train(fresh_model(), train_splits, cfg, out_dir=tmp_path, on_epoch_end=die_in_epoch_2, progress=False)
    with safe_open(str(tmp_path / CHECKPOINT), "pt") as fh:
        assert json.loads(fh.metadata()["menas_zoo_checkpoint"])["epoch"] == 1
    resumed_model = fresh_model()
    torch.manual_seed(123)  # resuming must not depend on the caller's RNG state
    resumed = train(resumed_model, train_splits, cfg, out_dir=tmp_path, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for a, b in zip(full.history, resumed.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5) and a["val_acc"] == b["val_acc"]
    for (name, a), b in zip(reference.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


def test_resume_with_other_settings_is_refused(train_splits, tmp_path):
    train(fresh_model(), train_splits, TrainConfig(epochs=1, batch_size=128), out_dir=tmp_path, progress=False)
    with pytest.raises(MenasError, match=r"other training settings \(batch_size 128 -> 64\)"):
        train(fresh_model(), train_splits, TrainConfig(epochs=1, batch_size=64), out_dir=tmp_path, progress=False)
    (tmp_path / CHECKPOINT).write_bytes(b"\x00" * 20)
    with pytest.raises(MenasError, match="unreadable"):
        train(fresh_model(), train_splits, TrainConfig(epochs=1, batch_size=128), out_dir=tmp_path, progress=False)


def test_ema_is_an_average_beside_an_unchanged_run_and_resumes(train_splits, tmp_path, one_thread):
    """ema_decay leaves the run's own weights as they were, returns the average of its steps' weights (it
    lags the last step's), and a killed run resumes to the same average."""
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.1, warmup_epochs=0.2, ema_decay=0.9)
    plain, averaged = fresh_model(), fresh_model()
    train(plain, train_splits, dataclasses.replace(cfg, ema_decay=0.0), progress=False)
    result = train(averaged, train_splits, cfg, progress=False)
    for (name, a), b in zip(plain.state_dict().items(), averaged.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    ema = result.ema.state_dict()
    assert not ema["stem.conv.weight"].equal(averaged.state_dict()["stem.conv.weight"])
    assert not result.ema.training and evaluate(result.ema, train_splits.val)["acc"] > 0.3  # chance is 0.1

    class Killed(Exception):
        pass

    def die_in_epoch_2(epoch, model, metrics):
        if epoch == 2:
            raise Killed
        return False

    with pytest.raises(Killed):
        train(fresh_model(), train_splits, cfg, out_dir=tmp_path, on_epoch_end=die_in_epoch_2, progress=False)
    resumed = train(fresh_model(), train_splits, cfg, out_dir=tmp_path, progress=False)
    for name, value in resumed.ema.state_dict().items():
        torch.testing.assert_close(value, ema[name], atol=1e-5, rtol=1e-5, msg=name)
    # A checkpoint written without an average resumes under the same settings (ema_decay 0).
    other = tmp_path / "plain"
    train(fresh_model(), train_splits, TrainConfig(epochs=1, batch_size=256), out_dir=other, progress=False)
    with pytest.raises(MenasError, match=r"ema_decay 0.0 -> 0.9|ema_decay None -> 0.9"):
        train(fresh_model(), train_splits, TrainConfig(epochs=1, batch_size=256, ema_decay=0.9), out_dir=other,
              progress=False)


class Constant(torch.nn.Module):
    """A teacher that answers one class for every image, whatever it shows."""

    def __init__(self, label: int, classes: int = 10):
        super().__init__()
        self.register_buffer("logits", torch.nn.functional.one_hot(torch.tensor(label), classes).float() * 8)

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_distillation_follows_the_teacher_and_resumes_only_with_the_same_one(train_splits, tmp_path, one_thread):
    """distill_alpha 1 learns the teacher's answers instead of the labels; a resumed run must name the same
    teacher; a run without distillation resumes as before; alpha without a teacher is one clear error."""
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.1, warmup_epochs=0.2, distill_alpha=1.0, teacher="constant 3")
    student = fresh_model()
    train(student, train_splits, cfg, teacher=Constant(3), out_dir=tmp_path / "kd", progress=False)
    with torch.no_grad():
        answers = torch.cat([student(x).argmax(1) for x, _ in BatchLoader(train_splits.val, 250)])
    assert (answers == 3).float().mean() > 0.9  # the labels alone would give about a tenth
    plain = train(fresh_model(), train_splits, dataclasses.replace(cfg, distill_alpha=0.0), progress=False)
    assert plain.val_acc > 0.3
    with pytest.raises(MenasError, match=r"teacher 'constant 3' -> 'constant 5'"):
        train(fresh_model(), train_splits, dataclasses.replace(cfg, teacher="constant 5"), teacher=Constant(5),
              out_dir=tmp_path / "kd", progress=False)
    with pytest.raises(MenasError, match="needs a teacher network"):
        train(fresh_model(), train_splits, cfg, progress=False)
    with pytest.raises(MenasError, match="0 <= alpha <= 1"):
        train(fresh_model(), train_splits, dataclasses.replace(cfg, distill_alpha=1.5), teacher=Constant(3),
              progress=False)


def test_early_stop_hook(train_splits):
    result = train(fresh_model(), train_splits, TrainConfig(epochs=5, batch_size=128),
                   on_epoch_end=lambda epoch, model, metrics: epoch == 2, progress=False)
    assert result.stopped_early and result.epochs == 2


def test_recalibrate_bn_restores_statistics(train_splits):
    model = fresh_model()
    train(model, train_splits, TrainConfig(epochs=2, batch_size=64, lr=0.1, warmup_epochs=0.2), progress=False)
    good = evaluate(model, train_splits.val)["acc"]
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
    assert evaluate(model, train_splits.val)["acc"] < good - 0.1
    recalibrate_bn(model, train_splits.train, batches=8, batch_size=256)
    assert evaluate(model, train_splits.val)["acc"] >= good - 0.05


def test_cli_train_survives_sigkill(tmp_path):
    """Kill `menas-zoo train` with SIGKILL after its first finished epoch; the same command resumes after it."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "menas_zoo", "train", TINY_GENOTYPE, "--out", str(out), "--epochs", "3",
           "--train-subset", "2048", "--val-size", "500", "--batch-size", "128", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / CHECKPOINT).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with safe_open(str(out / CHECKPOINT), "pt") as fh:
        first = json.loads(fh.metadata()["menas_zoo_checkpoint"])
    assert first["epoch"] in (1, 2)  # killed after epoch 1 was saved (rarely after epoch 2)
    assert not any(p.name.endswith(".tmp") for p in out.iterdir()), "no half-written file may remain"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["history"][: first["epoch"]] == first["history"]  # finished epochs kept, not re-run


def test_calibrated_bn_shrink_separates_gammas_in_a_short_run(train_splits):
    """A short AdamW run barely moves BN gammas; the calibrated shrink pulls the undefended ones down by
    about its total while the loss holds the others, so the ranking a ticket prunes by opens up."""
    from menas_zoo.slim import hidden_bns

    def spread(**sparsity):
        model = fresh_model()
        cfg = TrainConfig(epochs=2, batch_size=128, optimizer="adamw", **sparsity)
        train(model, train_splits, cfg, progress=False, validate="none")
        gammas = torch.cat([bn.weight.detach().abs() for bn in hidden_bns(model).values()])
        low, high = torch.quantile(gammas, torch.tensor([0.1, 0.9])).tolist()
        return low, high

    low, high = spread()
    assert high - low < 0.1  # without sparsity: every gamma stays near 1
    low, high = spread(bn_shrink=0.5)
    assert high - low > 0.15 and low < 0.75  # pulled down, and apart


def test_a_run_continued_with_schedule_offset_follows_the_unsplit_schedule():
    """A ticket cut at epoch k trains the rest on the dense run's schedule: same lr at every step."""
    from menas_zoo.train import make_scheduler, schedule_sum, shrink_steps

    def lrs(cfg: TrainConfig, steps: int) -> list[float]:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        scheduler = make_scheduler(opt, cfg, steps)
        out = []
        for _ in range(cfg.epochs * steps):
            out.append(scheduler.get_last_lr()[0])
            opt.step()
            scheduler.step()
        return out

    whole = lrs(TrainConfig(epochs=5, warmup_epochs=1.0), 10)  # the dense run, stopped after 2 epochs
    tail = lrs(TrainConfig(epochs=3, warmup_epochs=1.0, schedule_offset=2), 10)
    assert tail == pytest.approx(whole[20:])
    assert whole[0] < whole[9] and tail[0] < whole[9]  # past the warm-up, decaying
    # The calibrated shrink adds up over its own epochs: a shorter shrink sums a shorter schedule.
    short = TrainConfig(epochs=5, bn_shrink=0.5, shrink_epochs=2)
    assert shrink_steps(short, 10) == 20
    assert schedule_sum(short, 10) == pytest.approx(sum(whole[:20]))


def test_validate_none_scores_nothing_and_warmup_stays_a_fraction_of_the_run(train_splits):
    import math

    from menas_zoo.train import warmup_steps

    model = fresh_model()
    result = train(model, train_splits, TrainConfig(epochs=2, batch_size=256), progress=False, validate="none")
    assert all(math.isnan(h["val_acc"]) for h in result.history)
    assert warmup_steps(TrainConfig(epochs=1, warmup_epochs=1.0), 100) == 20  # a 1-epoch run is not all warm-up
    assert warmup_steps(TrainConfig(epochs=30, warmup_epochs=1.0), 100) == 100


def test_evaluate_test_split_normalizes_as_the_model_was_trained(monkeypatch, fashion_test):
    from menas_zoo import train as train_module

    seen = []
    monkeypatch.setattr(train_module, "evaluate",
                        lambda model, data: seen.append((data.mean, data.std, len(data))) or {"acc": 0.25})
    model = fresh_model()
    assert train_module.evaluate_test_split(model, "fashion-mnist", mean=[0.5], std=[0.25]) == 0.25
    train_module.evaluate_test_split(model, "fashion-mnist")  # no mean/std of its own: the dataset's
    assert seen == [((0.5,), (0.25,), len(fashion_test)), (tuple(fashion_test.mean), tuple(fashion_test.std),
                                                            len(fashion_test))]


def test_evaluate_test_split_refuses_a_dataset_the_model_cannot_read():
    from menas_zoo.train import evaluate_test_split

    five = build_model(Genotype.from_compact(TINY_GENOTYPE, num_classes=5))
    with pytest.raises(MenasError) as caught:
        evaluate_test_split(five, "fashion-mnist")
    assert str(caught.value) == ("--eval-test: fashion-mnist is 1x28x28, 10 classes; this model expects 1x28x28, "
                                 "5 classes")


# -- train_artifact: the library's genotype -> trained artifact, which `menas-zoo train` calls --------

QUICK_DATA = {"train_subset": 256, "val_size": 128, "progress": False}


def test_train_artifact_leaves_a_loadable_artifact_and_resumes(tmp_path, one_thread):
    from menas_zoo.artifact import load_artifact
    from menas_zoo.train import train_artifact

    cfg = TrainConfig(epochs=1, batch_size=64, device="cpu", seed=2)
    run = train_artifact(TINY_GENOTYPE, tmp_path / "run", cfg, eval_test=True, **QUICK_DATA)
    artifact = load_artifact(run.path)
    assert artifact.genotype == Genotype.from_compact(TINY_GENOTYPE) and not run.model.training
    assert all(torch.equal(v, run.model.state_dict()[k].cpu()) for k, v in artifact.model.state_dict().items())
    on_disk = json.loads((run.path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(run.metrics)) and on_disk["dataset"] == "fashion-mnist"
    metrics = artifact.config["metrics"]
    assert metrics["accuracy"] == {"value": run.metrics["test_acc"], "dataset": "fashion-mnist", "split": "test"}
    assert metrics["val_accuracy"]["split"] == "validation (128 train images, seed 2)"
    assert artifact.config["provenance"]["seed"] == 2 and artifact.config["provenance"]["train_images"] == 256
    assert artifact.config["labels"][0] == "T-shirt/top"
    # The same call again finds the finished run and trains nothing more: the same weights.
    weights = (run.path / "model.safetensors").read_bytes()
    again = train_artifact(Genotype.from_compact(TINY_GENOTYPE), run.path, cfg, eval_test=True, **QUICK_DATA)
    assert again.result.history == run.result.history
    assert (run.path / "model.safetensors").read_bytes() == weights


@pytest.mark.parametrize("genotype, message", [
    ("stem8 / k3_c8_s1_re / head16", "holds a run of another genotype"),
    ("mobilenetv3-small", "genotype expects 3x224px input but fashion-mnist is 1x28px"),
])
def test_train_artifact_refuses_before_writing(tmp_path, genotype, message):
    from menas_zoo.train import train_artifact

    out = tmp_path / "run"
    out.mkdir()
    if "another" in message:
        (out / "genotype.json").write_text(Genotype.from_compact(TINY_GENOTYPE).to_json())
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(MenasError, match=message):
        train_artifact(genotype, out, TrainConfig(epochs=1, device="cpu"), **QUICK_DATA)
    assert sorted(p.name for p in out.iterdir()) == before
