"""Serving without ROS: the frame scheduler and process tuning."""
