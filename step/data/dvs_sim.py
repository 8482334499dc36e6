"""A simulated event camera (DVS) and the N-MNIST saccade protocol that turns still images into events.

Pixel model (the idealised DVS pixel of Lichtsteiner, Posch & Delbruck, IEEE JSSC 2008, as simulated by
ESIM, Rebecq et al. CoRL 2018, and v2e, Hu et al. CVPRW 2021). Every pixel tracks its log intensity

    L(t) = ln(I(t) + eps)

and holds a reference level ``L_ref`` (its level at its last event; initially ``L`` of the first frame).
Whenever ``L - L_ref`` reaches ``+C_on`` the pixel emits an ON event (polarity 1) and sets
``L_ref += C_on``; whenever it reaches ``-C_off`` it emits an OFF event (polarity 0) and sets
``L_ref -= C_off``. Between two rendered frames ``L`` is interpolated linearly in time, so a change of
``n * C`` within one frame interval emits ``n`` events, stamped at the times the line crosses the levels
``L_ref + k C`` (k = 1..n). Real sensors differ pixel to pixel: :func:`pixel_thresholds` draws
fixed-pattern thresholds ``C ~ N(C, sigma)``; :func:`simulate_events` can add background activity
(Poisson, ``noise_rate`` events per pixel per second, random polarity).

Saccades (Orchard et al., "Converting static image datasets to spiking neuromorphic datasets using
saccades", Front. Neurosci. 2015): N-MNIST filmed each 28 px MNIST digit with a 34 x 34 ATIS sensor
moved along three straight saccades of about 105 ms each, tracing the triangle
(0, 0) -> (3.5, 7) -> (7, 0) -> (0, 0) in pixels (x right, y down; the same path tonic's
``stabilize`` removes). :func:`saccade_offsets` gives that path scaled to an amplitude ``a``:
(0, 0) -> (a/2, a) -> (a, 0) -> (0, 0); :func:`render_saccades` moves an image along it with
bilinear sub-pixel shifts.

Events are a structured array with fields ``x``, ``y`` (int16), ``p`` (int8: 1 ON, 0 OFF) and ``t``
(int64 microseconds). :func:`events_to_frames` bins them into ``[T, 2, H, W]`` counts with channel
0 = OFF and channel 1 = ON (tonic's ``ToFrame`` convention).
"""

from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])

#: N-MNIST's saccade triangle in units of its amplitude (7 px there): (x, y) vertices.
SACCADE_VERTICES = np.array([[0.0, 0.0], [0.5, 1.0], [1.0, 0.0], [0.0, 0.0]])
#: N-MNIST's saccade duration in microseconds.
SACCADE_US = 105_000


def pixel_thresholds(shape: tuple[int, int], mean: float, sigma: float, rng: np.random.Generator | None) -> np.ndarray:
    """Per-pixel contrast thresholds ``N(mean, sigma)``, floored at ``mean / 10`` (fixed-pattern mismatch)."""
    if sigma <= 0 or rng is None:
        return np.full(shape, float(mean))
    return np.maximum(rng.normal(mean, sigma, size=shape), mean / 10.0)


