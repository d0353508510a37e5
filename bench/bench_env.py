"""
Set up a benchmark process the way every DDS benchmark here needs it.

The checkout on sys.path (never test/), DDS on loopback in a domain of its own, no model-hub
access, ROS logs under /tmp. Import it first, before rclpy. `borrow()` is the one way a
benchmark takes code from test/: the listed harness modules, each imported by its file.
"""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST = os.path.join(ROOT, 'test')
# What benchmarks borrow from test/, each with what it imports from there: the reliability
# suite's load, soak and stop runs and the ROS harness they share with the tests, the stand-in
# backends they register, the mock-device dry-run, and the CPU classes the suite can run as.
BORROWED = {'doubles': (), 'ros_harness': (), 'reliability_support': ('doubles', 'ros_harness'),
            'tt_mock_device': (), 'cpu_class': ()}


def setup(domain_base: int = 120, domains: int = 100) -> str:
    """Prepare sys.path and the environment; return the checkout root."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_DOMAIN_ID', str(domain_base + os.getpid() % domains))
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('ROS_LOG_DIR', '/tmp/dpt_ros_bench_logs')
    return ROOT


def borrow(name: str):
    """
    Return test/<name> (a module or a package) from BORROWED, imported by its file.

    It is registered under the name the tests import it by, so its own imports of other
    borrowed modules find the same objects; nothing else in test/ becomes importable.
    """
    if name in sys.modules:
        return sys.modules[name]
    for dep in BORROWED[name]:
        borrow(dep)
    path = os.path.join(TEST, name)
    if os.path.isdir(path):
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(path, '__init__.py'), submodule_search_locations=[path])
    else:
        spec = importlib.util.spec_from_file_location(name, path + '.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def borrow_module(dotted: str):
    """Return a module inside a borrowed package, e.g. 'doubles.chip_stand_in'."""
    import importlib
    borrow(dotted.split('.')[0])
    return importlib.import_module(dotted)
