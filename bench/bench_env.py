"""
Set up a benchmark process the way every DDS benchmark here needs it.

The checkout and test/ (the shared ROS harness) on sys.path, DDS on loopback in a domain of
its own, no model-hub access, ROS logs under /tmp. Import it first, before rclpy.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup(domain_base: int = 120, domains: int = 100) -> str:
    """Prepare sys.path and the environment; return the checkout root."""
    sys.path[:0] = [ROOT, os.path.join(ROOT, 'test')]
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_DOMAIN_ID', str(domain_base + os.getpid() % domains))
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('ROS_LOG_DIR', '/tmp/dpt_ros_bench_logs')
    return ROOT
