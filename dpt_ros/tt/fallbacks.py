"""
Fallback accounting for the TT model: every deviation from the tuned device path is counted.

Two kinds:
* program-config fallback: an op's tuned program/memory config raised (on a card: failed
  validation, L1 overflow, ...); the op is rerun with ttnn's default config. Counted in
  `program_config_fallback_total` and per op + reason. The op then stays on the default path
  for the life of the model (a traced program must be the same every frame).
* host fallback: a whole stage ran on the host instead of the device. Counted in
  `host_fallback_count` plus the stage's own counter (names from dpt_ros.perf.stats.FALLBACK_KEYS).

In strict mode (always on in perf runs) either kind raises `FallbackError` instead.
"""
from __future__ import annotations

import collections
import logging
import threading
from typing import Callable, TypeVar

from dpt_ros.errors import FallbackError
from dpt_ros.tt.device import summarize_error

log = logging.getLogger('dpt_ros.tt.fallbacks')

T = TypeVar('T')

PROGRAM_CONFIG_FALLBACK_TOTAL = 'program_config_fallback_total'
HOST_FALLBACK_COUNT = 'host_fallback_count'
# Per-stage host fallback counters (same names as the reference runner's perf JSON).
HOST_STAGE_KEYS = ('vit_backbone_fallback_count', 'reassembly_readout_fallback_count',
                   'upsample_host_fallback_count')


class FallbackCounter:
    """Counts program-config and host fallbacks; `strict=True` makes any fallback raise."""

    def __init__(self, strict: bool = False, logger: logging.Logger | None = None):
        self.strict = strict
        self.log = logger or log
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter(
            {PROGRAM_CONFIG_FALLBACK_TOTAL: 0, HOST_FALLBACK_COUNT: 0,
             **dict.fromkeys(HOST_STAGE_KEYS, 0)})
        # 'op_name: reason' -> count, for diagnostics and the perf JSON.
        self.reasons: collections.Counter[str] = collections.Counter()
        self._on_default: set[str] = set()

    def uses_default(self, op_name: str) -> bool:
        """Return True once `op_name`'s tuned config failed (it then always runs the default)."""
        return op_name in self._on_default

    def run_with_config(self, op_name: str, tuned_call: Callable[[], T],
                        default_call: Callable[[], T]) -> T:
        """Run the tuned call; if it raises, count, remember, and run the default call."""
        if op_name in self._on_default:
            return default_call()
        try:
            return tuned_call()
        except FallbackError:
            raise
        except Exception as exc:  # ttnn raises RuntimeError/TypeError/ValueError variously
            # The TT_FATAL 'info' line, not its first line ('TT_THROW @ file:line: ...').
            detail = summarize_error(exc)[:160] if str(exc).strip() else ''
            reason = f'{type(exc).__name__}: {detail}' if detail else type(exc).__name__
            if self.strict:
                raise FallbackError(
                    f'program config for {op_name} failed in strict mode: {reason}') from exc
            with self._lock:
                self.counts[PROGRAM_CONFIG_FALLBACK_TOTAL] += 1
                self.counts[f'program_config_fallback.{op_name}'] += 1
                self.reasons[f'{op_name}: {reason}'] += 1
                self._on_default.add(op_name)
            self.log.warning('tuned program config for %s failed (%s); using the default '
                             'config from now on (program_config_fallback_total=%d)', op_name,
                             reason, self.counts[PROGRAM_CONFIG_FALLBACK_TOTAL])
            return default_call()

    def host_fallback(self, stage_key: str, reason: str) -> None:
        """Record that `stage_key`'s stage runs on the host; raises in strict mode."""
        if stage_key not in HOST_STAGE_KEYS:
            raise ValueError(f'unknown host fallback stage {stage_key!r}; one of '
                             f'{HOST_STAGE_KEYS}')
        if self.strict:
            raise FallbackError(f'{stage_key}: stage would run on host in strict mode: '
                                f'{reason}')
        with self._lock:
            self.counts[stage_key] += 1
            self.counts[HOST_FALLBACK_COUNT] += 1
            self.reasons[f'{stage_key}: {reason}'] += 1
        self.log.warning('%s: running on host (%s)', stage_key, reason)

    def snapshot(self) -> dict:
        """Counters (always including the standard keys) plus reasons, JSON-ready."""
        with self._lock:
            out = dict(self.counts)
            out['reasons'] = dict(self.reasons)
        return out
