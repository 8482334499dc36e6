"""The DVS simulator against hand-computed events, and the embedded digits-dvs set."""

import math

import numpy as np
import pytest

from step.data.dvs_sim import (
    events_to_frames,
    pixel_thresholds,
    render_saccades,
    saccade_offsets,
    simulate_events,
)


def test_static_scene_gives_no_events():
    image = np.random.default_rng(0).uniform(0, 1, size=(6, 7))
    frames = np.stack([image] * 5)
    events = simulate_events(frames, np.arange(5) * 1000.0, 0.2, 0.2, log_eps=0.1)
    assert len(events) == 0


@pytest.mark.parametrize("before,after,polarity", [(0.2, 0.8, 1), (0.8, 0.2, 0)])
def test_one_pixel_step_gives_the_expected_events(before, after, polarity):
    # ln((0.8 + 0.1) / (0.2 + 0.1)) = ln 3 = 1.0986 -> floor(1.0986 / 0.25) = 4 crossings
    frames = np.full((2, 4, 5), before)
    frames[1, 2, 3] = after
    events = simulate_events(frames, np.array([0.0, 1000.0]), 0.25, 0.25, log_eps=0.1)
    assert len(events) == 4
    assert set(events["x"]) == {3} and set(events["y"]) == {2}
    assert set(events["p"]) == {polarity}
    # crossing k sits at k * 0.25 / ln 3 of the interval
    expected_t = [round(1000 * k * 0.25 / math.log(3)) for k in range(1, 5)]
    assert list(events["t"]) == expected_t


def test_crossings_carry_over_between_intervals():
    # 0.3 -> 0.6 -> 0.9 (plus eps 0.1): ln(0.7/0.4)=0.560 -> 2 events, then the reference is at
    # ln 0.4 + 0.5; total change ln(1.0/0.4)=0.916 -> 3 events overall, not 2 + 1 counted per frame
    frames = np.array([[[0.3]], [[0.6]], [[0.9]]])
    events = simulate_events(frames, np.array([0.0, 1.0e3, 2.0e3]), 0.25, 0.25, log_eps=0.1)
    assert len(events) == math.floor(math.log(1.0 / 0.4) / 0.25) == 3
    assert (events["p"] == 1).all()


def test_event_count_grows_with_contrast():
    counts = []
    for contrast in (0.1, 0.3, 0.6, 0.9):
        image = np.zeros((10, 10))
        image[3:7, 3:7] = contrast
        frames, times = render_saccades(image, 14, 4, 6)
        counts.append(len(simulate_events(frames, times, 0.2, 0.2, log_eps=0.1)))
    assert counts[0] < counts[1] < counts[2] < counts[3]


def test_saccades_trace_the_nmnist_triangle():
    offsets, times = saccade_offsets(7.0, 2)
    # N-MNIST: (0,0) -> (3.5,7) -> (7,0) -> (0,0), three saccades of 105 ms
    assert offsets.tolist() == [[0, 0], [1.75, 3.5], [3.5, 7], [5.25, 3.5], [7, 0], [3.5, 0], [0, 0]]
    assert times[-1] == 3 * 105_000


def test_threshold_mismatch_is_seeded():
    a = pixel_thresholds((4, 4), 0.25, 0.03, np.random.default_rng(1))
    b = pixel_thresholds((4, 4), 0.25, 0.03, np.random.default_rng(1))
    assert np.array_equal(a, b) and a.std() > 0
    assert (pixel_thresholds((4, 4), 0.25, 0.0, None) == 0.25).all()


def test_events_to_frames_bins_by_time_and_polarity():
    ev = np.zeros(3, dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
    ev["x"], ev["y"], ev["p"], ev["t"] = [0, 1, 1], [2, 0, 0], [1, 0, 0], [10, 260, 990]
    frames = events_to_frames(ev, 4, 3, 2, 0.0, 1000.0)
    assert frames.shape == (4, 2, 3, 2) and frames.sum() == 3
    assert frames[0, 1, 2, 0] == 1 and frames[1, 0, 0, 1] == 1 and frames[3, 0, 0, 1] == 1


def test_generation_is_deterministic_by_seed():
    from step.data.digits import load_digits_arrays, resize_images
    from step.data.digits_dvs import generate_frames

    images = resize_images(load_digits_arrays()[0][:12], 12).squeeze(1).numpy()
    kw = dict(timesteps=4, img_size=16, saccade_px=4, steps_per_saccade=6, contrast_threshold=0.25,
              threshold_sigma=0.03, log_eps=0.1, noise_rate=5.0)
    a, b = generate_frames(images, seed=0, **kw), generate_frames(images, seed=0, **kw)
    c = generate_frames(images, seed=1, **kw)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (12, 4, 2, 16, 16) and a.sum() > 0


def test_digits_dvs_bundle_is_cached_under_the_root(tmp_path):
    from step.registry import DATASETS

    bundle = DATASETS.build("digits-dvs", root=str(tmp_path), timesteps=3, steps_per_saccade=4)
    cached = list((tmp_path / "digits-dvs").glob("*.npz"))
    assert len(cached) == 1
    x, y = bundle.train[0]
    assert bundle.modality == "event" and bundle.timesteps == 3 and bundle.in_chans == 2
    assert x.shape == (3, 2, 16, 16) and x.dtype.is_floating_point and x.min() >= 0 and x.sum() > 0
    assert len(bundle.train) + len(bundle.test) == 1797
    again = DATASETS.build("digits-dvs", root=str(tmp_path), timesteps=3, steps_per_saccade=4)
    assert np.array_equal(again.test[5][0].numpy(), bundle.test[5][0].numpy())
