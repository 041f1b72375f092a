"""AlexNet layout, ImageNet-weights loading and checkpoint round trips (CPU, fast)."""

from __future__ import annotations

import logging

import pytest
import torch

from denarius.engine.errors import ConfigError
from denarius.training.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from denarius.training.model import (
    HEAD_PREFIX,
    AlexNet,
    ModelConfig,
    build_model,
    feature_size,
    load_pretrained,
    valid_input_sizes,
)

# torchvision.models.alexnet() state-dict keys and shapes, typed out by hand (torchvision is
# not a dependency): this is the contract an ImageNet .pth file has to meet.
TORCHVISION_ALEXNET_SHAPES = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216),
    "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096),
    "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}


@pytest.fixture(scope="module")
def imagenet_pth(tmp_path_factory):
    """A torchvision-layout ImageNet AlexNet .pth with recognisable (seeded random) values."""
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) * 0.01 for k, shape in TORCHVISION_ALEXNET_SHAPES.items()}
    path = tmp_path_factory.mktemp("weights") / "alexnet-owt.pth"
    torch.save(state, path)
    return path, state


def test_width1_matches_torchvision_layout():
    model = build_model(ModelConfig(num_classes=1000))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == TORCHVISION_ALEXNET_SHAPES
    assert sum(p.numel() for p in model.parameters()) == 61_100_840  # torchvision's count
    assert isinstance(model.classifier[0], torch.nn.Dropout)
    assert isinstance(model.classifier[3], torch.nn.Dropout)


def test_imagenet_state_dict_loads_except_head(imagenet_pth):
    path, state = imagenet_pth
    model = build_model(ModelConfig(num_classes=7))
    head_before = model.classifier[6].weight.detach().clone()
    loaded = load_pretrained(model, path)
    assert len(loaded) == 14 and not any(k.startswith(HEAD_PREFIX) for k in loaded)
    own = model.state_dict()
    for key in loaded:
        assert torch.equal(own[key], state[key]), key
    assert own["classifier.6.weight"].shape == (7, 4096)
    assert torch.equal(own["classifier.6.weight"], head_before)


@pytest.mark.parametrize(
    ("config", "bad_key"),
    [
        (ModelConfig(num_classes=5, width=0.5), "features.0.weight"),
        (ModelConfig(num_classes=5, input_size=128), "classifier.1.weight"),
    ],
)
def test_shape_mismatch_names_keys(imagenet_pth, config, bad_key):
    path, _ = imagenet_pth
    model = build_model(config)
    with pytest.raises(ConfigError, match=bad_key.replace(".", r"\.")) as info:
        load_pretrained(model, path)
    assert "width" in str(info.value)


def test_bad_weight_files(tmp_path):
    model = build_model(ModelConfig(num_classes=3, width=0.125, input_size=64))
    with pytest.raises(ConfigError, match="does not exist"):
        load_pretrained(model, tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(ConfigError, match="cannot read"):
        load_pretrained(model, junk)
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 11, 11)}, partial)
    with pytest.raises(ConfigError, match="lacks AlexNet keys"):
        load_pretrained(model, partial)


def test_imagenet_without_torchvision_says_pass_a_file(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchvision", None)  # as on a host without it
    model = build_model(ModelConfig(num_classes=3, width=0.125, input_size=64))
    with pytest.raises(ConfigError, match="--weights PATH"):
        load_pretrained(model, "imagenet")


def test_no_weights_warns(caplog):
    model = build_model(ModelConfig(num_classes=3, width=0.125, input_size=64))
    with caplog.at_level(logging.WARNING, logger="denarius.training.model"):
        assert load_pretrained(model, None) == []
    assert "from scratch" in caplog.text


@pytest.mark.parametrize(("size", "feature", "pooled"), [(224, 6, 6), (128, 3, 3), (96, 2, 2), (64, 1, 1)])
def test_input_sizes(size, feature, pooled):
    assert feature_size(size) == feature
    config = ModelConfig(num_classes=4, width=0.125, input_size=size)
    assert config.pooled == pooled
    model = build_model(config).eval()
    assert model.classifier[1].in_features == config.channels[4] * pooled * pooled
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 4)


def test_invalid_input_size_lists_valid_ones():
    # 256 -> 7x7 feature map: neither <= 6 nor a multiple of 6.
    assert feature_size(256) == 7 and 256 not in valid_input_sizes()
    with pytest.raises(ConfigError, match=r"valid input sizes up to 512: 63-254, 415-446") as info:
        ModelConfig(num_classes=3, input_size=256)
    assert "7x7" in str(info.value)
    with pytest.raises(ConfigError):
        ModelConfig(num_classes=3, input_size=40)  # too small for any feature map
    assert {64, 96, 128, 224} <= set(valid_input_sizes())


