"""flake8 with ROS's configuration (ament_flake8), as `colcon test` runs it for ROS packages."""
import os

from ament_flake8.main import main_with_errors
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Everything of ours that is Python; not build outputs or the venv (ament_flake8 would walk
# into build_ws/ and generated/ from the package root).
PATHS = [os.path.join(ROOT, p) for p in ('setup.py', 'dpt_ros', 'launch', 'test', 'bench')]


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = main_with_errors(argv=PATHS)
    assert rc == 0, f'{len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
