"""Entry point `python -m dpt_ros.sample_bag`: the sample bag writer (evaluation/sample_bag.py)."""
import sys

from dpt_ros.evaluation.sample_bag import main

if __name__ == '__main__':
    sys.exit(main())
