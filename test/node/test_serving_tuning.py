"""
The serving-time process settings (dpt_ros.serving.tuning), measured.

Each case runs in a fresh interpreter: the settings are process-wide. Page faults are counted
by the kernel (getrusage), so the test does not depend on timing or machine load.
"""
import os
import subprocess
import sys

import pytest
from support.paths import ROOT


# Three frame-sized buffers per "frame", as the node allocates (depth, colour, model input).
SCRIPT = r"""
import gc, resource, sys
import numpy as np
if sys.argv[1] == 'tuned':
    from dpt_ros.serving.tuning import tune_process_for_serving
    tuned = tune_process_for_serving()
    assert tuned['malloc_tuned'] is True and tuned['gc_frozen_objects'] > 0, tuned
    assert gc.get_freeze_count() == tuned['gc_frozen_objects']
def frame():
    a = np.ones((480, 640), np.float32)
    b = np.ones((480, 640, 3), np.uint8)
    c = np.ones((3, 384, 384), np.float32)
    return float(a[0, 0] + b[0, 0, 0] + c[0, 0, 0])
for _ in range(20):
    frame()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    frame()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 200)
"""


def _faults_per_frame(mode: str) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
    out = subprocess.run([sys.executable, '-c', SCRIPT, mode], capture_output=True, text=True,
                         env=env, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='mallopt is glibc (Linux)')
def test_tuning_stops_per_frame_page_faults():
    plain = _faults_per_frame('plain')
    tuned = _faults_per_frame('tuned')
    # glibc's defaults give every frame's buffers back to the kernel and fault them in again
    # (~700 faults for these 2.7 MB); tuned, they stay in the heap.
    assert plain > 100, plain
    assert tuned < 5, tuned


def test_openmp_waits_are_quiet_unless_the_user_chose():
    from dpt_ros.serving import tuning
    env = {}
    if 'torch' not in sys.modules:
        assert tuning.quiet_openmp_waits(env) == 'OMP_WAIT_POLICY=PASSIVE'
        assert env == {'OMP_WAIT_POLICY': 'PASSIVE'}
    for key, value in (('OMP_WAIT_POLICY', 'ACTIVE'), ('GOMP_SPINCOUNT', '300000')):
        env = {key: value}
        assert 'from the environment' in tuning.quiet_openmp_waits(env)
        assert env == {key: value}    # kept as the user set it
