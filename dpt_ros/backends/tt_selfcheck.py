"""
The TT backend's self-check: every chip proves its depth before the backend serves.

After compile + capture, the bundled picture (scikit-image's astronaut, the runner's offline
image, resized to S as the node resizes frames) runs through each chip's program by the path
served frames take (the traces, in trace modes) and its depth is compared (PCC) with the torch
fp32 CPU reference of the same weights and size. A chip below `selfcheck_min_pcc`, with a
non-finite value or whose run raises leaves the rotation with that reason ('selfcheck pcc
0.62 on chip 1 ...'); with no chip left, or any chip out under `strict`, `SelfCheckFailed`
(a BackendUnavailable: the node falls back to the CPU, a strict `--tt-run` fails).

The reference is computed once and cached on disk: `<cache>/selfcheck_reference/<key>.npz`,
key = sha256 of the weights' content fingerprint (the id the prepared TT weights are cached
under), the size, the model config, the input picture's bytes and this format's version.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from typing import Callable

from dpt_ros import vocabulary
from dpt_ros.errors import SelfCheckFailed
import numpy as np

log = logging.getLogger('dpt_ros.backends.tt_selfcheck')

IMAGE = 'skimage.data.astronaut'
FORMAT_VERSION = 1


@dataclass
class SelfCheck:
    """What the self-check found: per chip PCC and error, its cost, its reference's source."""

    status: str                     # 'passed', '<k> of <n> chips out', 'off', 'skipped: ...'
    min_pcc: float = float('nan')
    pcc: list = field(default_factory=list)        # per chip; NaN where it did not run
    errors: list = field(default_factory=list)     # per chip; '' where it passed
    seconds: float = float('nan')   # the whole check: reference (or cache) + every chip
    reference: str = ''             # 'cached' | 'computed' | 'given'
    reference_s: float = float('nan')

    def extra(self) -> dict:
        """Return the backend's info.extra keys (perf JSON, runner)."""
        return {'selfcheck': self.status, 'selfcheck_min_pcc': self.min_pcc,
                'selfcheck_pcc': list(self.pcc), 'selfcheck_s': self.seconds,
                'selfcheck_reference': self.reference}


def format_pcc(p: float) -> str:
    """PCC truncated (never rounded up to a threshold) to 4 places, at least 2 shown."""
    if not math.isfinite(p):
        return 'nan'
    text = f'{math.floor(round(p * 1e4, 6)) / 1e4:.4f}'.rstrip('0')
    return text + '0' * max(0, 2 - len(text.split('.')[1]))


