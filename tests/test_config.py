from dataclasses import fields

import pytest

from mavae.config import FitConfig, config_to_yaml, load_config, merge_overrides, save_config


def test_defaults_are_valid():
    assert FitConfig().validate() == FitConfig()


def test_yaml_round_trip(tmp_path):
    config = FitConfig(data="/some/path", k="auto", latent_dim=16, lr=1e-3, weight_decay=0.0,
                       batch_size=None, recon="bce", pose="rigid", grad_clip=0.5, manifold="umap")
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert load_config(tmp_path / "config.yaml") != FitConfig()


def test_yaml_lists_every_field_in_order():
    text = config_to_yaml(FitConfig())
    keys = [line.split(":")[0] for line in text.splitlines()]
    assert keys == [f.name for f in fields(FitConfig)]


def test_partial_file_keeps_defaults_and_empty_file_is_default(tmp_path):
    (tmp_path / "a.yaml").write_text("epochs: 3\nk: auto\n")
    assert load_config(tmp_path / "a.yaml") == FitConfig(epochs=3, k="auto")
    (tmp_path / "b.yaml").write_text("")
    assert load_config(tmp_path / "b.yaml") == FitConfig()


def test_ints_accepted_for_floats_and_exponent_without_dot(tmp_path):
    (tmp_path / "c.yaml").write_text("beta: 2\nlr: 1e-3\nweight_decay: 1.0e-5\n")
    config = load_config(tmp_path / "c.yaml")
    assert config.beta == 2.0 and isinstance(config.beta, float)
    assert config.lr == 1e-3 and config.weight_decay == 1e-5


def test_unknown_key_is_named_with_valid_keys(tmp_path):
    (tmp_path / "d.yaml").write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate") as e:
        load_config(tmp_path / "d.yaml")
    assert "valid keys" in str(e.value) and "weight_decay" in str(e.value)


@pytest.mark.parametrize("text, key, value, expected", [
    ("epochs: '30'", "epochs", "'30'", "int"),
    ("epochs: 2.5", "epochs", "2.5", "int"),
    ("epochs: true", "epochs", "True", "int"),
    ("lr: fast", "lr", "'fast'", "float or None"),
    ("k: [1, 2]", "k", "[1, 2]", "int or str"),
    ("data: 3", "data", "3", "str"),
])
def test_wrong_type_names_key_value_and_type(tmp_path, text, key, value, expected):
    (tmp_path / "e.yaml").write_text(text + "\n")
    with pytest.raises(ValueError) as e:
        load_config(tmp_path / "e.yaml")
    message = str(e.value)
    assert repr(key) in message and value in message and f"expected {expected}," in message


def test_not_a_mapping_and_bad_yaml(tmp_path):
    (tmp_path / "f.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(tmp_path / "f.yaml")
    (tmp_path / "g.yaml").write_text("epochs: [1\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_config(tmp_path / "g.yaml")


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("k", 0), ("k", "many"), ("lr", 0.0), ("lr", -1.0), ("lr", float("nan")),
    ("recon", "l1"), ("pose", "affine"), ("manifold", "tsne"), ("batch_size", 0), ("latent_dim", 0),
    ("refit_every", 0), ("warmup_epochs", -1), ("beta", -0.1), ("grad_clip", 0.0),
    ("data", ""), ("seed", -1), ("image_size", 0), ("epochs", "3"),
])
def test_validate_names_the_field(field, value):
    with pytest.raises(ValueError, match=repr(field)):
        FitConfig(**{field: value}).validate()


def test_merge_overrides_ignores_none_and_validates():
    base = FitConfig(epochs=7, lr=0.01)
    merged = merge_overrides(base, {"epochs": None, "lr": None, "k": "auto", "beta": 3})
    assert merged == FitConfig(epochs=7, lr=0.01, k="auto", beta=3.0)
    assert base == FitConfig(epochs=7, lr=0.01)  # not modified
    with pytest.raises(ValueError, match="'epochs'"):
        merge_overrides(base, {"epochs": 0})
    with pytest.raises(ValueError, match="'nope'"):
        merge_overrides(base, {"nope": 1})
    with pytest.raises(ValueError, match="'lr'"):
        merge_overrides(base, {"lr": "0.1"})
