"""
`ros2 launch PACKAGE FILE [name:=value ...]` for tests, and the ament prefix it launches from.

    python test/support/launch_cli.py dpt_ros depth.launch.py image:=/camera/image_raw

Runs what `ros2 launch` runs (ros2launch.api.launch_a_launch_file, non-interactive when stdin
is not a terminal, as ros2launch decides) with the real launch packages when they are
importable, and with test/support/doubles/launch_ros_double.py otherwise. Exits with the
launch's code.

`make_prefix()` builds an ament prefix in a temp folder: share/dpt_ros is this checkout, and
lib/dpt_ros/depth_node starts `python -m dpt_ros.node` after appending its pid to the file
named by $DPT_TEST_NODE_STARTS (so a test knows whether the node ever started). With
rviz=True it also holds an `rviz2` package whose executable records its arguments and exits 0
on SIGINT/SIGTERM.
"""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TEST = os.path.dirname(HERE)
ROOT = os.path.dirname(TEST)
STARTS_ENV = 'DPT_TEST_NODE_STARTS'
RVIZ_ARGS_ENV = 'DPT_TEST_RVIZ_ARGS'

_NODE_SCRIPT = """#!/bin/sh
# Stand-in install of the depth_node console script (test/support/launch_cli.py).
[ -n "${DPT_TEST_NODE_STARTS}" ] && echo $$ >> "${DPT_TEST_NODE_STARTS}"
exec "%(python)s" -m dpt_ros.node "$@"
"""
_RVIZ_SCRIPT = """#!%(python)s
# Stand-in for rviz2 (test/support/launch_cli.py): records its arguments, exits 0 when signalled.
import os, signal, sys
path = os.environ.get('DPT_TEST_RVIZ_ARGS')
if path:
    with open(path, 'a') as f:
        f.write(' '.join(sys.argv[1:]) + '\\n')
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
try:
    signal.pause()
except KeyboardInterrupt:
    pass
"""


def _register(prefix: str, package: str) -> None:
    index = os.path.join(prefix, 'share', 'ament_index', 'resource_index', 'packages')
    os.makedirs(index, exist_ok=True)
    open(os.path.join(index, package), 'w').close()


def _script(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text % {'python': sys.executable})
    os.chmod(path, 0o755)


def make_prefix(path, rviz: bool = False) -> str:
    """Return an ament prefix at `path` with dpt_ros (this checkout) and, if asked, an rviz2."""
    prefix = str(path)
    _register(prefix, 'dpt_ros')
    os.symlink(ROOT, os.path.join(prefix, 'share', 'dpt_ros'))
    _script(os.path.join(prefix, 'lib', 'dpt_ros', 'depth_node'), _NODE_SCRIPT)
    if rviz:
        _register(prefix, 'rviz2')
        os.makedirs(os.path.join(prefix, 'share', 'rviz2'), exist_ok=True)
        _script(os.path.join(prefix, 'lib', 'rviz2', 'rviz2'), _RVIZ_SCRIPT)
    return prefix


def real_launch_available() -> bool:
    """Return True when the real launch, launch_ros and ros2launch can be imported."""
    try:
        import launch  # noqa: F401
        import launch_ros.actions  # noqa: F401
        import ros2launch.api  # noqa: F401
        return True
    except ImportError:
        return False


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print('usage: launch_cli.py PACKAGE LAUNCH_FILE [name:=value ...]', file=sys.stderr)
        return 2
    package, file_name, *arguments = argv
    from ament_index_python.packages import get_package_share_directory
    path = os.path.join(get_package_share_directory(package), 'launch', file_name)
    noninteractive = not sys.stdin.isatty()
    if real_launch_available():
        from ros2launch.api import launch_a_launch_file
    else:
        sys.path.insert(0, TEST)   # run as a script: `support` imports from test/
        from support.doubles import launch_ros_double
        launch_ros_double.install()
        launch_a_launch_file = launch_ros_double.launch_a_launch_file
    return launch_a_launch_file(launch_file_path=path, launch_file_arguments=arguments,
                                noninteractive=noninteractive)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