@pytest.mark.parametrize("bad", [dict(num_classes=0), dict(num_classes=3, width=0), dict(num_classes=3, dropout=1.0)])
def test_config_validation(bad):
    with pytest.raises(ConfigError):
        ModelConfig(**bad)


@pytest.mark.parametrize(("width", "channels", "hidden"), [(0.125, (8, 24, 48, 32, 32), 512), (0.25, (16, 48, 96, 64, 64), 1024)])
def test_width_variants(width, channels, hidden):
    config = ModelConfig(num_classes=3, width=width, input_size=96)
    model = AlexNet(config)
    assert config.channels == channels and config.hidden == hidden
    assert model.features[10].out_channels == channels[4]
    assert model.classifier[4].out_features == hidden


def _tiny_checkpoint(epoch=3, optimizer_state=None):
    config = ModelConfig(num_classes=3, width=0.125, input_size=64)
    torch.manual_seed(1)
    model = build_model(config)
    return model, Checkpoint(
        task="ric",
        side="reverse",
        model_config=config,
        classes=("RIC 1", "RIC 2", "RIC 3"),
        preprocess={"resize": 72, "crop": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        state_dict=model.state_dict(),
        optimizer_state=optimizer_state,
        epoch=epoch,
        history=[{"epoch": 1, "loss": 1.1, "acc": 0.5}, {"epoch": 2, "loss": 0.9, "acc": 0.6}],
        extra={"seed": 1, "lr": [0.001, 0.01]},
    )


def test_checkpoint_round_trip(tmp_path):
    model, ckpt = _tiny_checkpoint()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    opt.step()
    ckpt = Checkpoint(**{**ckpt.__dict__, "state_dict": model.state_dict(), "optimizer_state": opt.state_dict()})
    path = save_checkpoint(tmp_path / "run" / "ric.pt", ckpt)
    raw = torch.load(path, weights_only=True)  # plain containers only, no pickled classes
    assert raw["format"] == "denarius-checkpoint" and raw["classes"] == ["RIC 1", "RIC 2", "RIC 3"]
    back = load_checkpoint(path)
    assert back.task == "ric" and back.side == "reverse" and back.epoch == 3
    assert back.model_config == ckpt.model_config and back.classes == ckpt.classes
    assert back.history == ckpt.history and back.extra == ckpt.extra and back.preprocess == ckpt.preprocess
    restored = model_from_checkpoint(back)
    assert not restored.training
    x = torch.randn(4, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(restored(x), model(x))
    opt2 = torch.optim.SGD(restored.parameters(), lr=0.01, momentum=0.9)
    opt2.load_state_dict(back.optimizer_state)  # resumable
    assert [p.name for p in tmp_path.joinpath("run").iterdir()] == ["ric.pt"]  # no temp files left


def test_checkpoint_refuses_non_plain_values(tmp_path):
    _, ckpt = _tiny_checkpoint()
    bad = Checkpoint(**{**ckpt.__dict__, "extra": {"config": ModelConfig(num_classes=3, width=0.125, input_size=64)}})
    with pytest.raises(ConfigError, match=r"extra\.config is a ModelConfig"):
        save_checkpoint(tmp_path / "x.pt", bad)
    assert not list(tmp_path.iterdir())


def test_checkpoint_validation():
    _, ckpt = _tiny_checkpoint()
    with pytest.raises(ConfigError, match="task"):
        Checkpoint(**{**ckpt.__dict__, "task": "denomination"})
    with pytest.raises(ConfigError, match=r"3 classes|classes"):
        Checkpoint(**{**ckpt.__dict__, "classes": ("a", "b")})


def test_load_checkpoint_refuses_truncated_and_foreign(tmp_path):
    _, ckpt = _tiny_checkpoint()
    path = save_checkpoint(tmp_path / "ok.pt", ckpt)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save(ckpt.state_dict, foreign)  # a bare state dict is not a checkpoint
    with pytest.raises(ConfigError, match="not a Denarius checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_model_from_checkpoint_refuses_wrong_weights():
    _, ckpt = _tiny_checkpoint()
    other = build_model(ModelConfig(num_classes=3, width=0.25, input_size=64)).state_dict()
    with pytest.raises(ConfigError, match=r"features.0.weight"):
        model_from_checkpoint(Checkpoint(**{**ckpt.__dict__, "state_dict": other}))
