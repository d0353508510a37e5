"""Serving without ROS: the pipeline, frame scheduler, backend supervisor, health, tuning."""
