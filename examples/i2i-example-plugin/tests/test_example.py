"""Run i2i's conformance suite on this plugin's entries (needs the plugin installed)."""

import pytest

from i2i.testing import check_generator, check_generator_onnx, check_method_trains, generator_names, method_network_pairs

NAMES = generator_names(plugin="example")


def test_the_plugin_is_loaded():
    assert NAMES == ["example_resnet"]


@pytest.mark.parametrize("name", NAMES)
def test_generator(name):
    check_generator(name)


@pytest.mark.parametrize("name", NAMES)
def test_generator_onnx(name, tmp_path):
    check_generator_onnx(name, tmp_path)


@pytest.mark.parametrize("method, name", method_network_pairs("generator", plugin="example"))
def test_generator_trains_in_every_method_it_fits(method, name):
    check_method_trains(method, generator=name)  # skipped, with the reason, where it does not fit
