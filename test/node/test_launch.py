"""
launch/depth.launch.py: arguments, the actions it creates, and what it refuses.

Also its consistency with setup.py, the params file and the node's topic names. Uses the real
launch/launch_ros when importable, otherwise the test double in
test/support/doubles/launch_ros_double.py (they are not on PyPI). The arguments are handled as
`ros2 launch` handles them: given ones set first, then each DeclareLaunchArgument executed with a
LaunchContext, then the OpaqueFunction. The package share directory is found through a real ament
index built in a temp prefix (test/support/launch_cli.py). test/node/test_launch_cli.py runs the
same file as a process.
"""
import ast
import fnmatch
import glob
import importlib.util
import os
import re

from dpt_ros import vocabulary
from dpt_ros.ros import entry as dpt_node
from dpt_ros.ros import params
import pytest
from support.doubles import launch_ros_double
from support.launch_cli import make_prefix
from support.paths import ROOT
from support.ros_harness import NodeProcess
import yaml

LAUNCH_FILE = os.path.join(ROOT, 'launch', 'depth.launch.py')
USING_DOUBLE = launch_ros_double.install()


def _prefix(tmp_path, monkeypatch, rviz):
    prefix = make_prefix(tmp_path / 'prefix', rviz=rviz)
    monkeypatch.setenv('AMENT_PREFIX_PATH', prefix)
    return os.path.join(prefix, 'share', 'dpt_ros')


@pytest.fixture
def share(tmp_path, monkeypatch):
    """Return a real ament prefix whose share/dpt_ros is this checkout (no rviz2 in it)."""
    return _prefix(tmp_path, monkeypatch, rviz=False)


@pytest.fixture
def share_with_rviz(tmp_path, monkeypatch):
    """Return the same prefix with an rviz2 package in it."""
    return _prefix(tmp_path, monkeypatch, rviz=True)


CREATED: list = []   # every Node the launch file constructed, in order


