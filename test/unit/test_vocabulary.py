"""vocabulary.py: the one lookup of the on-disk cache's base (TT weights, OpenVINO models)."""
import os

from dpt_ros import vocabulary


def test_a_cache_folder_is_under_cache_dir_then_the_variable_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv(vocabulary.CACHE_ENV, str(tmp_path / 'env'))
    assert vocabulary.cache_folder('tt_weights', str(tmp_path / 'set')) == str(
        tmp_path / 'set' / 'tt_weights')
    assert vocabulary.cache_folder('openvino') == str(tmp_path / 'env' / 'openvino')
    monkeypatch.delenv(vocabulary.CACHE_ENV)
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert vocabulary.cache_folder('openvino', '') == os.path.join(
        str(tmp_path / 'home'), '.cache', 'dpt_ros', 'openvino')
