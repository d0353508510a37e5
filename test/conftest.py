"""
Test-wide environment.

DDS on loopback with a session-unique domain, temp logs/caches, and no model-hub access (nothing
can be downloaded here; an attempt would only add timeouts). DPT_ROS_CPU_CLASS=avx2 runs the
tests as a CPU without AVX-512 / bf16 units would (test/support/cpu_class.py). The checkout and
test/ go on sys.path: `dpt_ros` and `support` (test/support) import from every test.
"""
import os
import sys
import tempfile

_TEST = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.dirname(_TEST), _TEST):
    if _path not in sys.path:
        sys.path.insert(0, _path)
_TMP = tempfile.mkdtemp(prefix='dpt_ros_test_')
# Before anything imports torch (they are read once), and inherited by every subprocess.
from support import cpu_class  # noqa: E402,I100
cpu_class.apply()

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
# One domain per pytest session so parallel sessions on one machine never see each other.
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
os.environ.setdefault('ROS_LOG_DIR', os.path.join(_TMP, 'ros_log'))
os.environ.setdefault('TT_METAL_CACHE', os.path.join(_TMP, 'tt_metal_cache'))
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('DPT_ROS_CACHE', os.path.join(_TMP, 'dpt_ros_cache'))
