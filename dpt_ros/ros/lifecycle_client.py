"""
A lifecycle manager's view of one node: its state and its transitions, over ROS services.

`LifecycleClient` asks <node>/get_state and calls <node>/change_state from an rclpy context of
its own (the caller's global context stays untouched), as `ros2 lifecycle get/set` does.
Readiness of a node process (node_process.py), the start-path benchmark and the lifecycle
tests use it.
"""
from __future__ import annotations

import time

# lifecycle_msgs/Transition ids by label; shutdown has one per state it leaves.
LABELS = {'configure': 1, 'cleanup': 2, 'activate': 3, 'deactivate': 4,
          'unconfigured_shutdown': 5, 'inactive_shutdown': 6, 'active_shutdown': 7}


STATE_RETRY_S = 2.0


class LifecycleClient:
    """Client of <node_fqn>/get_state and /change_state in a private context."""

    def __init__(self, node_fqn: str, domain_id: int | None = None,
                 name: str = '_dpt_lifecycle_client'):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from lifecycle_msgs.srv import ChangeState, GetState
        self._rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        # A leading underscore keeps this helper out of `ros2 node list`.
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._get = self.node.create_client(GetState, f'{node_fqn}/get_state')
        self._change = self.node.create_client(ChangeState, f'{node_fqn}/change_state')

    def _spin_until(self, cond, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.executor.spin_once(timeout_sec=min(left, 0.05))
        return True

    def _send(self, client, request, timeout: float):
        if not self._spin_until(client.service_is_ready, timeout):
            return None
        return client.call_async(request)

    def _reply(self, client, future, timeout: float):
        if future is None:
            return None
        if not self._spin_until(future.done, timeout):
            client.remove_pending_request(future)
            return None
        return future.result()

    def _call(self, client, request, timeout: float):
        deadline = time.monotonic() + timeout
        future = self._send(client, request, timeout)
        return self._reply(client, future, max(0.0, deadline - time.monotonic()))

    def state(self, timeout: float = 5.0) -> str | None:
        """Return the node's state label ('unconfigured', 'active', ...), None if no answer."""
        from lifecycle_msgs.srv import GetState
        deadline = time.monotonic() + timeout
        while True:
            # Asked again every STATE_RETRY_S: a reply sent before the node's DDS matched our
            # reply reader is lost, and get_state is safe to repeat.
            left = deadline - time.monotonic()
            reply = self._call(self._get, GetState.Request(), min(left, STATE_RETRY_S))
            if reply is not None:
                return reply.current_state.label
            if deadline - time.monotonic() <= 0:
                return None

    def transition(self, label: str, timeout: float = 60.0) -> bool:
        """Trigger a transition of LABELS ('configure', 'activate', ...); True on success."""
        reply = self._call(self._change, _change_request(label), timeout)
        return bool(reply is not None and reply.success)

    def send(self, label: str, timeout: float = 60.0):
        """Ask for transition `label` without waiting; return its future (None: no service)."""
        return self._send(self._change, _change_request(label), timeout)

    def result(self, future, timeout: float = 60.0) -> bool:
        """Wait for the answer to a transition sent by send(); True if the node made it."""
        reply = self._reply(self._change, future, timeout)
        return bool(reply is not None and reply.success)

    def close(self) -> None:
        """Destroy the client node and shut its context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _change_request(label: str):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    return ChangeState.Request(transition=Transition(id=LABELS[label]))
