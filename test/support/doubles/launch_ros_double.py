"""
A test double of `launch`, `launch_ros` and `ros2 launch`, for machines without them.

ROS 2's launch packages are not on PyPI, so on this machine `launch/depth.launch.py` cannot
import them. `install()` puts stand-ins into `sys.modules` ONLY when the real modules are not
importable; with a real ROS install the real ones are used and this file does nothing.

The stand-ins model what the launch file relies on, with the real packages' behaviour where
issue 16 found the launch file wrong (launch 3.7 / launch_ros 0.28, rolling of Dec 2024):

- substitutions are performed with a LaunchContext (perform_substitutions(None, ...) fails as
  the real one does), DeclareLaunchArgument keeps its default as a list of substitutions;
- a Node resolves its package when it is executed, after the actions before it have started
  their processes: a package missing from the ament index raises PackageNotFoundError, which
  fails the launch (exit 1) -- the real launch then leaves the processes already started
  running; this double stops them, and tests check that none ever started;
- a `parameters` path that is not a file is skipped with a WARNING, and the node starts
  without it, as launch_ros does;
- processes run for real; their exit is a ProcessExited event for the Node's on_exit
  handler; an exception in a handler fails the launch (exit 1), a Shutdown action ends it;
- on SIGINT the service shuts down: it forwards SIGINT to the processes only when
  non-interactive (the terminal already sent it to the process group otherwise), then
  escalates to SIGTERM after `sigterm_timeout` and SIGKILL after `sigkill_timeout` more;
- arguments given as name:=value that the file does not declare are set and ignored.

`launch_a_launch_file` is the `ros2 launch` stand-in used by test/support/launch_cli.py.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types

import yaml


class SubstitutionFailure(RuntimeError):
    """A substitution that cannot be performed (launch.substitutions.SubstitutionFailure)."""


class Substitution:
    """Base of substitutions; perform() needs a LaunchContext."""

    def perform(self, context) -> str:
        raise NotImplementedError


class TextSubstitution(Substitution):
    """A literal."""

    def __init__(self, *, text: str):
        self.text = text

    def perform(self, context) -> str:
        return self.text


class LaunchConfiguration(Substitution):
    """The value of a launch argument / configuration."""

    def __init__(self, variable_name: str, *, default=None):
        self.variable_name = variable_name
        self.default = None if default is None else normalize_to_list_of_substitutions(default)

    def perform(self, context) -> str:
        if self.variable_name in context.launch_configurations:
            return context.launch_configurations[self.variable_name]
        if self.default is not None:
            return perform_substitutions(context, self.default)
        raise SubstitutionFailure(
            f"launch configuration '{self.variable_name}' does not exist")


def normalize_to_list_of_substitutions(value) -> list:
    """Strings become TextSubstitutions; lists are normalised item by item."""
    if isinstance(value, (str, Substitution)):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(TextSubstitution(text=item))
        elif isinstance(item, Substitution):
            out.append(item)
        else:
            raise TypeError(f'not a substitution: {item!r}')
    return out


def perform_substitutions(context, substitutions) -> str:
    """Join the performed substitutions; like the real one, it needs a context."""
    return ''.join(context.perform_substitution(s) for s in substitutions)


class LaunchContext:
    """Launch configurations and the running service (for processes and shutdown)."""

    def __init__(self, *, argv=None, noninteractive: bool = False):
        self.argv = list(argv or [])
        self.noninteractive = noninteractive
        self.launch_configurations: dict[str, str] = {}
        self.is_shutdown = False
        self._service: LaunchService | None = None

    def perform_substitution(self, substitution) -> str:
        return substitution.perform(self)


class LaunchDescriptionEntity:
    """Something the service visits: execute() may return more entities."""

    def visit(self, context):
        return self.execute(context)

    def execute(self, context):
        return None


class Action(LaunchDescriptionEntity):
    """launch.Action."""


class LaunchDescription(LaunchDescriptionEntity):
    """An ordered list of entities."""

    def __init__(self, initial_entities=None):
        self.entities = list(initial_entities or [])

    def describe_sub_entities(self):
        return list(self.entities)

    def visit(self, context):
        return list(self.entities)


class DeclareLaunchArgument(Action):
    """Declares an argument; execute() sets its default unless it was given."""

    def __init__(self, name: str, *, default_value=None, description: str = '',
                 choices=None):
        if not isinstance(name, str) or not name:
            raise TypeError('DeclareLaunchArgument needs a name')
        self.name = name
        self.default_value = (None if default_value is None
                              else normalize_to_list_of_substitutions(default_value))
        self.description = description
        self.choices = choices

    def execute(self, context):
        if self.name not in context.launch_configurations:
            if self.default_value is None:
                raise RuntimeError(f"Required launch argument '{self.name}' (description: "
                                   f"'{self.description}') was not provided")
            context.launch_configurations[self.name] = perform_substitutions(
                context, self.default_value)
        value = context.launch_configurations[self.name]
        if self.choices is not None and value not in self.choices:
            raise RuntimeError(f"Argument '{self.name}' provided value '{value}' is not "
                               f'valid. Valid options are: {self.choices}')
        return None


class OpaqueFunction(Action):
    """Calls function(context, *args, **kwargs); what it returns is visited next."""

    def __init__(self, *, function, args=None, kwargs=None):
        if not callable(function):
            raise TypeError('OpaqueFunction needs a callable')
        self.function = function
        self.args = list(args or [])
        self.kwargs = dict(kwargs or {})

    def execute(self, context):
        return self.function(context, *self.args, **self.kwargs)


class Shutdown(Action):
    """Ends the launch (launch.actions.Shutdown)."""

    def __init__(self, *, reason: str = 'reason not given'):
        self.reason = reason

    def execute(self, context):
        context._service.shutdown(reason=self.reason)
        return None


class ProcessExited:
    """launch.events.process.ProcessExited: what an on_exit handler receives."""

    def __init__(self, *, action, name: str, cmd: list, pid: int, returncode: int):
        self.action, self.name, self.cmd = action, name, cmd
        self.pid, self.returncode = pid, returncode


class Node(Action):
    """launch_ros.actions.Node: resolves its executable and starts it when executed."""

    _KNOWN = {'package', 'executable', 'name', 'namespace', 'parameters', 'remappings',
              'arguments', 'output', 'emulate_tty', 'ros_arguments', 'condition',
              'respawn', 'respawn_delay', 'additional_env', 'exec_name', 'on_exit',
              'sigterm_timeout', 'sigkill_timeout'}

    def __init__(self, **kwargs):
        unknown = set(kwargs) - self._KNOWN
        if unknown:
            raise TypeError(f'Node() got unexpected keyword arguments: {sorted(unknown)}')
        if 'executable' not in kwargs:
            raise TypeError("Node() needs 'executable'")
        if kwargs.get('parameters') is not None and not isinstance(kwargs['parameters'], list):
            raise TypeError('Node(parameters=...) must be a list, as launch_ros checks')
        self.kwargs = kwargs
        self._node_name: str | None = None

    @property
    def node_name(self) -> str:
        if self._node_name is None:
            raise RuntimeError('node_name is known only once the Node has been executed')
        return self._node_name

    def _text(self, context, value) -> str:
        return perform_substitutions(context, normalize_to_list_of_substitutions(value))

    def execute(self, context):
        from ament_index_python.packages import get_package_prefix
        k = self.kwargs
        executable = self._text(context, k['executable'])
        package = k.get('package')
        if package is not None:
            # PackageNotFoundError propagates, as from the real ExecutableInPackage.
            prefix = get_package_prefix(self._text(context, package))
            libexec = os.path.join(prefix, 'lib', package)
            path = os.path.join(libexec, executable)
            if not os.path.isfile(path):
                raise SubstitutionFailure(f"executable '{executable}' not found on the "
                                          f"libexec directory '{libexec}'")
            executable = path
        cmd = [executable] + [self._text(context, a) for a in k.get('arguments') or []]
        cmd.append('--ros-args')
        name = self._text(context, k['name']) if k.get('name') is not None else None
        ns = self._text(context, k.get('namespace') or '')
        ns = '/' + ns.strip('/') if ns.strip('/') else '/'
        if name is not None:
            cmd += ['-r', f'__node:={name}']
        self._node_name = (ns.rstrip('/') + '/' + name) if name else '/<unknown>'
        if ns != '/':
            cmd += ['-r', f'__ns:={ns}']
        for entry in k.get('parameters') or []:
            if isinstance(entry, dict):
                with tempfile.NamedTemporaryFile('w', prefix='launch_params_', delete=False,
                                                 suffix='.yaml') as f:
                    yaml.safe_dump({self._node_name if name else '/**':
                                    {'ros__parameters': {
                                        self._text(context, key): val
                                        for key, val in entry.items()}}}, f)
                cmd += ['--params-file', f.name]
                continue
            path = self._text(context, entry)
            if not os.path.isfile(path):
                _log('WARNING', f'Parameter file path is not a file: {path}')
                continue
            cmd += ['--params-file', os.path.abspath(path)]
        for src, dst in k.get('remappings') or []:
            cmd += ['-r', f'{self._text(context, src)}:={self._text(context, dst)}']
        timeouts = (float(self._text(context, k.get('sigterm_timeout', '5'))),
                    float(self._text(context, k.get('sigkill_timeout', '5'))))
        context._service.start_process(self, cmd, timeouts, k.get('on_exit'))
        return None


def _log(level: str, text: str, who: str = 'launch') -> None:
    print(f'[{level}] [{who}]: {text}', flush=True)


class _Process:
    """A started process, its output forwarded with a `[name-N]` prefix as launch does."""

    def __init__(self, action, cmd, timeouts, on_exit, number: int):
        self.action, self.cmd, self.on_exit = action, cmd, on_exit
        self.sigterm_timeout, self.sigkill_timeout = timeouts
        self.name = f'{os.path.basename(cmd[0])}-{number}'
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)
        self.shutdown_at: float | None = None
        self.escalated = 0
        self.reader = threading.Thread(target=self._forward, daemon=True)
        self.reader.start()
        _log('INFO', f'process started with pid [{self.proc.pid}]')

    def _forward(self) -> None:
        for line in self.proc.stdout:
            print(f'[{self.name}] {line.rstrip()}', flush=True)

    def signal(self, sig) -> None:
        if self.proc.poll() is None:
            name = signal.Signals(sig).name
            _log('INFO', f"sending signal '{name}' to process[{self.name}]")
            self.proc.send_signal(sig)


class LaunchService:
    """Visits the included descriptions, runs their processes, returns the exit code."""

    def __init__(self, *, argv=None, noninteractive: bool = False, debug: bool = False):
        self.context = LaunchContext(argv=argv, noninteractive=noninteractive)
        self.context._service = self
        self._pending: list = []
        self._processes: list[_Process] = []
        self._started = 0
        self._sigint = False
        self.return_code = 0

    def include_launch_description(self, description, launch_arguments=()) -> None:
        self._pending.append((description, dict(launch_arguments)))

    def start_process(self, action, cmd, timeouts, on_exit) -> None:
        if self.context.is_shutdown:
            return   # as the real one: nothing starts once shutdown began
        self._started += 1
        self._processes.append(_Process(action, cmd, timeouts, on_exit, self._started))

    def shutdown(self, *, reason: str, due_to_sigint: bool = False) -> None:
        if self.context.is_shutdown:
            return
        self.context.is_shutdown = True
        now = time.monotonic()
        for p in self._processes:
            if p.proc.poll() is None:
                p.shutdown_at = now
                if not due_to_sigint or self.context.noninteractive:
                    p.signal(signal.SIGINT)

    def _visit(self, entity) -> None:
        more = entity.visit(self.context)
        for e in more or []:
            if e is not None:
                self._visit(e)

    def _fail(self, exc: BaseException) -> None:
        _log('ERROR', f'Caught exception in launch (see debug for traceback): {exc}')
        self.return_code = 1
        self.shutdown(reason=str(exc))

    def _on_sigint(self, signum, frame) -> None:
        if self._sigint:
            _log('WARNING', 'user interrupted with ctrl-c (SIGINT) again, ignoring...')
            return
        self._sigint = True
        _log('WARNING', 'user interrupted with ctrl-c (SIGINT)')
        self.shutdown(reason='ctrl-c (SIGINT)', due_to_sigint=True)

    def run(self) -> int:
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            for description, arguments in self._pending:
                self.context.launch_configurations.update(arguments)
                try:
                    self._visit(description)
                except Exception as exc:  # noqa: B902 -- the launch's own catch-all
                    self._fail(exc)
            self._pending.clear()
            while True:
                running = self._reap_and_escalate()
                if not running:
                    break
                time.sleep(0.01)
            return self.return_code
        finally:
            signal.signal(signal.SIGINT, previous)
            for p in self._processes:   # never leave a process behind (see module doc)
                if p.proc.poll() is None:
                    p.proc.kill()
                    p.proc.wait()
                p.reader.join(2.0)

    def _reap_and_escalate(self) -> int:
        now = time.monotonic()
        running = 0
        for p in list(self._processes):
            rc = p.proc.poll()
            if rc is None:
                running += 1
                if p.shutdown_at is None:
                    continue
                if p.escalated == 0 and now - p.shutdown_at >= p.sigterm_timeout:
                    _log('ERROR', f'process[{p.name}] failed to terminate '
                         f"'{p.sigterm_timeout:g}' seconds after receiving 'SIGINT', "
                         "escalating to 'SIGTERM'")
                    p.escalated = 1
                    p.signal(signal.SIGTERM)
                elif p.escalated == 1 and \
                        now - p.shutdown_at >= p.sigterm_timeout + p.sigkill_timeout:
                    _log('ERROR', f'process[{p.name}] failed to terminate '
                         f"'{p.sigterm_timeout + p.sigkill_timeout:g}' seconds after "
                         "receiving 'SIGTERM', escalating to 'SIGKILL'")
                    p.escalated = 2
                    p.proc.kill()
                continue
            self._processes.remove(p)
            p.reader.join(2.0)
            if rc == 0:
                _log('INFO', f'process has finished cleanly [pid {p.proc.pid}]',
                     p.name)
            else:
                _log('ERROR', f'process has died [pid {p.proc.pid}, exit code {rc}, '
                     f"cmd '{' '.join(p.cmd)}'].", p.name)
            if callable(p.on_exit):
                event = ProcessExited(action=p.action, name=p.name, cmd=p.cmd,
                                      pid=p.proc.pid, returncode=rc)
                try:
                    for e in p.on_exit(event, self.context) or []:
                        self._visit(e)
                except Exception as exc:  # noqa: B902 -- the launch's own catch-all
                    self._fail(exc)
        return running


def parse_launch_arguments(arguments) -> dict:
    """name:=value pairs, as ros2launch parses them (the last one wins)."""
    parsed = {}
    for a in arguments:
        count = a.count(':=')
        if count == 0 or a.startswith(':=') or (count == 1 and a.endswith(':=')):
            raise RuntimeError(f"malformed launch argument '{a}', expected format "
                               "'<name>:=<value>'")
        name, value = a.split(':=', 1)
        parsed[name] = value
    return parsed


def load_launch_file(path: str):
    """Return the launch file as a module (its generate_launch_description())."""
    spec = importlib.util.spec_from_file_location('launch_file', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def launch_a_launch_file(*, launch_file_path: str, launch_file_arguments,
                         noninteractive: bool = False, debug: bool = False) -> int:
    """`ros2 launch <file> args...`: the exit code of the launch."""
    service = LaunchService(argv=launch_file_arguments, noninteractive=noninteractive,
                            debug=debug)
    arguments = parse_launch_arguments(launch_file_arguments)
    description = load_launch_file(launch_file_path).generate_launch_description()
    service.include_launch_description(description, arguments)
    return service.run()


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
    launch.__doc__ = 'test double of launch (test/support/doubles/launch_ros_double.py)'
    launch.LaunchDescription = LaunchDescription
    launch.LaunchContext = LaunchContext
    launch.LaunchService = LaunchService
    launch.Action = Action
    launch.Substitution = Substitution
    actions = types.ModuleType('launch.actions')
    actions.DeclareLaunchArgument = DeclareLaunchArgument
    actions.OpaqueFunction = OpaqueFunction
    actions.Shutdown = Shutdown
    substitutions = types.ModuleType('launch.substitutions')
    substitutions.LaunchConfiguration = LaunchConfiguration
    substitutions.TextSubstitution = TextSubstitution
    substitutions.SubstitutionFailure = SubstitutionFailure
    utilities = types.ModuleType('launch.utilities')
    utilities.perform_substitutions = perform_substitutions
    utilities.normalize_to_list_of_substitutions = normalize_to_list_of_substitutions
    launch.actions, launch.substitutions, launch.utilities = actions, substitutions, utilities
    launch_ros = types.ModuleType('launch_ros')
    launch_ros.__doc__ = 'test double of launch_ros (test/support/doubles/launch_ros_double.py)'
    ros_actions = types.ModuleType('launch_ros.actions')
    ros_actions.Node = Node
    launch_ros.actions = ros_actions
    sys.modules.update({'launch': launch, 'launch.actions': actions,
                        'launch.substitutions': substitutions, 'launch.utilities': utilities,
                        'launch_ros': launch_ros, 'launch_ros.actions': ros_actions})
    return True
