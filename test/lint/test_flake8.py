"""flake8 with ROS's configuration (ament_flake8), as `colcon test` runs it for ROS packages."""
from ament_flake8.main import main_with_errors
import pytest
from support.paths import LINT_PATHS


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = main_with_errors(argv=LINT_PATHS)
    assert rc == 0, f'{len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