def check_input(size: int, input_format: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (the frame the program takes, the normalised (3,S,S) input of the reference)."""
    from skimage import data

    from dpt_ros.inference.preprocess import preprocess, resize_pixels
    rgb = np.ascontiguousarray(data.astronaut()[..., :3], dtype=np.uint8)
    normalized = preprocess(rgb, size)
    frame = (resize_pixels(rgb, size)[None] if input_format == 'pixels'
             else normalized[None].astype(np.float32))
    return frame, normalized


def reference_key(loaded, size: int, normalized: np.ndarray) -> str:
    """sha256 over what the reference depends on (see the module doc)."""
    from dpt_ros.tt.weights import weights_fingerprint
    payload = {'weights_id': f'sd:{weights_fingerprint(loaded.model.state_dict())}',
               'image_size': int(size), 'config': loaded.config.to_dict(),
               'input': hashlib.sha256(np.ascontiguousarray(normalized).tobytes()).hexdigest(),
               'reference': 'torch cpu fp32', 'format': FORMAT_VERSION}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def compute_reference(opts, loaded, normalized: np.ndarray) -> np.ndarray:
    """Run the CPU forward: torch fp32 of `loaded` on the (3,S,S) input -> (S,S) depth."""
    from dpt_ros.backends.reference import run_reference, start_reference
    ref = start_reference(opts, loaded)
    try:
        outputs, _ = run_reference(ref, [normalized])
    finally:
        ref.close()
    return np.asarray(outputs[0], dtype=np.float32)


def reference_depth(opts, loaded, normalized: np.ndarray) -> tuple[np.ndarray, bool]:
    """Return (the reference depth, whether it came from the disk cache)."""
    key = reference_key(loaded, opts.image_size, normalized)
    path = os.path.join(vocabulary.cache_folder('selfcheck_reference', opts.cache_dir or None),
                        f'{key}.npz')
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as f:
                depth = np.array(f['depth'], dtype=np.float32)
            if depth.shape == normalized.shape[1:]:
                return depth, True
            raise ValueError(f'shape {depth.shape}')
        except Exception as exc:  # a damaged entry is recomputed, not fatal
            log.warning('selfcheck reference %s unreadable (%s); recomputing it', path, exc)
    depth = compute_reference(opts, loaded, normalized)
    _store(path, depth, {'weights': loaded.weights, 'image_size': int(opts.image_size)})
    return depth, False


def _store(path: str, depth: np.ndarray, meta: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.npz', prefix='.tmp-', dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, depth=depth, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)     # atomic: readers never see a half-written entry
    except OSError as exc:        # a read-only cache costs a forward next time, no more
        log.warning('selfcheck reference not cached (%s)', exc)
        if os.path.exists(tmp):
            os.unlink(tmp)


def judge(out: np.ndarray, expected: np.ndarray, min_pcc: float) -> tuple[float, str]:
    """Return (PCC, why the output fails or '')."""
    from dpt_ros.depth.pcc import pcc
    out = np.asarray(out, dtype=np.float32).reshape(-1)
    expected = np.asarray(expected, dtype=np.float32).reshape(-1)
    if out.size != expected.size:
        return float('nan'), f'output of {out.size} values, expected {expected.size}'
    bad = int(np.count_nonzero(~np.isfinite(out)))
    if bad:
        return float('nan'), f'{bad} non-finite output values'
    score = pcc(out, expected)
    if not score >= min_pcc:      # NaN fails too
        return score, f'pcc {format_pcc(score)}'
    return score, ''


def run(dp, opts, loaded, input_format: str,
        reference: Callable[[np.ndarray], np.ndarray] | None = None) -> SelfCheck:
    """
    Check every chip of `dp` (tt.executor.DataParallel) before it serves; retire the failing.

    `reference(frame)` replaces the torch reference (a stand-in program's own). Raises
    SelfCheckFailed when no chip is left, or when any chip fails under `opts.strict`.
    """
    t0 = time.perf_counter()
    min_pcc = float(opts.selfcheck_min_pcc)
    frame, normalized = check_input(opts.image_size, input_format)
    if reference is None:
        expected, cached = reference_depth(opts, loaded, normalized)
        source = 'cached' if cached else 'computed'
    else:
        expected, source = np.asarray(reference(frame), dtype=np.float32), 'given'
    ref_s = time.perf_counter() - t0
    pccs, errors = [], []
    for c, pipe in enumerate(dp.pipelines):
        try:
            score, why = judge(dp.run_alone(c, frame), expected, min_pcc)
        except Exception as exc:  # a chip that cannot even run the check is out too
            score, why = float('nan'), f'{type(exc).__name__}: {exc}'
        dp.note_selfcheck(c, score)
        if why:
            why = f'selfcheck {why} on chip {c} ({pipe.chip_id}; needs pcc >= {min_pcc:g})'
            dp.retire(c, why)
        pccs.append(score)
        errors.append(why)
    failed = [e for e in errors if e]
    status = f'{len(failed)} of {len(errors)} chips out' if failed else 'passed'
    result = SelfCheck(status, min_pcc, pccs, errors, time.perf_counter() - t0, source, ref_s)
    log.info('selfcheck %s in %.2f s (reference %s, %.2f s): %s', status, result.seconds,
             source, ref_s, ', '.join(f'chip {c} pcc {format_pcc(p)}'
                                      for c, p in enumerate(pccs)))
    if len(failed) == len(errors):
        raise SelfCheckFailed('; '.join(failed) + ': the TT depth does not match torch fp32 '
                              'for these weights, no chip left to serve')
    if failed and opts.strict:
        raise SelfCheckFailed('; '.join(failed) + ' (strict: every chip must pass)')
    return result


def check(dp, opts, loaded, input_format: str, *, stand_in: bool = False,
          reference: Callable[[np.ndarray], np.ndarray] | None = None) -> SelfCheck:
    """Run the self-check as `opts` asks: off, skipped (a stand-in program), or `run`."""
    if not opts.selfcheck:
        log.info('selfcheck off: the chips serve without being checked against torch fp32')
        return SelfCheck('off')
    if stand_in and reference is None:
        return SelfCheck('skipped: a stand-in device program without a reference')
    return run(dp, opts, loaded, input_format, reference)
