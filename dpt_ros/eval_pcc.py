"""Entry point `python -m dpt_ros.eval_pcc`: the PCC evaluation (dpt_ros/demo/eval_pcc.py)."""
import sys

from dpt_ros.demo.eval_pcc import main

if __name__ == '__main__':
    sys.exit(main())
