"""dpt_ros.ros.param_text: the parameter table as launch help, launch values, config/dpt.yaml."""
import os

from dpt_ros.ros import param_text, params
import pytest
from support.paths import ROOT
import yaml

YAML_PATH = os.path.join(ROOT, 'config', 'dpt.yaml')


def test_config_yaml_is_what_the_table_writes():
    """Issue 23: one source for each parameter's prose; the yaml's comments had drifted."""
    with open(YAML_PATH) as f:
        committed = f.read()
    assert committed == param_text.yaml_text(), (
        'config/dpt.yaml differs from the parameter table: run '
        'python -m dpt_ros.ros.param_text --write config/dpt.yaml')


def test_every_description_is_in_the_yaml_and_in_the_launch_help():
    text = ' '.join(line.strip().lstrip('#').strip()
                    for line in param_text.yaml_text().splitlines())
    for p in params.PARAMS:
        assert p.description in text, p.name
        assert param_text.launch_help(p).startswith(p.description), p.name
        if p.constraint_text():
            assert p.constraint_text() in param_text.launch_help(p), p.name


def test_the_backend_help_names_every_backend():
    """Issue 23: the launch `backend` help omitted openvino, the default."""
    helptext = param_text.launch_help(params.BY_NAME['backend'])
    for name in ('openvino', 'torch', 'tt'):
        assert name in helptext
    assert 'installed default openvino' in helptext


def test_rendered_defaults_read_back_as_the_table_says():
    for p in params.PARAMS:
        value = yaml.safe_load(param_text.render(p.default))
        assert value == p.default and type(value) is type(p.default), p.name


@pytest.mark.parametrize('name,text,value', [
    ('autostart', 'false', False), ('autostart', 'True', True), ('image_size', '256', 256),
    ('metric.scale', '2', 2.0), ('metric.scale', '0.5', 0.5), ('weights', '123', '123'),
    ('cameras', '[front,rear]', ['front', 'rear']), ('cameras', "['']", ['']),
    ('metric.mode', 'fixed', 'fixed'), ('weights', '/models/dpt', '/models/dpt')])
def test_launch_text_becomes_the_parameters_type(name, text, value):
    got = param_text.from_text(params.BY_NAME[name], text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize('name,text,words', [
    ('autostart', 'maybe', 'autostart:=maybe: use true or false'),
    ('image_size', 'big', 'image_size:=big: an integer is needed'),
    ('metric.scale', 'x', 'metric.scale:=x: a number is needed'),
    ('cameras', 'front', 'cameras:=front: a list of names is needed, e.g. cameras:=[front,rear]'),
    ('cameras', '[]', 'a list of names is needed'), ('cameras', '[1, 2]', 'a list of names')])
def test_launch_text_of_the_wrong_type_is_one_line(name, text, words):
    with pytest.raises(ValueError) as err:
        param_text.from_text(params.BY_NAME[name], text)
    assert words in str(err.value) and '\n' not in str(err.value)


def test_dotted_groups_must_be_consecutive(monkeypatch):
    p = params.BY_NAME
    shuffled = (p['metric.mode'], p['cameras'], p['metric.scale'])
    monkeypatch.setattr(params, 'PARAMS', shuffled)
    with pytest.raises(ValueError, match='metric'):
        param_text.yaml_text()
