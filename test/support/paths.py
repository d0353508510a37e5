"""The checkout's folders as the tests and benchmarks see them, and PYTHONPATH for a child."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# On sys.path in every test and benchmark process, so `support` imports as a package.
TEST = os.path.join(ROOT, 'test')
SUPPORT = os.path.join(TEST, 'support')
DOUBLES = os.path.join(SUPPORT, 'doubles')
# Everything of ours that is Python; not build outputs or the venv (ament_flake8 would walk
# into build_ws/ and generated/ from the package root).
LINT_PATHS = [os.path.join(ROOT, p) for p in ('setup.py', 'dpt_ros', 'launch', 'test', 'bench')]


def pythonpath(*first: str) -> str:
    """Return PYTHONPATH for a child process: `first`, test/ and the checkout, then the rest."""
    rest = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
    return os.pathsep.join([*first, TEST, ROOT, *rest])
