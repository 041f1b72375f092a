"""`denarius train` end to end on a tiny synthetic set, determinism, resume and bad input."""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")

from denarius.engine.errors import ConfigError, ManifestError  # noqa: E402
from denarius.engine.preprocess import PreprocessSpec  # noqa: E402
from denarius.training.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint  # noqa: E402
from denarius.training.data import load_dataset  # noqa: E402
from denarius.training.datasets import CoinSideDataset, canonical_images, task_targets  # noqa: E402
from denarius.training.model import ModelConfig, build_model  # noqa: E402
from denarius.training.train import TrainConfig, build_optimizer, check_resumable, fit, predict_proba, train_run  # noqa: E402

TINY_EPOCHS = 25




# Tiny models (1/8 of AlexNet's channels, 64 px), no dropout or colour jitter: they fit the
# 64 training coins within a few seconds, which proves that images, labels and gradients line up.
TINY = ["--width", "0.125", "--input-size", "64", "--batch-size", "8", "--lr", "2e-3", "--dropout", "0", "--jitter", "0",
        "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def trained_run(tiny_manifest, tmp_path_factory):
    from denarius.apps.cli import main

    out = tmp_path_factory.mktemp("run")
    assert main(["train", str(tiny_manifest), "--out", str(out), "--epochs", str(TINY_EPOCHS), *TINY]) == 0
    return out


def test_train_writes_the_run_directory_contract(trained_run, tiny_manifest):
    run = json.loads((trained_run / "run.json").read_text())
    for key in ("hierarchy", "descriptions", "merged", "preprocess", "manifest", "metrics"):
        assert key in run
    dataset = load_dataset(tiny_manifest)
    assert run["hierarchy"] == dataset.hierarchy.to_dict()
    assert PreprocessSpec.from_dict(run["preprocess"]) == PreprocessSpec.for_input_size(64)
    for task, side, classes in (("emperor", "obverse", dataset.hierarchy.emperors), ("ric", "reverse", dataset.hierarchy.rics)):
        ckpt = load_checkpoint(trained_run / f"{task}.pt")  # weights_only load
        assert (ckpt.task, ckpt.side, ckpt.classes, ckpt.epoch) == (task, side, classes, TINY_EPOCHS)
        assert ckpt.model_config == ModelConfig(num_classes=len(classes), width=0.125, input_size=64, dropout=0.0)
        assert ckpt.preprocess == run["preprocess"]
        assert len(ckpt.history) == TINY_EPOCHS and ckpt.optimizer_state is not None


def test_trained_models_are_well_above_chance(trained_run, tiny_manifest):
    """Centre crops of the training coins: what was learnt survives the checkpoint round trip.

    Mean per-class accuracy, because one emperor owns most coins of the tiny set (a model
    that always answers him has top-1 0.62 but per-class accuracy 0.25).
    """
    from denarius.training.metrics import mean_class_accuracy

    dataset = load_dataset(tiny_manifest)
    spec = PreprocessSpec.for_input_size(64)
    for task, side in (("emperor", "obverse"), ("ric", "reverse")):
        model = model_from_checkpoint(load_checkpoint(trained_run / f"{task}.pt"))
        items = CoinSideDataset(canonical_images(dataset, side, spec, progress=False), task_targets(dataset, task), spec)
        probs, targets = predict_proba(model, torch.utils.data.DataLoader(items, batch_size=64))
        accuracy = mean_class_accuracy(targets, probs.argmax(1), probs.shape[1])
        chance = 1.0 / probs.shape[1]
        print(f"{task}: training-set mean per-class accuracy {accuracy:.3f} (chance {chance:.3f})")
        assert accuracy > 2.0 * chance, (task, accuracy, chance)


@pytest.fixture(scope="module")
def reverse_cache(tiny_manifest):
    dataset = load_dataset(tiny_manifest)
    spec = PreprocessSpec.for_input_size(64)
    return dataset, canonical_images(dataset, "reverse", spec, progress=False), task_targets(dataset, "ric")


def _fit(reverse_cache, config, **kwargs):
    dataset, canonical, targets = reverse_cache
    return fit(task="ric", canonical=canonical, targets=targets, classes=dataset.hierarchy.rics, config=config, progress=False, **kwargs)


def test_training_is_deterministic_and_resume_gives_the_same_weights(reverse_cache, tmp_path):
    config = TrainConfig(epochs=3, width=0.125, input_size=64, batch_size=8, seed=3)
    snapshots = []
    _, straight = _fit(reverse_cache, config, checkpoint_path=tmp_path / "ric.pt", on_epoch_end=snapshots.append)
    _, again = _fit(reverse_cache, config)
    for key, value in straight.state_dict.items():
        assert torch.equal(value, again.state_dict[key]), key

    # Interrupted after epoch 2: save, reload from disk (weights_only) and continue.
    save_checkpoint(tmp_path / "epoch2.pt", snapshots[1])
    _, resumed = _fit(reverse_cache, config, resume=load_checkpoint(tmp_path / "epoch2.pt"))
    assert resumed.epoch == 3 and len(resumed.history) == 3
    for key, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    assert resumed.history[-1]["train_loss"] == pytest.approx(straight.history[-1]["train_loss"], abs=0.0)
    assert load_checkpoint(tmp_path / "ric.pt").epoch == 3

    different_seed = _fit(reverse_cache, TrainConfig(epochs=1, width=0.125, input_size=64, batch_size=8, seed=4))[1]
    assert not torch.equal(different_seed.state_dict["features.0.weight"], snapshots[0].state_dict["features.0.weight"])


def test_resuming_a_checkpoint_of_another_label_set_fails_before_training(tiny_manifest, tmp_path, capsys):
    from denarius.apps.cli import main

    dataset = load_dataset(tiny_manifest)
    config = TrainConfig(epochs=1, width=0.125, input_size=64)
    wrong = ("Nero", *dataset.hierarchy.emperors[1:])
    model = build_model(config.model_config(len(wrong)))
    ckpt = Checkpoint(
        task="emperor", side="obverse", model_config=config.model_config(len(wrong)), classes=wrong,
        preprocess=config.preprocess_spec().to_dict(), state_dict=model.state_dict(), epoch=1,
    )
    save_checkpoint(tmp_path / "emperor.pt", ckpt)
    before = (tmp_path / "emperor.pt").read_bytes()
    rc = main(["train", str(tiny_manifest), "--out", str(tmp_path), "--resume", "--epochs", "2", *TINY])
    assert rc == 2
    err = capsys.readouterr().err
    assert "different emperor label set" in err and "Nero" in err
    assert (tmp_path / "emperor.pt").read_bytes() == before  # nothing was trained or overwritten
    assert not (tmp_path / "ric.pt").exists()

    with pytest.raises(ConfigError, match="use the same --width/--input-size"):
        check_resumable(
            ckpt, task="emperor", classes=wrong, model_config=ModelConfig(num_classes=len(wrong), width=0.25, input_size=64),
            spec=config.preprocess_spec(),
        )


def test_a_missing_image_fails_before_training(tiny_manifest, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(tiny_manifest.parent, copy)
    manifest = copy / tiny_manifest.name
    record = load_dataset(manifest).records[3]
    record.reverse.unlink()
    with pytest.raises(ManifestError, match=f"line {record.row}: reverse image not found"):
        train_run(manifest, tmp_path / "run", config=TrainConfig(epochs=1, width=0.125, input_size=64), progress=False)
    assert not (tmp_path / "run").exists()


def test_new_layer_learns_faster_when_fine_tuning():
    model = build_model(ModelConfig(num_classes=3, width=0.125, input_size=64))
    groups = {g["name"]: g["lr"] for g in build_optimizer(model, TrainConfig(lr=1e-3, weights="x.pth")).param_groups}
    assert groups == {"body": 1e-3, "body_bias": 1e-3, "head": pytest.approx(1e-2, rel=1e-12)}
    scratch = {g["name"]: g["lr"] for g in build_optimizer(model, TrainConfig(lr=1e-3)).param_groups}
    assert scratch["head"] == scratch["body"]
    custom = build_optimizer(model, TrainConfig(lr=1e-3, new_layer_lr_mult=4.0, optimizer="sgd"))
    assert isinstance(custom, torch.optim.SGD) and custom.param_groups[2]["lr"] == pytest.approx(4e-3, rel=1e-12)
    with pytest.raises(ConfigError, match="valid input sizes"):
        TrainConfig(input_size=300)
