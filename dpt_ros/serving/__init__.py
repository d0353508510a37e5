"""Serving without ROS: the frame scheduler, the backend's supervisor, health, process tuning."""
