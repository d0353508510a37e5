r"""
Launch the dpt_ros depth node (and optionally RViz 2 and the browser view).

    ros2 launch dpt_ros depth.launch.py image:=/camera/image_raw
    ros2 launch dpt_ros depth.launch.py image:=/camera/image_raw backend:=tt \
        device:=wormhole_n300 rviz:=true
    ros2 launch dpt_ros depth.launch.py view:=true   # then open http://127.0.0.1:8090/
    ros2 launch dpt_ros depth.launch.py autostart:=false cameras:=[front,rear] metric.mode:=fixed

Every node parameter is also a launch argument of the same name, generated from the parameter
table (dpt_ros/ros/params.py): its help is the table's description, and an argument left empty
('') means "use the params file", so defaults live only in config/dpt.yaml (itself generated
from the table). `image` remaps the node's `image` input and its sibling `camera_info`
(image_transport convention: /camera/image_raw -> /camera/camera_info). Without a ROS install
(no `ros2` CLI) the same node starts with
`depth_node --ros-args --params-file config/dpt.yaml -r image:=/camera/image_raw`.

What this file refuses, before any process starts (one line each, and `ros2 launch` exits 1):
an argument it does not declare (a typo) when it is the file `ros2 launch` was given, a value
of the wrong type for its parameter (`autostart:=maybe`, `image_size:=big`), a params_file that
is not a file, rviz:=true without rviz2 installed, an rviz or view value that is not
true/false. When the node exits with an error code the launch stops and exits 1, naming the
node and its code; when the node exits 0 (it was stopped) the launch shuts down with 0.
"""
import os
import sys

from ament_index_python.packages import (get_package_prefix, get_package_share_directory,
                                         PackageNotFoundError)
from dpt_ros import vocabulary
from dpt_ros.ros import param_text, params
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'dpt_ros'
EXECUTABLE = 'depth_node'
NODE_NAME = vocabulary.NODE_NAME
RVIZ_PACKAGE = RVIZ_EXECUTABLE = 'rviz2'
VIEW_EXECUTABLE = 'depth_view'

# (name, default, description) of the arguments that are not node parameters. Empty defaults
# defer to the params file; the node parameters' arguments follow, generated (PARAM_ARGUMENTS).
ARGUMENTS = (
    ('params_file', '', 'Parameters YAML for the node; empty = the installed '
                        'config/dpt.yaml.'),
    ('image', '', 'Input image topic, e.g. /camera/image_raw (its sibling camera_info is '
                  "remapped too); empty = the node's own `image`. The outputs go to the "
                  'namespace (the root without one), not beside the input: two launches need '
                  'two namespaces (namespace:=front ...).'),
    ('namespace', '', 'Namespace for the node and all its topics; empty = none.'),
    ('rviz', 'false', 'true: also start rviz2 with config/depth.rviz (input + colour depth).'),
    ('view', 'false', 'true: also start depth_view, a live page on http://127.0.0.1:8090/ '
                      '(input, colour depth, FPS/latency/level plots).'),
)
PARAM_ARGUMENTS = tuple((p.name, '', param_text.launch_help(p)) for p in params.PARAMS)
# What `ros2 launch --launch-prefix ...` adds to the arguments itself.
CLI_ARGUMENTS = frozenset({'launch-prefix', 'launch-prefix-filter'})

# launch's own default escalation is SIGINT, then SIGTERM after 5 s. The node treats a second
# signal as "exit now, skip the cleanup", so a SIGTERM must not come while it still releases
# the device: it waits at most 1 s for a running inference call and 1 s for a start-up step,
# then closes the backend (the TT device and its traces; not measured on a card yet).
SIGTERM_TIMEOUT_S = '10'

# What the node's exit codes mean (dpt_ros/ros/entry.py).
EXIT_MEANINGS = {1: 'unexpected error', 2: 'invalid parameter or a backend that cannot start'}


class LaunchRefused(RuntimeError):
    """An argument this launch cannot honour; raised before any action exists."""


def _sibling(topic: str, name: str) -> str:
    head, _, _ = topic.rpartition('/')
    return f'{head}/{name}' if head or topic.startswith('/') else name


def _qualify(namespace: str, topic: str) -> str:
    if topic.startswith('/'):
        return topic
    ns = namespace.strip('/')
    return f'/{ns}/{topic}' if ns else f'/{topic}'


def _truthy(value: str, name: str = 'rviz') -> bool:
    if value.lower() in ('true', '1', 'yes', 'on'):
        return True
    if value.lower() in ('false', '0', 'no', 'off', ''):
        return False
    raise LaunchRefused(f'{name}:={value}: use true or false; nothing started')


