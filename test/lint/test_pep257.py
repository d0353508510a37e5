"""Docstrings checked with ROS's ament_pep257 (its 'ament' convention), as ROS packages do."""
from ament_pep257.main import main
import pytest
from support.paths import LINT_PATHS


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    rc = main(argv=LINT_PATHS)
    assert rc == 0, 'found docstring style errors (listed above)'
