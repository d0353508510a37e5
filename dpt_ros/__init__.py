"""
dpt_ros: DPT-Large monocular depth for ROS 2 on Tenstorrent Wormhole or torch.

Pure modules (no rclpy): model, preprocess, postprocess, colorize, backends, perf, serving,
align, tt. ROS glue lives in ros/ (and evaluation's bag replay).
"""
