"""
Test doubles: stand-ins for what cannot exist on a CI machine (`support.doubles.<module>`).

backend_base       DoubleBackend, the shared base of the stand-in depth backends (no model)
stand_in_backends  depth backends for timing: zero-cost, fixed delay, flaky, failing, busy,
                   never available (DPT_ROS_EXTRA_BACKENDS='standin_zero=support.doubles....')
fault_backends     depth backends that raise, hang, die or return NaN on demand (a device fault)
metric_stand_ins   a depth backend whose output holds NaN and +inf (an overflowing device run)
tt_device_double   a Tenstorrent device: ttnn's golden functions on the CPU (no card here)
launch_ros_double  the `launch` / `launch_ros` packages (not installable from any registry)
no_ttnn/, no_openvino/  put first on PYTHONPATH: a machine where ttnn / openvino are not
                   installed (`import` fails as it does there)

The node subprocess finds these through PYTHONPATH holding test/ (ros_harness.NodeProcess).
"""
