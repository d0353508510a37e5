"""
Node parameters from the one table (params.PARAMS): descriptors, declaration, user errors.

The node is created with `automatically_declare_parameters_from_overrides`, so every value a
user passed (params file, -p) is readable through the public parameter API. `take_overrides`
reads them and undeclares them again; `declare_all` then declares each table entry with its
ParameterDescriptor and turns a mistyped or invalid value into one message per parameter (the
entry is then declared with its default, so `ros2 param set` can put it right).
"""
from __future__ import annotations

from dpt_ros.ros import params
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterException, ParameterImmutableException)

# Declared by every rclpy node itself: neither ours nor unknown.
_BUILTIN = frozenset({'use_sim_time'})


# What a lifecycle node's start-up parameter says of itself (the node enforces it).
STARTUP_NOTE = 'start-up parameter: settable while the node is unconfigured, read-only after'


def descriptor(p: params.Param, lifecycle: bool = False) -> ParameterDescriptor:
    """
    Return the ParameterDescriptor of one table entry (ranges, read-only, constraints).

    lifecycle=True: a start-up entry is not read_only for ROS (the managed node accepts it
    while unconfigured and refuses it in every other state); its constraints say so.
    """
    startup = lifecycle and p.read_only
    constraints = '; '.join(filter(None, [p.constraint_text(), STARTUP_NOTE if startup else '']))
    d = ParameterDescriptor(name=p.name, description=p.description,
                            read_only=p.read_only and not lifecycle,
                            additional_constraints=constraints)
    if p.type_name == 'int' and (p.min is not None or p.max is not None):
        d.integer_range = [IntegerRange(from_value=int(p.min), to_value=int(p.max),
                                        step=int(p.step or 1))]
    elif p.type_name == 'float' and (p.min is not None or p.max is not None):
        d.floating_point_range = [FloatingPointRange(from_value=float(p.min),
                                                     to_value=float(p.max), step=0.0)]
    return d


def take_overrides(node) -> dict:
    """Return {name: value} the user passed, and undeclare their automatic declarations."""
    overrides = {}
    for name, p in node.get_parameters_by_prefix('').items():
        if name in _BUILTIN:
            continue
        try:
            node.undeclare_parameter(name)
        except ParameterImmutableException:
            continue   # rclpy's own (start_type_description_service), not the user's
        overrides[name] = p.value
    return overrides


def declare_all(node, overrides: dict) -> dict[str, str]:
    """
    Declare every table entry (lifecycle descriptors); return {name: why} for invalid values.

    An entry whose value the user gave wrongly is declared with its default instead, so it
    exists and can be set; the caller keeps the message until then.
    """
    errors = {}
    for p in params.PARAMS:
        if node.has_parameter(p.name):
            continue
        default = list(p.default) if isinstance(p.default, list) else p.default
        d = descriptor(p, lifecycle=True)
        try:
            node.declare_parameter(p.name, default, d)
        except (InvalidParameterTypeException, InvalidParameterValueException,
                ParameterException) as exc:
            errors[p.name] = _why(p, overrides.get(p.name), exc)
            node.declare_parameter(p.name, default, d, ignore_override=True)
    return errors


def read_all(node) -> dict:
    """Return every table entry's current value."""
    values = {p.name: node.get_parameter(p.name).value for p in params.PARAMS}
    values['cameras'] = list(values['cameras'])
    return values


def unknown(overrides: dict) -> list[str]:
    """Return the names the user passed that the table does not know (typos), sorted."""
    return sorted(set(overrides) - set(params.BY_NAME) - _BUILTIN)


def _why(p: params.Param, raw, exc: Exception) -> str:
    if p.type_name == 'float' and isinstance(raw, int) and not isinstance(raw, bool):
        return (f"parameter '{p.name}' must be a floating-point number, got {raw} "
                f'(write {raw}.0)')
    return params.check_value(p.name, raw) or f"parameter '{p.name}': {exc}"
