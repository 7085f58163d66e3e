"""Config locking, overrides parsed by field type, clear errors for bad keys and values."""

import json

import ml_collections
import pytest

from configs import base_config
from configs import classifier as classifier_config
from latticejax.train import config_utils


def test_classifier_config_is_locked_and_complete():
    config = classifier_config.get_config("tiny")
    config_utils.check_config(config)
    assert config.is_locked
    with pytest.raises(AttributeError):
        config.train.stepz = 3
    with pytest.raises(TypeError):
        config.train.steps = "many"
    assert config.data.name == "digits" and config.model.kind == "mlp"
    default = classifier_config.get_config()
    assert default.data.name == "fashion_mnist" and default.model.kind == "cnn"
    assert classifier_config.get_config("tiny,cnn").model.kind == "cnn"
    with pytest.raises(ValueError, match="unknown \\['huge'\\]"):
        classifier_config.get_config("tiny,huge")


def test_check_config_names_missing_and_mistyped_keys():
    config = base_config().to_dict()
    config["experiment"] = "classifier"
    config["train"]["steps"] = 0
    config["data"]["batch_size"] = 2.5
    del config["mesh"]
    with pytest.raises(ValueError) as e:
        config_utils.check_config(ml_collections.ConfigDict(config))
    msg = str(e.value)
    assert "missing 'mesh.data'" in msg and "missing 'mesh.fsdp'" in msg
    assert "'train.steps' must be >= 1, got 0" in msg
    assert "'data.batch_size' must be int, got 2.5 (float)" in msg


def test_apply_override_parses_by_field_type():
    config = classifier_config.get_config("tiny")
    config_utils.apply_override(config, "train.steps", "7")
    config_utils.apply_override(config, "optimizer.learning_rate", "1e-4")
    config_utils.apply_override(config, "model.kind", "cnn")
    config_utils.apply_override(config, "model.features", "(8, 16)")
    config_utils.apply_override(config, "train.stop_after", "3")  # placeholder(int)
    config_utils.apply_override(config, "data.data_dir", "/tmp/d")  # placeholder(str)
    assert config.train.steps == 7 and isinstance(config.train.steps, int)
    assert config.optimizer.learning_rate == pytest.approx(1e-4)
    assert config.model.kind == "cnn" and config.model.features == (8, 16)
    assert config.train.stop_after == 3 and config.data.data_dir == "/tmp/d"


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("train.stepz", "3", "no key 'train.stepz'"),
        ("nope.steps", "3", "no key 'nope'"),
        ("train.steps", "3.5", "train.steps='3.5': expected an int"),
        ("optimizer.learning_rate", "fast", "expected a float"),
        ("train.stop_after", "soon", "expected an int"),
    ],
)
def test_apply_override_rejects_bad_keys_and_values(key, value, match):
    config = classifier_config.get_config("tiny")
    with pytest.raises((KeyError, ValueError), match=match):
        config_utils.apply_override(config, key, value)


def test_save_config_writes_json_and_yaml(tmp_path):
    config = classifier_config.get_config("tiny")
    config_utils.save_config(config, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == json.loads(config.to_json_best_effort())
    assert config_utils.load_saved_config(tmp_path) == saved
    text = (tmp_path / "config.yaml").read_text()
    assert "experiment: classifier" in text
    assert isinstance(ml_collections.ConfigDict(saved), ml_collections.ConfigDict)
