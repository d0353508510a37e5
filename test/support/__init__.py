"""
Test support: what the tests (and bench/) share, imported as `support.<module>`.

test/ is on sys.path (test/conftest.py puts it there for tests, bench/bench_env.py for
benchmarks, ros_harness.NodeProcess on a node's PYTHONPATH), so this folder is the package
`support`; no test module is ever imported by another.

paths           the checkout's folders, the lint targets, PYTHONPATH for a child process
cpu_class       run as a CPU of another class would (DPT_ROS_CPU_CLASS; applied by conftest)
ros_harness     the depth node in a subprocess, an in-process rclpy graph, images, diagnostics
node_cases      what the node tests share: base parameters, frame size, messages, stamps
reliability     the reliability suite's node runs: counters, pacing, load and soak
view            the depth view's tests: fake camera, the view process, Chromium
launch_cli      `ros2 launch` as a process (real launch packages or the double)
decoders        decoders written from the formats' specs (compressedDepth)
tt_reference    seeded HF references, PCC and layout converters for the TT tests
toy_program     the TT runtime's stand-in device program and the trace_2cq log check
tt_op_lists     synthetic TT device-op lists, as a dry-run's --graph writes them
doubles/        stand-ins for what cannot exist here (backends, TT device, launch_ros)
tt_mock_device/ a mock N150 / N300 / T3000 for ttnn's host-side checks (dry-run)
data/           the mock clusters' descriptors
"""
