"""backends/cli_options.py: the runner's and bag_eval's flags, the node's parameters -> options."""
from dpt_ros.backends import BackendOptions
from dpt_ros.backends.cli_options import options_from_args, options_from_values
from dpt_ros.demo import runner
from dpt_ros.evaluation import cli
from dpt_ros.ros import params


def test_runner_flags_become_options():
    p = runner.build_parser()
    runner.add_output_args(p)
    args = p.parse_args(['--tt-run', '--device', 'wormhole_n300', '--dp', '2', '--weights',
                         'random', '--tt-execution-mode', 'trace', '--seed', '5'])
    runner.check_args(p, args)
    assert options_from_args(args) == BackendOptions(
        weights='random', device='wormhole_n300', dp=2, batch_size=2, strict=True,
        execution_mode='trace', seed=5, dtype='auto')
    args = p.parse_args(['--no-strict', '--compile', '--threads', '3'])
    runner.check_args(p, args)
    assert options_from_args(args) == BackendOptions(compile=True, threads=3, dtype='auto')


def test_bag_eval_flags_become_options():
    p = cli.build_parser()
    assert options_from_args(p.parse_args(['offline', 'bag'])) == BackendOptions(dtype='auto')
    args = p.parse_args(['offline', 'bag', '--execution-mode', 'eager', '--dtype', 'bf16',
                         '--image-size', '64', '--dp', '2'])
    assert options_from_args(args) == BackendOptions(execution_mode='eager', dtype='bf16',
                                                     image_size=64, dp=2)
    assert options_from_args(args, dp=1).dp == 1     # overrides win


def test_node_parameters_give_the_same_options_as_params_py():
    values = params.defaults()
    assert values['streams'] == 0       # auto: the streams follow the number of cameras
    for cameras, streams in ((['front'], 1), (['front', 'rear'], 2)):
        values['cameras'] = cameras
        assert options_from_values(values, batch_size=1, streams=streams) == \
            params.backend_options(values)
    values['streams'] = 3
    assert params.backend_options(values).streams == 3