def load_launch():
    spec = importlib.util.spec_from_file_location('depth_launch', LAUNCH_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    real_node = mod.Node

    class RecordingNode(real_node):
        """The real (or double) Node, keeping the keyword arguments it was given."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.recorded = dict(kwargs)
            CREATED.append(self)
    mod.Node = RecordingNode
    return mod


def default_text(arg):
    """Return a DeclareLaunchArgument's default, performed with a context as launch does."""
    from launch import LaunchContext
    from launch.utilities import perform_substitutions
    if arg.default_value is None:
        return None
    return perform_substitutions(LaunchContext(), arg.default_value)


def evaluate(args: dict, argv: list | None = None):
    """
    Return the declared arguments and each Node's kwargs, for `name:=value` args.

    argv: the `ros2 launch` command line's arguments (default: `args` as name:=value).
    """
    from launch import LaunchContext
    mod = load_launch()
    ld = mod.generate_launch_description()
    argv = [f'{k}:={v}' for k, v in args.items()] if argv is None else argv
    context = LaunchContext(argv=argv)
    entities = ld.describe_sub_entities()
    declared = [e for e in entities if hasattr(e, 'description') and hasattr(e, 'name')]
    context.launch_configurations.update(args)    # given arguments are set first
    for a in declared:
        a.execute(context)                         # then defaults fill the rest
    del CREATED[:]
    nodes = []
    for e in entities:
        if e not in declared:
            nodes += list(e.execute(context) or [])
    return declared, [n.recorded for n in nodes]


def console_scripts():
    tree = ast.parse(open(os.path.join(ROOT, 'setup.py')).read())
    scripts = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                re.match(r'^\w+ = [\w.]+:\w+$', node.value):
            name, target = node.value.split(' = ')
            scripts[name] = target
    return scripts


def installed_config_globs():
    text = open(os.path.join(ROOT, 'setup.py')).read()
    return re.findall(r"glob\('(config/[^']+)'\)", text)


def test_arguments_declared_with_descriptions_and_yaml_defaults(share):
    declared, _ = evaluate({})
    by_name = {a.name: a for a in declared}
    # Issue 24: every node parameter is an argument (autostart, cameras, metric.*, points.*).
    assert set(by_name) == {'params_file', 'image', 'namespace', 'rviz', 'view'} | \
        set(params.BY_NAME)
    for a in declared:
        assert len(a.description) > 20, a.name
    # Defaults live only in config/dpt.yaml: every override argument is empty by default.
    for name in ['params_file', 'image', 'namespace'] + list(params.BY_NAME):
        assert default_text(by_name[name]) == '', name
    assert default_text(by_name['rviz']) == 'false'
    assert default_text(by_name['view']) == 'false'


def test_parameter_arguments_help_is_the_tables_description(share):
    """Issue 23: one source of prose (the `backend` help had lost openvino, the default)."""
    declared, _ = evaluate({})
    by_name = {a.name: a for a in declared}
    for p in params.PARAMS:
        assert by_name[p.name].description.startswith(p.description), p.name
    assert 'openvino' in by_name['backend'].description


def test_lifecycle_cameras_and_metric_arguments_reach_the_node_typed(share):
    """Issue 24: autostart:=false was ignored; cameras and metric.* needed a params file."""
    _, [n] = evaluate({'autostart': 'false', 'cameras': '[front,rear]',
                       'metric.mode': 'fixed', 'metric.scale': '2', 'points.stride': '4',
                       'image_size': '256'})
    overrides = n['parameters'][1]
    assert overrides == {'autostart': False, 'cameras': ['front', 'rear'],
                         'metric.mode': 'fixed', 'metric.scale': 2.0, 'points.stride': 4,
                         'image_size': 256}
    assert params.validate(overrides) == []
    _, [n] = evaluate({'autostart': ''})      # empty: the params file decides
    assert n['parameters'] == [os.path.join(share, 'config', 'dpt.yaml')]


def test_an_unknown_argument_is_refused_with_one_line(share, monkeypatch):
    """Issue 24: `ros2 launch` sets and ignores names the file does not declare (typos)."""
    monkeypatch.setattr('sys.argv', ['ros2', 'launch', 'dpt_ros', 'depth.launch.py'])
    with pytest.raises(RuntimeError) as err:
        evaluate({}, argv=['autostrat:=false', 'image:=/cam/image_raw'])
    assert str(err.value) == ('unknown argument(s) autostrat:= (see --show-args); nothing '
                              'started')
    assert CREATED == []
    # What `ros2 launch --launch-prefix` adds is not a typo.
    evaluate({}, argv=['launch-prefix:=gdb -ex run'])


def test_an_including_launch_files_arguments_are_its_own(share, monkeypatch):
    monkeypatch.setattr('sys.argv', ['ros2', 'launch', 'robot', 'bringup.launch.py'])
    _, nodes = evaluate({}, argv=['use_sim_time:=true', 'robot:=r2'])
    assert len(nodes) == 1


@pytest.mark.parametrize('args,words', [
    ({'autostart': 'maybe'}, 'autostart:=maybe: use true or false; nothing started'),
    ({'cameras': 'front'}, 'cameras:=front: a list of names is needed'),
    ({'image_size': 'big'}, 'image_size:=big: an integer is needed')])
def test_a_value_of_the_wrong_type_is_refused_before_any_node_exists(share, args, words):
    with pytest.raises(RuntimeError) as err:
        evaluate(args)
    assert words in str(err.value) and '\n' not in str(err.value)
    assert CREATED == []


def test_default_launch_starts_the_installed_node_with_the_installed_params(share):
    _, nodes = evaluate({})
    assert len(nodes) == 1
    n = nodes[0]
    assert n['package'] == 'dpt_ros'
    assert console_scripts()[n['executable']] == 'dpt_ros.ros.entry:main'
    [params_file] = n['parameters']
    assert params_file == os.path.join(share, 'config', 'dpt.yaml')
    assert os.path.isfile(params_file)
    assert any(fnmatch.fnmatch('config/dpt.yaml', g) for g in installed_config_globs())
    # The params file's key names this node (in any namespace).
    key = next(iter(yaml.safe_load(open(params_file))))
    assert key.split('/')[-1] == n['name']
    assert n['remappings'] == [] and n['namespace'] == ''


def test_overrides_remappings_and_namespace(share):
    _, nodes = evaluate({'image': '/camera/image_raw', 'backend': 'tt',
                         'device': 'wormhole_n300', 'weights': 'tiny-random',
                         'namespace': 'robot'})
    n = nodes[0]
    assert n['remappings'] == [(vocabulary.TOPIC_IMAGE, '/camera/image_raw'),
                               (vocabulary.TOPIC_CAMERA_INFO, '/camera/camera_info')]
    assert n['namespace'] == 'robot'
    assert n['parameters'][1] == {'backend': 'tt', 'device': 'wormhole_n300',
                                  'weights': 'tiny-random'}
    assert params.validate(n['parameters'][1]) == []
    # A relative topic's camera_info sibling stays relative.
    _, nodes = evaluate({'image': 'cam/raw'})
    assert nodes[0]['remappings'][1] == ('camera_info', 'cam/camera_info')


def test_rviz_argument_starts_rviz_with_the_package_config(share_with_rviz):
    share = share_with_rviz
    _, nodes = evaluate({'rviz': 'false'})
    assert [n['package'] for n in nodes] == ['dpt_ros']
    _, nodes = evaluate({'rviz': 'true', 'image': '/camera/image_raw', 'namespace': 'robot'})
    rviz = nodes[1]
    assert (rviz['package'], rviz['executable']) == ('rviz2', 'rviz2')
    cfg = rviz['arguments'][rviz['arguments'].index('-d') + 1]
    assert cfg == os.path.join(share, 'config', 'depth.rviz') and os.path.isfile(cfg)
    assert any(fnmatch.fnmatch('config/depth.rviz', g) for g in installed_config_globs())
    assert dict(rviz['remappings']) == {'/image': '/camera/image_raw',
                                        '/depth_relative/color': '/robot/depth_relative/color'}
    with pytest.raises(RuntimeError, match='rviz:=maybe: use true or false'):
        evaluate({'rviz': 'maybe'})
    assert CREATED == []


def test_view_argument_starts_depth_view_in_the_same_namespace(share):
    _, nodes = evaluate({'view': 'false'})
    assert [n['executable'] for n in nodes] == ['depth_node']
    _, nodes = evaluate({'view': 'true', 'image': '/camera/image_raw', 'namespace': 'robot'})
    view = nodes[1]
    assert (view['package'], view['namespace']) == ('dpt_ros', 'robot')
    assert console_scripts()[view['executable']] == 'dpt_ros.ros.view_node:main'
    assert view['remappings'] == [(vocabulary.TOPIC_IMAGE, '/camera/image_raw')]
    _, nodes = evaluate({'view': 'true'})
    assert nodes[1]['remappings'] == []
    with pytest.raises(RuntimeError, match='view:=maybe: use true or false'):
        evaluate({'view': 'maybe'})


def test_rviz_without_rviz2_is_refused_before_any_node_exists(share):
    """
    Issue 16.

    Launch_ros finds a missing package only when it starts that Node, after the depth node has
    started -- and the failed launch left the depth node running.
    """
    with pytest.raises(RuntimeError, match="package 'rviz2' is not installed"):
        evaluate({'rviz': 'true'})
    assert CREATED == []


def test_missing_params_file_is_refused_before_any_node_exists(share, tmp_path):
    """
    Refuse what launch_ros only warns about: a parameters path that is not a file.

    The node then started on its code defaults.
    """
    missing = str(tmp_path / 'missing.yaml')
    with pytest.raises(RuntimeError, match=f'params_file:={re.escape(missing)} is not a file'):
        evaluate({'params_file': missing})
    assert CREATED == []


class _Exited:
    """The field of launch's ProcessExited event that the exit handler reads."""

    def __init__(self, returncode):
        self.returncode = returncode


class _Context:
    """The field of a LaunchContext that the exit handler reads."""

    def __init__(self, is_shutdown):
        self.is_shutdown = is_shutdown


def test_node_exit_fails_the_launch_on_error_and_ends_it_on_exit_0(share):
    _, [n] = evaluate({})
    on_exit = n['on_exit']
    from launch.actions import Shutdown
    ends = on_exit(_Exited(0), _Context(is_shutdown=False))
    assert [type(a) for a in ends] == [Shutdown]
    assert on_exit(_Exited(0), _Context(is_shutdown=True)) is None   # Ctrl-C: already ending
    # An exception is what makes `ros2 launch` exit non-zero: it names the node and the code.
    with pytest.raises(RuntimeError, match=r'depth_node exited with code 2 \(invalid param'):
        on_exit(_Exited(dpt_node.EXIT_CONFIG), _Context(False))
    with pytest.raises(RuntimeError, match=r'code 1 \(unexpected error'):
        on_exit(_Exited(dpt_node.EXIT_ERROR), _Context(False))
    with pytest.raises(RuntimeError, match=r'code -9 \(killed by signal 9'):
        on_exit(_Exited(-9), _Context(True))


def test_sigterm_comes_only_after_the_node_can_have_released_the_device(share):
    """
    The node skips its cleanup on a second signal.

    Launch's SIGTERM must not come while it still waits for a running call and a start-up step (1 s
    each) and closes the backend.
    """
    _, [n] = evaluate({})
    node_bound = dpt_node.STARTUP_ABORT_WAIT_S + dpt_node.WORKER_STOP_TIMEOUT_S
    assert float(n['sigterm_timeout']) >= 2 * node_bound   # as long again to close a device


def test_every_hint_the_node_prints_names_a_launch_argument(share):
    """
    `name:=value` in any message of the package is something `ros2 launch` accepts.

    A declared argument (a remapping such as image:= is one too). ROS's own __ns:= and __node:=
    remappings are not hints.
    """
    declared, _ = evaluate({})
    names = {a.name for a in declared}
    hints = set()
    for path in glob.glob(os.path.join(ROOT, 'dpt_ros', '**', '*.py'), recursive=True):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                hints |= {(m, os.path.relpath(path, ROOT))
                          for m in re.findall(r'(?<![\w{])([a-z][a-z_]*):=', node.value)}
    assert ('weights', 'dpt_ros/inference/hf_model.py') in hints     # the hint issue 16 found
    assert {h for h in hints if h[0] not in names} == set()


def test_launch_file_has_no_eval_and_declares_no_parameter_defaults():
    src = open(LAUNCH_FILE).read()
    assert 'eval(' not in src and 'exec(' not in src
    for p in params.PARAMS:   # no parameter default repeated in the launch file
        if isinstance(p.default, str) and len(p.default) > 3:
            assert f"'{p.default}'" not in src, p.name


def test_equivalent_console_command_starts_the_node(share):
    """
    What `ros2 launch ...

    image:=/camera/image_raw` runs, started the way this machine can: the node module with the same
    params file and remappings (backend swapped for a stand-in so no model loads).
    """
    _, nodes = evaluate({'image': '/camera/image_raw'})
    n = nodes[0]
    args = []
    for src, dst in n['remappings']:
        args += ['-r', f'{src}:={dst}']
    values = yaml.safe_load(open(n['parameters'][0]))
    flat = {}

    def walk(d, prefix=''):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f'{prefix}{k}.')
            else:
                flat[prefix + k] = v
    walk(next(iter(values.values()))['ros__parameters'])
    flat.update(backend='standin_zero', image_size=64)
    with NodeProcess(flat, extra_args=args) as node:
        assert any("['/camera/image_raw']" in line for line in node.lines), node.output()


def test_double_only_when_real_launch_is_missing():
    import sys
    is_double = 'test double' in (sys.modules['launch'].__doc__ or '')
    assert is_double == USING_DOUBLE
    if is_double:   # say so in the report, so nobody mistakes this for a real launch test
        print('launch/launch_ros not installed here: tested with doubles/launch_ros_double.py')
