"""
The parameter table (params.PARAMS) as text: launch-argument help and values, config/dpt.yaml.

One source of prose: each parameter's description is written once, in params.py. The launch
file declares one argument per entry with `launch_help()` as its help and turns the text typed
after `:=` on the launch line into a typed value with `from_text()`; config/dpt.yaml is
`yaml_text()`, written by

    python -m dpt_ros.ros.param_text --write config/dpt.yaml

and a test checks the committed file is what this module writes. No rclpy here.
"""
from __future__ import annotations

import argparse
import sys
import textwrap

from dpt_ros.ros import params
import yaml

# Section comments in config/dpt.yaml, each above the entry that opens it.
SECTIONS = {
    'cameras': 'inputs',
    'backend': 'backend',
    'colormap': 'colourised output, depth_relative/color',
    'diagnostics_rate': 'diagnostics on /diagnostics',
    'metric.mode': 'metric depth: REP 118 `depth` topic in metres',
    'points.stride': 'point cloud: <ns>/points, from metric depth and camera_info',
    'autostart': 'lifecycle (a managed node: <node>/change_state, <node>/get_state)',
}
_HEADER = """\
# dpt_ros depth node parameters: every parameter the node declares, with its default and its
# description. GENERATED from the parameter table, dpt_ros/ros/params.py (the one place each
# parameter is described); rewrite it with
#   python -m dpt_ros.ros.param_text --write config/dpt.yaml
# Use: depth_node --ros-args --params-file config/dpt.yaml   (or launch/depth.launch.py)
# [runtime] parameters can be changed with `ros2 param set` at any time; the others while
# the node is unconfigured (they take effect at configure).
# The key is the node name, depth_node, in any namespace (`/**/`), so `__ns:=/cam` and the
# launch file's namespace argument still pick these up.
/**/depth_node:
  ros__parameters:
"""
WIDTH = 99
_TRUE, _FALSE = ('true', 'yes', 'on', '1'), ('false', 'no', 'off', '0')


def render(value) -> str:
    """Return `value` as YAML flow text (what a params file or a launch argument holds)."""
    return yaml.safe_dump([value], default_flow_style=True, width=1 << 16).strip()[1:-1]


def from_text(p: params.Param, text: str):
    """
    Return the typed value of launch-line `text` for entry `p`; ValueError (one line) if none.

    Only the type is checked here; the node validates the value itself (ranges, choices,
    registered backends) and says why in one line.
    """
    t, word = p.type_name, text.strip()
    if t == 'bool':
        if word.lower() in _TRUE + _FALSE:
            return word.lower() in _TRUE
        raise ValueError(f'{p.name}:={text}: use true or false')
    if t in ('int', 'float'):
        try:
            return int(word) if t == 'int' else float(word)
        except ValueError:
            raise ValueError(f"{p.name}:={text}: {'an integer' if t == 'int' else 'a number'}"
                             ' is needed') from None
    if t == 'str':
        return text
    try:
        value = yaml.safe_load(word)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, list) or not value or \
            not all(isinstance(v, str) for v in value):
        raise ValueError(f'{p.name}:={text}: a list of names is needed, e.g. {p.name}:='
                         "[front,rear] ('' is the node's own namespace)")
    return value


def launch_help(p: params.Param) -> str:
    """Return the help of entry `p`'s launch argument: the table's description and more."""
    extra = [p.constraint_text()] if p.constraint_text() else []
    if not p.read_only:
        extra.append('runtime: ros2 param set')
    text = p.description + (f" [{'; '.join(extra)}]" if extra else '')
    return f"{text} Empty: the params file's value (installed default {render(p.default)})."


def _comment(p: params.Param, indent: str) -> list[str]:
    words = ('[runtime] ' if not p.read_only else '') + p.description
    if p.constraint_text():
        words += f' [{p.constraint_text()}]'
    return textwrap.wrap(words, WIDTH - len(indent) - 2, initial_indent='# ',
                         subsequent_indent='# ', break_on_hyphens=False)


def yaml_text() -> str:
    """Return config/dpt.yaml: every entry with its default, its description as a comment."""
    lines, group, seen = [], '', set()
    for p in params.PARAMS:
        head, _, leaf = p.name.rpartition('.')
        if p.name in SECTIONS:
            lines += ([''] if lines else []) + [
                f'    # --- {s}' for s in textwrap.wrap(SECTIONS[p.name] + ' ---', WIDTH - 10)]
        if head != group:
            if head and head in seen:
                raise ValueError(f'the parameters {head}.* must be consecutive in PARAMS')
            seen.add(head)
            group = head
            if head:
                lines.append(f'    {head}:')
        indent = '      ' if head else '    '
        lines += [indent + c for c in _comment(p, indent)]
        lines.append(f'{indent}{leaf}: {render(p.default)}')
    return _HEADER + '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    """Print config/dpt.yaml as the table describes it, or write it (--write PATH)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument('--write', metavar='PATH', help='write the file instead of printing it')
    args = ap.parse_args(argv)
    text = yaml_text()
    if args.write:
        with open(args.write, 'w') as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
