"""
Run a dpt_ros command (the node, the runner) on a MOCK card (TEST DOUBLE; see __init__.py).

`python run_allowed.py <module> [args...]` allows the mocked cluster in this process (users
never reach a mock: tt.device refuses it unless a test allows it), then runs
`python -m <module> [args...]`. Started by tt_mock_device with the mock's environment.
"""
import os
import runpy
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(_HERE))))   # the checkout

from dpt_ros.tt import device  # noqa: E402

if __name__ == '__main__':
    device.allow_mock_cluster()
    module = sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    runpy.run_module(module, run_name='__main__', alter_sys=True)