def _require_executable(package: str, executable: str, why: str) -> None:
    # launch_ros would find out only when it starts that process, after the actions before
    # it have started theirs, and a failed launch then leaves those running (issue 16).
    try:
        prefix = get_package_prefix(package)
    except PackageNotFoundError:
        raise LaunchRefused(f"{why}, but package '{package}' is not installed (or not in "
                            'AMENT_PREFIX_PATH); nothing started') from None
    path = os.path.join(prefix, 'lib', package, executable)
    if not os.access(path, os.X_OK):
        raise LaunchRefused(f'{why}, but {path} is not an executable; nothing started')


def _launched_directly() -> bool:
    # Only the file named on the `ros2 launch` command line owns its arguments: a file that
    # includes this one has arguments of its own, which are not typos.
    me = os.path.basename(__file__)
    return any(os.path.basename(a) == me for a in sys.argv)


def _refuse_unknown(context) -> None:
    known = {name for name, _, _ in ARGUMENTS + PARAM_ARGUMENTS} | CLI_ARGUMENTS
    given = [a.split(':=', 1)[0] for a in context.argv if ':=' in a]
    unknown = sorted(set(given) - known)
    if unknown and _launched_directly():
        raise LaunchRefused(f"unknown argument(s) {', '.join(u + ':=' for u in unknown)} "
                            '(see --show-args); nothing started')


def _parameter_overrides(arg) -> dict:
    """Typed values of the node-parameter arguments the user gave (not empty)."""
    overrides = {}
    for p in params.PARAMS:
        text = arg(p.name)
        if text:
            try:
                overrides[p.name] = param_text.from_text(p, text)
            except ValueError as exc:
                raise LaunchRefused(f'{exc}; nothing started') from None
    return overrides


def _on_node_exit(event, context):
    """Stop the launch when the node ends: with an error when its exit code says one."""
    code = event.returncode
    if code == 0:
        # Stopped from outside (not by this launch shutting down): end the launch with it.
        return None if context.is_shutdown else [Shutdown(reason=f'{NODE_NAME} exited')]
    meaning = EXIT_MEANINGS.get(code, f'killed by signal {-code}' if code < 0 else 'error')
    # An exception is how a launch ends with a non-zero code: `ros2 launch` prints it as one
    # line ("Caught exception in launch ...") and exits 1.
    raise RuntimeError(f'{NODE_NAME} exited with code {code} ({meaning}; see its log above)')


def _actions(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    _refuse_unknown(context)
    overrides = _parameter_overrides(arg)
    share = get_package_share_directory(PACKAGE)
    params_file = arg('params_file') or os.path.join(share, 'config', 'dpt.yaml')
    if not os.path.isfile(params_file):
        # launch_ros only warns and starts the node on its code defaults.
        raise LaunchRefused(f'params_file:={params_file} is not a file; nothing started')
    with_rviz = _truthy(arg('rviz'))
    with_view = _truthy(arg('view'), 'view')
    if with_rviz:
        _require_executable(RVIZ_PACKAGE, RVIZ_EXECUTABLE, 'rviz:=true')
    namespace = arg('namespace')
    image = arg('image')
    remappings = []
    if image:
        remappings = [('image', image), ('camera_info', _sibling(image, 'camera_info'))]
    parameters = [params_file] + ([overrides] if overrides else [])
    actions = [Node(package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME,
                    namespace=namespace, parameters=parameters, remappings=remappings,
                    output='screen', emulate_tty=True, sigterm_timeout=SIGTERM_TIMEOUT_S,
                    on_exit=_on_node_exit)]
    if with_rviz:
        # The RViz config names the default topics; point them at this launch's topics.
        actions.append(Node(
            package=RVIZ_PACKAGE, executable=RVIZ_EXECUTABLE, name='rviz2', output='screen',
            arguments=['-d', os.path.join(share, 'config', 'depth.rviz')],
            remappings=[('/image', _qualify(namespace, image or 'image')),
                        ('/depth_relative/color', _qualify(namespace,
                                                           'depth_relative/color'))]))
    if with_view:
        # Its own process in the same namespace: the depth node pays nothing for the page.
        actions.append(Node(package=PACKAGE, executable=VIEW_EXECUTABLE, name=VIEW_EXECUTABLE,
                            namespace=namespace, output='screen',
                            remappings=[('image', image)] if image else []))
    return actions


def generate_launch_description():
    """Arguments (each with a description) and the node, built when the arguments are known."""
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS + PARAM_ARGUMENTS] +
        [OpaqueFunction(function=_actions)])
