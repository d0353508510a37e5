"""A recording test double of `launch` / `launch_ros`, for machines where they cannot be installed.

ROS 2's launch packages are not on PyPI, so on this machine `launch/depth.launch.py` cannot
import them. `install()` puts minimal stand-ins into `sys.modules` ONLY when the real modules
are not importable; with a real ROS install the real ones are used and this file does nothing.
The stand-ins implement just the API the launch file uses (LaunchDescription,
DeclareLaunchArgument, OpaqueFunction, LaunchConfiguration, LaunchContext, launch_ros Node) and
record their arguments so tests can check them.
"""
from __future__ import annotations

import importlib
import sys
import types


class LaunchContext:
    """Holds the launch arguments' values, as the real context does."""

    def __init__(self):
        self.launch_configurations: dict[str, str] = {}


class LaunchDescription:
    def __init__(self, initial_entities=None):
        self.entities = list(initial_entities or [])

    def describe_sub_entities(self):
        return list(self.entities)


class DeclareLaunchArgument:
    def __init__(self, name: str, *, default_value: str | None = None, description: str = '',
                 choices=None):
        if not isinstance(name, str) or not name:
            raise TypeError('DeclareLaunchArgument needs a name')
        self.name = name
        self.default_value = default_value
        self.description = description
        self.choices = choices


class OpaqueFunction:
    def __init__(self, *, function, args=None, kwargs=None):
        if not callable(function):
            raise TypeError('OpaqueFunction needs a callable')
        self.function = function
        self.args = list(args or [])
        self.kwargs = dict(kwargs or {})

    def execute(self, context):
        return self.function(context, *self.args, **self.kwargs)


class LaunchConfiguration:
    def __init__(self, variable_name: str, *, default=None):
        self.variable_name = variable_name
        self.default = default

    def perform(self, context) -> str:
        if self.variable_name in context.launch_configurations:
            return context.launch_configurations[self.variable_name]
        if self.default is not None:
            return self.default
        raise KeyError(f"launch configuration '{self.variable_name}' does not exist")


class Node:
    """launch_ros.actions.Node stand-in: keyword arguments recorded in `recorded`."""

    _KNOWN = {'package', 'executable', 'name', 'namespace', 'parameters', 'remappings',
              'arguments', 'output', 'emulate_tty', 'ros_arguments', 'condition',
              'respawn', 'respawn_delay', 'additional_env', 'exec_name'}

    def __init__(self, **kwargs):
        unknown = set(kwargs) - self._KNOWN
        if unknown:
            raise TypeError(f'Node() got unexpected keyword arguments: {sorted(unknown)}')
        if 'executable' not in kwargs:
            raise TypeError("Node() needs 'executable'")
        self.recorded = dict(kwargs)


def _real_available() -> bool:
    try:
        importlib.import_module('launch')
        importlib.import_module('launch_ros.actions')
        return True
    except ImportError:
        return False


def install() -> bool:
    """Make `launch`/`launch_ros` importable; returns True when the double is in use."""
    if _real_available():
        return False
    launch = types.ModuleType('launch')
    launch.__doc__ = 'test double of launch (test/launch_ros_double.py)'
    launch.LaunchDescription = LaunchDescription
    launch.LaunchContext = LaunchContext
    actions = types.ModuleType('launch.actions')
    actions.DeclareLaunchArgument = DeclareLaunchArgument
    actions.OpaqueFunction = OpaqueFunction
    substitutions = types.ModuleType('launch.substitutions')
    substitutions.LaunchConfiguration = LaunchConfiguration
    launch.actions, launch.substitutions = actions, substitutions
    launch_ros = types.ModuleType('launch_ros')
    launch_ros.__doc__ = 'test double of launch_ros (test/launch_ros_double.py)'
    ros_actions = types.ModuleType('launch_ros.actions')
    ros_actions.Node = Node
    launch_ros.actions = ros_actions
    sys.modules.update({'launch': launch, 'launch.actions': actions,
                        'launch.substitutions': substitutions, 'launch_ros': launch_ros,
                        'launch_ros.actions': ros_actions})
    return True
