import pytest

import step  # noqa: F401
from step.errors import ConfigError, UnknownNameError
from step.registry import ALL_REGISTRIES, MODELS, Registry


def make_registry():
    reg = Registry("widget")

    @reg.register("round-widget", paper="Doe 2020")
    def round_widget(size: int = 1, colour: str = "red"):
        return ("round", size, colour)

    reg.add("round-widget-big", round_widget, size=10)
    return reg


def test_build_passes_kwargs_and_defaults():
    reg = make_registry()
    assert reg.build("round-widget", size=3) == ("round", 3, "red")
    assert reg.build("round-widget-big") == ("round", 10, "red")
    assert reg.build("round-widget-big", size=2, colour="blue") == ("round", 2, "blue")
    assert reg.names() == ["round-widget", "round-widget-big"]
    assert "round-widget" in reg and "square" not in reg
    assert reg.entry("round-widget").paper == "Doe 2020"


def test_unknown_name_lists_valid_names_and_closest():
    reg = make_registry()
    with pytest.raises(UnknownNameError) as info:
        reg.build("rund-widget")
    msg = str(info.value)
    assert "Unknown widget 'rund-widget'" in msg
    assert "Did you mean 'round-widget'?" in msg
    assert "round-widget, round-widget-big" in msg


def test_unknown_keyword_is_rejected_with_valid_options():
    reg = make_registry()
    with pytest.raises(ConfigError) as info:
        reg.build("round-widget", colur="blue")
    msg = str(info.value)
    assert "'colur'" in msg and "Did you mean 'colour'?" in msg and "colour, size" in msg


def test_duplicate_registration_and_bad_defaults_fail():
    reg = make_registry()
    with pytest.raises(ValueError):
        reg.add("round-widget", lambda: None)
    with pytest.raises(ValueError):
        reg.add("broken", lambda size=1: size, colour="red")


def test_global_registries_are_filled_on_import():
    assert set(ALL_REGISTRIES) == {"model", "neuron", "surrogate", "encoder", "attention", "dataset", "task", "backend", "energy"}
    for kind in ("model", "neuron", "surrogate", "encoder", "attention", "dataset", "task"):
        assert len(ALL_REGISTRIES[kind]) > 0, kind
    assert "spikformer-4-384" in MODELS
