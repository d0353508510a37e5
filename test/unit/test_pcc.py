"""depth/pcc.py: the PCC metric of eval_pcc, the reference checks and the TT self-check."""
import math

from dpt_ros.depth.pcc import max_abs_diff, pcc
import numpy as np
import pytest


def test_pcc_values():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(1000)
    assert pcc(a, a) == pytest.approx(1.0)
    assert pcc(a, -a) == pytest.approx(-1.0)
    assert pcc(a, 3 * a + 7) == pytest.approx(1.0)
    b = rng.standard_normal(1000)
    assert pcc(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    assert abs(pcc(a, b)) < 0.1


def test_pcc_degenerate_cases():
    ones = np.ones((4, 4), np.float32)
    assert pcc(ones, ones) == 1.0
    assert pcc(ones, 2 * ones) == 0.0                       # constant but different
    assert pcc(ones, np.arange(16.0).reshape(4, 4)) == 0.0   # a flat output never passes
    a = np.arange(10.0)
    b = a.copy()
    b[3] = np.nan
    assert pcc(a, b) == pytest.approx(1.0)                  # NaN pairs are dropped
    assert math.isnan(pcc(np.full(3, np.nan), np.arange(3.0)))
    with pytest.raises(ValueError):
        pcc(np.zeros(3), np.zeros(4))


def test_pcc_accepts_torch_bf16():
    import torch
    t = torch.linspace(0, 1, 100)
    assert pcc(t.bfloat16(), t) > 0.999
    assert max_abs_diff(t.bfloat16(), t) < 1e-2
