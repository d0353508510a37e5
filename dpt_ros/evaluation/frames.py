"""The bag's camera frames as both modes read them, and their progress bar."""
from __future__ import annotations

import logging
from typing import Iterator

from dpt_ros.evaluation import bagio

log = logging.getLogger('dpt_ros.evaluation.frames')


def read_frames(src: bagio.BagSource, warnings: list[str]) -> Iterator[bagio.Frame]:
    """
    Yield bagio.iter_frames, but end at a read error part-way, with a warning.

    So the frames already evaluated are not lost (a truncated recording is still worth a
    report).
    """
    it = bagio.iter_frames(src)
    while True:
        try:
            frame = next(it)
        except StopIteration:
            return
        except Exception as err:  # rosbags/mcap/sqlite errors on a damaged tail
            warnings.append(f'reading the bag stopped early: {err}')
            log.warning('reading the bag stopped early: %s', err)
            return
        yield frame


def progress(disabled: bool, total: int, desc: str):
    """Return a tqdm bar over frames (a no-op bar when `disabled`)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='frame', disable=disabled, dynamic_ncols=True,
                leave=False)