def _crossings(
    L0: np.ndarray, L1: np.ndarray, Lref: np.ndarray, C: np.ndarray, sign: int, t0: float, t1: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat pixel indices, timestamps and counts of the level crossings of one polarity in one interval."""
    n = np.floor(sign * (L1 - Lref) / C).astype(np.int64)
    n[n < 0] = 0
    idx = np.flatnonzero(n)
    counts = n.ravel()[idx]
    if counts.size == 0:
        return idx, np.empty(0), n
    pix = np.repeat(idx, counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1  # 1..n per pixel
    level = Lref.ravel()[pix] + sign * k * C.ravel()[pix]
    l0, l1 = L0.ravel()[pix], L1.ravel()[pix]
    frac = (level - l0) / (l1 - l0)
    return pix, t0 + np.clip(frac, 0.0, 1.0) * (t1 - t0), n


def simulate_events(
    frames: np.ndarray,
    times_us: np.ndarray,
    contrast_on: float | np.ndarray = 0.25,
    contrast_off: float | np.ndarray = 0.25,
    log_eps: float = 0.1,
    noise_rate: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Events of a DVS watching ``frames`` (``[K, H, W]`` intensities >= 0) shown at ``times_us`` (``[K]``).

    ``contrast_on`` / ``contrast_off`` are scalars or ``[H, W]`` per-pixel thresholds (log units);
    ``noise_rate`` adds Poisson background events per pixel per second (needs ``rng``). Returns events
    sorted by time (:data:`EVENT_DTYPE`).
    """
    frames = np.asarray(frames, dtype=np.float64)
    times = np.asarray(times_us, dtype=np.float64)
    if frames.ndim != 3 or len(times) != len(frames):
        raise ValueError(f"frames must be [K, H, W] with one time each, got {frames.shape} and {times.shape}")
    if np.any(np.diff(times) <= 0):
        raise ValueError("times_us must increase strictly")
    K, H, W = frames.shape
    C_on = np.broadcast_to(np.asarray(contrast_on, dtype=np.float64), (H, W))
    C_off = np.broadcast_to(np.asarray(contrast_off, dtype=np.float64), (H, W))
    L = np.log(frames + log_eps)
    Lref = L[0].copy()
    pix_parts, t_parts, p_parts = [], [], []
    for k in range(1, K):
        for sign, C in ((1, C_on), (-1, C_off)):
            pix, t, n = _crossings(L[k - 1], L[k], Lref, C, sign, times[k - 1], times[k])
            if pix.size:
                pix_parts.append(pix)
                t_parts.append(t)
                p_parts.append(np.full(pix.size, 1 if sign > 0 else 0))
                Lref += sign * n * C
    if noise_rate > 0:
        if rng is None:
            raise ValueError("noise_rate > 0 needs an rng")
        duration_s = (times[-1] - times[0]) * 1e-6
        n_noise = rng.poisson(noise_rate * duration_s, size=H * W)
        pix = np.repeat(np.arange(H * W), n_noise)
        pix_parts.append(pix)
        t_parts.append(rng.uniform(times[0], times[-1], size=pix.size))
        p_parts.append(rng.integers(0, 2, size=pix.size))
    if not pix_parts:
        return np.zeros(0, dtype=EVENT_DTYPE)
    pix, t, p = np.concatenate(pix_parts), np.concatenate(t_parts), np.concatenate(p_parts)
    events = np.empty(pix.size, dtype=EVENT_DTYPE)
    events["x"], events["y"] = pix % W, pix // W
    events["p"], events["t"] = p, np.round(t).astype(np.int64)
    return events[np.argsort(events["t"], kind="stable")]


def saccade_offsets(amplitude: float, steps_per_saccade: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets ``[K, 2]`` as (x, y) pixels, times ``[K]`` in us) along the three N-MNIST saccades."""
    if steps_per_saccade < 1:
        raise ValueError(f"steps_per_saccade must be >= 1, got {steps_per_saccade}")
    verts = SACCADE_VERTICES * amplitude
    parts = [verts[:1]]
    for a, b in zip(verts[:-1], verts[1:]):
        s = np.arange(1, steps_per_saccade + 1)[:, None] / steps_per_saccade
        parts.append(a + s * (b - a))
    offsets = np.concatenate(parts)
    times = np.arange(len(offsets)) * (SACCADE_US / steps_per_saccade)
    return offsets, times


def _shift_axis(a: np.ndarray, shift: float, axis: int) -> np.ndarray:
    """Move ``a`` by a fractional ``shift`` (>= 0) along ``axis`` with linear interpolation, zero fill."""
    whole, frac = int(np.floor(shift)), shift - np.floor(shift)
    out = np.zeros_like(a)
    for offset, weight in ((whole, 1.0 - frac), (whole + 1, frac)):
        if weight == 0.0 or offset >= a.shape[axis]:
            continue
        axis = axis % a.ndim
        src = [slice(None)] * a.ndim
        dst = [slice(None)] * a.ndim
        src[axis] = slice(0, a.shape[axis] - offset)
        dst[axis] = slice(offset, None)
        out[tuple(dst)] += weight * a[tuple(src)]
    return out


def render_saccades(image: np.ndarray, sensor_size: int, amplitude: float, steps_per_saccade: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[K, ..., S, S]`` of ``image`` (``[..., h, w]``, top-left aligned) moving along the saccades, and times (us)."""
    h, w = image.shape[-2:]
    if h + amplitude > sensor_size or w + amplitude > sensor_size:
        raise ValueError(f"an image of {h}x{w} moving {amplitude} px does not fit a {sensor_size} px sensor")
    canvas = np.zeros((*image.shape[:-2], sensor_size, sensor_size), dtype=np.float64)
    canvas[..., :h, :w] = image
    offsets, times = saccade_offsets(amplitude, steps_per_saccade)
    frames = np.stack([_shift_axis(_shift_axis(canvas, dx, -1), dy, -2) for dx, dy in offsets])
    return frames, times


def events_to_frames(events: np.ndarray, T: int, height: int, width: int, t_start: float, t_end: float) -> np.ndarray:
    """Counts ``[T, 2, H, W]`` (channel 0 OFF, 1 ON) in T equal time bins over ``[t_start, t_end]``."""
    frames = np.zeros((T, 2, height, width), dtype=np.float32)
    if len(events):
        span = max(float(t_end - t_start), 1e-9)
        b = np.clip(((events["t"] - t_start) / span * T).astype(np.int64), 0, T - 1)
        np.add.at(frames, (b, events["p"].astype(np.int64), events["y"].astype(np.int64), events["x"].astype(np.int64)), 1.0)
    return frames
