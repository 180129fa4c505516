"""Process plumbing, kept out of the jobs so that a job reads as its numbered steps.

- :func:`frames_in_workers`: frames rendered by forked worker processes and handed back
  in order through a ring of shared buffers (no pickling of frames);
- :func:`map_in_forks`: independent tasks (spans of a clip to track) in forked processes;
- :func:`beside`: where slow, torch-free preparation runs beside the main work (a forked
  helper in a fresh process, else a thread);
- :func:`one_blas_thread`, :func:`keep_freed_memory`: settings for processes that share
  two cores with their siblings.

Nothing here knows about faces or speech: a renderer is any ``render_frame(item, out=)``.
"""
from __future__ import annotations

import ctypes
import mmap
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import suppress

import numpy as np

MAX_WORKERS = 2            # render workers at most (one per core on the 2-core target)
PARALLEL_MIN_FRAMES = 50   # shorter clips render in this process
PARALLEL_CHUNK = 5         # frames a worker renders per task
RING_SLOTS = 16            # shared frame buffers (>= 2 chunks per worker in flight)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # glibc's malloc.h
_JOB = None                # (render_frame, items, slots, taken, cond), inherited by forks
_TASK = None               # map_in_forks's task, inherited by its forks


def default_workers() -> int:
    """Render workers for this machine: one per CPU core, at most ``MAX_WORKERS``."""
    return min(MAX_WORKERS, os.cpu_count() or 1)


def frames_in_workers(render_frame: Callable, items: Sequence, size: tuple[int, int],
                      workers: int | None = None, *, lend: bool = False) -> Iterator[np.ndarray]:
    """``render_frame(items[i], out=uint8[H x W x 3])`` for every i, in order, as frames.

    render_frame : fills ``out`` (uint8[H x W x 3], H, W = ``size``) for one item
    items        : anything indexable with a length (a Motion, a list)
    workers      : forked processes (default :func:`default_workers`), each with one torch
                   thread; fewer than 2, a short clip (< ``PARALLEL_MIN_FRAMES``) or no
                   ``fork``: rendered here, one at a time
    lend         : frames are lent, not given: each is valid only until the next is asked
                   for (for a consumer that writes each frame out at once: no copy)
    """
    workers = default_workers() if workers is None else workers
    h, w = size
    if workers < 2 or len(items) < PARALLEL_MIN_FRAMES or "fork" not in mp.get_all_start_methods():
        out = np.empty((h, w, 3), np.uint8) if lend else None
        for i in range(len(items)):
            yield render_frame(items[i], out=out if lend else np.empty((h, w, 3), np.uint8))
        return
    # frames come back through a ring of shared buffers, not pickled through a pipe
    # (pickles cost ~0.2 s per 130 frames at 512²): frame i goes into slot i % SLOTS once
    # the frame that used the slot before has been taken
    ctx = mp.get_context("fork")
    ring = mmap.mmap(-1, RING_SLOTS * h * w * 3)          # anonymous, shared with the forks
    slots = np.frombuffer(ring, np.uint8).reshape(RING_SLOTS, h, w, 3)
    taken, cond = ctx.RawValue("q", 0), ctx.Condition()
    global _JOB
    _JOB = (render_frame, items, slots, taken, cond)   # inherited by the forked workers, never pickled
    try:
        with ctx.Pool(workers, initializer=_start_worker) as pool:
            for slot in pool.imap(_render_one, range(len(items)), chunksize=PARALLEL_CHUNK):
                if lend:
                    yield slots[slot]             # used by the caller before it asks again
                    frame = None
                else:
                    frame = slots[slot].copy()
                with cond:
                    taken.value += 1
                    cond.notify_all()
                if frame is not None:
                    yield frame
    finally:
        _JOB = None                       # also when the caller stops early
        del slots
        with suppress(BufferError):       # a view still held (a traceback): freed with it
            ring.close()


