"""Entry point `python -m dpt_ros.runner`: the demo runner (dpt_ros/demo/runner.py)."""
import sys

from dpt_ros.demo.runner import main

if __name__ == '__main__':
    sys.exit(main())
