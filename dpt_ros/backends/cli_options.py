"""
Parsed settings -> BackendOptions: the one constructor for the command lines (and params).

The runner, eval_pcc and bag_eval name their flags differently where their users expect it
(`--tt-execution-mode` like the reference runner, `--execution-mode` like the node parameter),
so their parsers stay their own; every one of them turns its flags into settings here.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

from dpt_ros.backends import BackendOptions

# BackendOptions field -> the names a command line or parameter set may give it (first wins).
_ALIASES = {'execution_mode': ('execution_mode', 'tt_execution_mode')}


def options_from_values(values: Mapping[str, object], **overrides) -> BackendOptions:
    """
    Return BackendOptions from a mapping of settings named like its fields.

    Missing or None values keep BackendOptions' defaults; `overrides` win over both.
    """
    fields = {}
    for f in dataclasses.fields(BackendOptions):
        for key in _ALIASES.get(f.name, (f.name,)):
            if values.get(key) is not None:
                fields[f.name] = values[key]
                break
    fields.update(overrides)
    if 'compile' in fields:
        fields['compile'] = bool(fields['compile'])
    return BackendOptions(**fields)


def options_from_args(args, **overrides) -> BackendOptions:
    """
    Return BackendOptions from parsed command-line flags (an argparse.Namespace).

    `--strict` makes TT program-config fallbacks raise, so it applies to a `--tt-run` only.
    """
    values = vars(args)
    strict = bool(values.get('strict')) and bool(values.get('tt_run', False))
    return options_from_values(values, **{'strict': strict, **overrides})
