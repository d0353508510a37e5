"""Launch the dpt_ros depth node (and optionally RViz 2).

    ros2 launch dpt_ros depth.launch.py image:=/camera/image_raw
    ros2 launch dpt_ros depth.launch.py image:=/camera/image_raw backend:=tt \\
        device:=wormhole_n300 rviz:=true

Every parameter default lives in config/dpt.yaml: an argument left empty ('') means "use the
params file", so defaults are never repeated here. `image` remaps the node's `image` input and
its sibling `camera_info` (image_transport convention: /camera/image_raw ->
/camera/camera_info). Without a ROS install (no `ros2` CLI) the same node starts with
`depth_node --ros-args --params-file config/dpt.yaml -r image:=/camera/image_raw`.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'dpt_ros'
EXECUTABLE = 'depth_node'
NODE_NAME = 'depth_node'

# (name, default, description). Empty defaults defer to the params file.
ARGUMENTS = (
    ('params_file', '', 'Parameters YAML for the node; empty = the installed '
                        'config/dpt.yaml.'),
    ('image', '', 'Input image topic, e.g. /camera/image_raw (its sibling camera_info is '
                  "remapped too); empty = the node's own `image`."),
    ('backend', '', "Override the params file's `backend` (torch | tt); empty = keep it."),
    ('device', '', "Override the params file's `device` (cpu | cuda | wormhole_n300 ...); "
                   'empty = keep it.'),
    ('namespace', '', 'Namespace for the node and all its topics; empty = none.'),
    ('rviz', 'false', 'true: also start rviz2 with config/depth.rviz (input + colour depth).'),
)


def _sibling(topic: str, name: str) -> str:
    head, _, _ = topic.rpartition('/')
    return f'{head}/{name}' if head or topic.startswith('/') else name


def _qualify(namespace: str, topic: str) -> str:
    if topic.startswith('/'):
        return topic
    ns = namespace.strip('/')
    return f'/{ns}/{topic}' if ns else f'/{topic}'


def _truthy(value: str) -> bool:
    if value.lower() in ('true', '1', 'yes', 'on'):
        return True
    if value.lower() in ('false', '0', 'no', 'off', ''):
        return False
    raise ValueError(f"rviz:={value!r}: use true or false")


def _actions(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    share = get_package_share_directory(PACKAGE)
    params_file = arg('params_file') or os.path.join(share, 'config', 'dpt.yaml')
    overrides = {name: arg(name) for name in ('backend', 'device') if arg(name)}
    namespace = arg('namespace')
    image = arg('image')
    remappings = []
    if image:
        remappings = [('image', image), ('camera_info', _sibling(image, 'camera_info'))]
    parameters = [params_file] + ([overrides] if overrides else [])
    actions = [Node(package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME,
                    namespace=namespace, parameters=parameters, remappings=remappings,
                    output='screen', emulate_tty=True)]
    if _truthy(arg('rviz')):
        # The RViz config names the default topics; point them at this launch's topics.
        actions.append(Node(
            package='rviz2', executable='rviz2', name='rviz2', output='screen',
            arguments=['-d', os.path.join(share, 'config', 'depth.rviz')],
            remappings=[('/image', _qualify(namespace, image or 'image')),
                        ('/depth_relative/color', _qualify(namespace,
                                                           'depth_relative/color'))]))
    return actions


def generate_launch_description():
    """Arguments (each with a description) and the node, built when the arguments are known."""
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS] +
        [OpaqueFunction(function=_actions)])
