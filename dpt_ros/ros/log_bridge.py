"""Forward the pure modules' `logging` records (logger 'dpt_ros') to a node's rclpy logger."""
from __future__ import annotations

import logging


class RosLogHandler(logging.Handler):
    """A logging.Handler writing to an rclpy logger at the matching severity."""

    def __init__(self, ros_logger):
        super().__init__()
        self._ros = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.ERROR:
                self._ros.error(msg)
            elif record.levelno >= logging.WARNING:
                self._ros.warning(msg)
            elif record.levelno >= logging.INFO:
                self._ros.info(msg)
            else:
                self._ros.debug(msg)
        except Exception:  # logging must never take the node down
            pass


def attach(ros_logger) -> RosLogHandler:
    """Send the package's records to `ros_logger` (only there); return the handler."""
    handler = RosLogHandler(ros_logger)
    pkg_log = logging.getLogger('dpt_ros')
    pkg_log.addHandler(handler)
    pkg_log.setLevel(logging.INFO)
    pkg_log.propagate = False
    return handler


def detach(handler: RosLogHandler) -> None:
    """Undo attach()."""
    logging.getLogger('dpt_ros').removeHandler(handler)