def map_in_forks(task: Callable[[int], object], n: int, workers: int | None = None) -> list:
    """``[task(0), ..., task(n - 1)]``, computed by up to ``workers`` forked processes
    (default :func:`default_workers`), each set up by :func:`start_helper`.

    ``task`` and everything it reads are inherited by the forks, never pickled; only the
    results come back (pickled: keep them small). Run here, in order, with fewer than 2
    workers or tasks, where forking is unsafe (:func:`fork_is_safe`) or from a daemonic
    process (a pool's worker cannot have children).
    """
    workers = default_workers() if workers is None else workers
    if workers < 2 or n < 2 or not fork_is_safe() or mp.current_process().daemon:
        return [task(i) for i in range(n)]
    global _TASK
    _TASK = task
    try:
        with mp.get_context("fork").Pool(min(workers, n), initializer=start_helper) as pool:
            return pool.map(_run_task, range(n), chunksize=1)
    finally:
        _TASK = None


def _run_task(i: int):
    return _TASK(i)


def _render_one(i: int) -> int:
    """In a worker: render item ``i`` into its ring slot; returns the slot."""
    render_frame, items, slots, taken, cond = _JOB
    with cond:
        cond.wait_for(lambda: taken.value > i - len(slots))   # the slot's last frame was taken
    render_frame(items[i], out=slots[i % len(slots)])
    return i % len(slots)


def _start_worker() -> None:
    import torch
    torch.set_num_threads(1)
    start_helper()


def start_helper() -> None:
    """Set up a short-lived forked process that shares few cores with its siblings."""
    keep_freed_memory()
    one_blas_thread()


def one_blas_thread() -> None:
    """Make each OpenBLAS loaded in this process (numpy's, OpenCV's, SciPy's) run on one
    thread.

    numpy's small products and solves (a frame's pose, its skull's inverse) wake OpenBLAS's
    thread pool, whose threads then spin in ``sched_yield`` for a while after each call:
    in a render worker forked on a 2-core machine that took a second core, doubling the
    worker's CPU time for the same frames. A no-op where no OpenBLAS is loaded or
    ``/proc`` is missing.
    """
    for lib in openblas_libraries():
        for name in ("openblas_set_num_threads64_", "openblas_set_num_threads",
                     "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads"):
            if hasattr(lib, name):
                getattr(lib, name)(1)
                break


def openblas_libraries() -> list[ctypes.CDLL]:
    """Every OpenBLAS library loaded in this process (from ``/proc/self/maps``; none where
    it is missing), opened again: the same library, not a copy."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {fields[5].rstrip("\n") for fields in (line.split(maxsplit=5) for line in maps)
                     if len(fields) == 6}                        # the 6th field: a path, spaces kept
    except OSError:
        return []
    libs = []
    for path in sorted(p for p in paths if "openblas" in p.rsplit("/", 1)[-1]):
        with suppress(OSError):
            libs.append(ctypes.CDLL(path))
    return libs


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel.

    A frame's tensors are megabytes each; glibc serves blocks that large straight from the
    kernel (mmap) and returns them on free, so every frame faulted in ~10 MB of fresh
    zeroed pages: ~2700 page faults and a third of a render worker's time in the kernel.
    For short-lived processes only (the render workers, the helper beside the speech
    stage): the process keeps its peak heap until it exits (in the main process of an
    hour-long job that raised the peak from 1.6 to 2.0 GB). A no-op where libc is not
    glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20)     # blocks below 256 MB from the heap
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)       # and the heap is not trimmed
    except (OSError, AttributeError):
        pass


def fork_is_safe() -> bool:
    """A process forked now can run MediaPipe and CTranslate2: neither has started its
    threads here (a forked copy of a running graph or thread pool would hang)."""
    return ("fork" in mp.get_all_start_methods()
            and not {"mediapipe", "ctranslate2"} & set(sys.modules))


def beside() -> Executor:
    """Where torch-free preparation (the portrait, speech features) runs beside the main
    work.

    In a fresh process (``puppetry animate``): one forked process, started before torch
    is imported, so that MediaPipe, the portrait and the Whisper encoder (none needs
    torch) run while torch loads and the model is read; the two cores share them. Else
    one thread: the tracker leaves the GIL while it runs.
    """
    if fork_is_safe():
        return ProcessPoolExecutor(1, mp_context=mp.get_context("fork"), initializer=start_helper)
    return ThreadPoolExecutor(1)
