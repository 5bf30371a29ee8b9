import pytest

import kit
from kit import ConfigError, DataConfig, TrainConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", 0.0), ("epochs", 0), ("dropout", 1.0), ("hidden", ()), ("activation", "swishy"),
     ("norm", "group"), ("batch_size", 0), ("scheduler", "step"), ("device", "tpu"), ("patience", -1)],
)
def test_train_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    assert info.value.field == field
    # The message shows the bad value the way Optuna does: name=value.
    assert f"{field}=" in info.value.message


@pytest.mark.parametrize(("field", "value"), [("task", "ranking"), ("valid_size", 0.0), ("test_size", 0.6),
                                              ("unknown_category", "drop")])
def test_data_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError) as info:
        DataConfig(**{field: value})
    assert info.value.field == field


def test_config_round_trips_through_dict_and_refuses_unknown_keys():
    config = TrainConfig(hidden=(32, 16), lr=0.01)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"learning_rate": 0.1})
    assert info.value.field == "learning_rate"


def test_replace_validates_again():
    assert TrainConfig().replace(epochs=5).epochs == 5
    with pytest.raises(ConfigError):
        TrainConfig().replace(epochs=-1)


def test_smoke_if_applies_the_smoke_profile_only_when_on():
    config = TrainConfig(epochs=200, patience=20)
    assert config.smoke_if(True) == config.smoke()
    assert config.smoke_if(True).epochs == kit.SMOKE.epochs
    assert config.smoke_if(False) is config
