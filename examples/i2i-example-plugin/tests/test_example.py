"""Run i2i's conformance suite on this plugin's entries (needs the plugin installed)."""

import pytest

from i2i.testing import check_generator, check_generator_onnx, generator_names

NAMES = generator_names(plugin="example")


def test_the_plugin_is_loaded():
    assert NAMES == ["example_resnet"]


@pytest.mark.parametrize("name", NAMES)
def test_generator(name):
    check_generator(name)


@pytest.mark.parametrize("name", NAMES)
def test_generator_onnx(name, tmp_path):
    check_generator_onnx(name, tmp_path)
