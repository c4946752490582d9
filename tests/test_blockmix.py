"""The block mixer (dialog_tts.finish.mixer): the target and the ceiling by independent meters, in
constant memory, and streamed.  Loudness is measured with libebur128 (pyebur128), true peak by
resample_poly."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest

from dialog_tts.finish import clips as mix
from dialog_tts.finish import mixer as blockmix
from dialog_tts.finish import timeline as tl
from dialog_tts.io.audio import Clip
from dialog_tts.script.parse import Line
from dialog_tts.script.voice import Voice
from test_finishing import ebur128_lufs, oversampled_peak_db
from test_mix import speechlike

PANS = (-0.4, 0.0, 0.5)


def scene(n: int, settings: mix.MixSettings, seconds: float = 3.0):
    """*n* speech-like clips of three speakers, their timeline."""
    clips = [speechlike(i, seconds=seconds + i % 3, amp=0.05 + 0.1 * (i % 4), click=0.3 + 0.2 * (i % 3))
             for i in range(n)]
    lines = [Line(f"S{i % 3}", "x", i + 1) for i in range(n)]
    voices = [Voice(f"v{i % 3}", pan=PANS[i % 3], gain=(0.0, -3.0, 2.0)[i % 3]) for i in range(n)]
    inputs = [tl.LineInput(ln, v, mix.placed_frames(c, settings)) for ln, v, c in zip(lines, voices, clips)]
    return clips, tl.build(lines, inputs, sample_rate=settings.sample_rate, gap=settings.gap)


def block_mix(clips, timeline, settings, folder=None, peaks=None):
    with blockmix.BlockMix(settings, folder=folder, peaks=peaks) as bm:
        for entry in timeline.lines:
            bm.add(entry, mix.prepare(clips[entry.index], settings)[:entry.frames])
        figures = bm.finish(timeline.frames)
        out = np.concatenate(list(bm.blocks()))
        return out, bm.rendered(figures)


@pytest.mark.parametrize("leveling", ["line", "speaker", "off"])
@pytest.mark.parametrize("lufs", [None, -16.0, -23.0])
@pytest.mark.parametrize("channels", [1, 2])
def test_block_mix_reaches_its_target_under_the_ceiling(lufs, leveling, channels):
    settings = mix.MixSettings(lufs=lufs, leveling=leveling, channels=channels, allow_quieter=True)
    clips, timeline = scene(24, settings)
    out, figures = block_mix(clips, timeline, settings)
    assert out.shape == ((timeline.frames,) if channels == 1 else (timeline.frames, 2))
    got = ebur128_lufs(out, 24000)
    if lufs is not None:
        assert abs(got - lufs) <= 0.2          # 0.085 LU of it: the K-weighting constants at 24 kHz
    assert oversampled_peak_db(out, 24000) <= -1.0
    assert figures.true_peak is not None and figures.true_peak <= -1.0
    assert figures.loudness is not None and abs(figures.loudness - got) <= 0.15


class PeakShelf(dict):
    """A PeakStore in memory (the audio cache is one on disk): counts what is put."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def get_blob(self, key: str) -> bytes | None:
        return self.get(key)

    def put_blob(self, key: str, data: bytes) -> None:
        self.puts += 1
        self[key] = data


@pytest.mark.parametrize("lufs", [None, -16.0])
def test_kept_true_peaks_are_read_back_and_give_the_same_bytes(lufs):
    """A source's own true peaks go to the store once, keyed by its samples; a second mix of the same
    lines reads them all back (nothing put) and is the same, byte for byte, as one without a store, and
    under the ceiling by the independent reference."""
    settings = mix.MixSettings(lufs=lufs, channels=2, allow_quieter=True)
    clips, timeline = scene(12, settings)
    shelf = PeakShelf()
    first, _ = block_mix(clips, timeline, settings, peaks=shelf)
    assert shelf.puts == len(shelf) == 12
    again, figures = block_mix(clips, timeline, settings, peaks=shelf)
    assert shelf.puts == 12
    plain, _ = block_mix(clips, timeline, settings)
    assert first.tobytes() == again.tobytes() == plain.tobytes()
    assert oversampled_peak_db(again, settings.sample_rate) <= -1.0
    assert figures.true_peak is not None and figures.true_peak >= oversampled_peak_db(again, settings.sample_rate)


def test_kept_readings_are_read_back_where_a_line_is_placed_alike_and_read_again_where_it_moved(monkeypatch):
    """The store also keeps each source's K-weighted measurement and group peaks, with where it was
    placed: a second mix of the same timeline measures nothing (the same bytes); with longer gaps, the
    lines that moved to another place on the grid (by other than a whole sub-block, 2400 frames) are
    measured again, their own true peaks still read back, and the mix is a storeless mix's, byte for byte."""
    from dialog_tts.finish import loudness

    settings = mix.MixSettings(lufs=-16.0, channels=2, allow_quieter=True)
    clips, timeline = scene(12, settings)
    shelf = PeakShelf()
    first, _ = block_mix(clips, timeline, settings, peaks=shelf)
    calls = {"measure_placed": 0, "source_peaks": 0}

    def counted(name):
        real = getattr(loudness, name)

        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    for name in calls:
        monkeypatch.setattr(loudness, name, counted(name))
    again, _ = block_mix(clips, timeline, settings, peaks=shelf)
    assert calls == {"measure_placed": 0, "source_peaks": 0}
    assert again.tobytes() == first.tobytes()

    wider = mix.MixSettings(lufs=-16.0, channels=2, allow_quieter=True, gap=0.31)
    _clips, moved = scene(12, wider)
    changed = sum((b.start - a.start) % 2400 != 0 for a, b in zip(timeline.lines, moved.lines))
    assert 0 < changed < 11          # some lines moved by whole sub-blocks (1440 frames more a gap)
    out, _ = block_mix(clips, moved, wider, peaks=shelf)
    assert calls == {"measure_placed": changed, "source_peaks": 0}
    plain, _ = block_mix(clips, moved, wider)
    assert out.tobytes() == plain.tobytes()

    for key in shelf:       # a kept reading cut short is read again, never used
        shelf[key] = shelf[key][:-4]
    calls.update(measure_placed=0, source_peaks=0)
    cut, _ = block_mix(clips, moved, wider, peaks=shelf)
    assert calls == {"measure_placed": 12, "source_peaks": 12}
    assert cut.tobytes() == plain.tobytes()


def test_kept_true_peaks_of_other_samples_are_never_used():
    """The key is the samples' digest: a changed line reads its own peaks, not the ones kept for the
    line it replaced (here every kept figure is made far too low, and the changed line still holds
    the ceiling)."""
    settings = mix.MixSettings(lufs=-16.0, channels=1, allow_quieter=True)
    clips, timeline = scene(6, settings)
    shelf = PeakShelf()
    block_mix(clips, timeline, settings, peaks=shelf)
    for key in shelf:
        shelf[key] = np.zeros(len(shelf[key]) // 4, np.float32).tobytes()
    louder = [Clip(c.samples * np.float32(1.0001), c.sample_rate) for c in clips]
    out, _ = block_mix(louder, timeline, settings, peaks=shelf)
    assert shelf.puts == 12
    assert oversampled_peak_db(out, settings.sample_rate) <= -1.0


def test_an_island_longer_than_a_window_is_limited_window_by_window(monkeypatch):
    monkeypatch.setattr(blockmix, "_WINDOW", 1000)          # 1.3 s: the scene's one island is many windows
    settings = mix.MixSettings(lufs=-12.0, gap=0.0, allow_quieter=True)
    clips, timeline = scene(8, settings)
    out, figures = block_mix(clips, timeline, settings)
    assert out.shape[0] == timeline.frames and timeline.frames > 20 * 1000 * 32
    assert oversampled_peak_db(out, 24000) <= -1.0
    assert abs(ebur128_lufs(out, 24000) + 12.0) <= 0.25
    assert figures.true_peak is not None and figures.true_peak <= -1.0
    assert figures.loudness is not None and abs(figures.loudness - ebur128_lufs(out, 24000)) <= 0.15


@pytest.mark.parametrize("lufs", [-16.0, -10.0])
def test_a_window_gives_out_the_frames_its_hold_read_as_they_would_be_mixed_again(monkeypatch, lufs):
    """Where the hold ends with the curve it read the result under, the window gives out the frames it
    read instead of mixing them again: the same bytes as mixing every output frame anew."""
    settings = mix.MixSettings(lufs=lufs, channels=2, allow_quieter=True)
    clips, timeline = scene(10, settings)
    parts = blockmix.LastRender.part
    reused = []

    def counted(self, curve, a, b):
        got = parts(self, curve, a, b)
        reused.append(got is not None)
        return got
    monkeypatch.setattr(blockmix.LastRender, "part", counted)
    kept, _ = block_mix(clips, timeline, settings)
    monkeypatch.setattr(blockmix.LastRender, "part", lambda self, curve, a, b: None)
    fresh, _ = block_mix(clips, timeline, settings)
    assert any(reused) and kept.tobytes() == fresh.tobytes()
    assert oversampled_peak_db(kept, settings.sample_rate) <= -1.0


def test_lines_without_gaps_are_limited_together():
    settings = mix.MixSettings(lufs=-14.0, gap=0.0, allow_quieter=True)
    clips, timeline = scene(12, settings)
    out, _figures = block_mix(clips, timeline, settings)
    assert oversampled_peak_db(out, 24000) <= -1.0
    assert abs(ebur128_lufs(out, 24000) + 14.0) <= 0.25


def test_out_of_reach_target_is_a_loudness_error():
    from dialog_tts.errors import LoudnessError
    settings = mix.MixSettings(lufs=0.0)
    clips, timeline = scene(6, settings)
    with pytest.raises(LoudnessError, match="out of reach"):
        block_mix(clips, timeline, settings)


def test_the_spill_never_shows_in_the_folder(tmp_path):
    settings = mix.MixSettings()
    clips, timeline = scene(4, settings)
    with blockmix.BlockMix(settings, folder=str(tmp_path)) as bm:
        for entry in timeline.lines:
            bm.add(entry, mix.prepare(clips[entry.index], settings)[:entry.frames])
        assert os.listdir(tmp_path) == []       # unlinked at once: nothing to leave behind


def test_stream_gives_the_first_block_before_the_last_line():
    settings = mix.MixSettings(lufs=-16.0, allow_quieter=True)
    clips, timeline = scene(30, settings)
    taken = []

    def arriving():
        for entry in timeline.lines:
            taken.append(entry.index)
            yield entry, mix.prepare(clips[entry.index], settings)[:entry.frames]

    bm = blockmix.BlockMix(settings, spill=False)
    bm.frames = timeline.frames
    blocks = blockmix.stream(bm, arriving())
    first = next(blocks)
    assert first.shape[0] == blockmix.STREAM_BLOCK and len(taken) < 5
    out = np.concatenate([first, *blocks])
    assert out.shape[0] == timeline.frames
    assert oversampled_peak_db(out, 24000) <= -1.0
    assert abs(ebur128_lufs(out, 24000) + 16.0) <= 0.5    # the predicted gain: documented as within 0.5 LU


def _peak_allocation(minutes: float) -> int:
    """Peak Python allocation of analysing and rendering *minutes* of speech at 8 kHz mono."""
    settings = mix.MixSettings(sample_rate=8000, channels=1, lufs=-16.0, allow_quieter=True)
    clip = speechlike(1, seconds=6.0, rate=8000, amp=0.1)
    count = round(minutes * 60 / 6.25)
    lines = [Line("A", "x", i + 1) for i in range(count)]
    frames = mix.placed_frames(clip, settings)
    inputs = [tl.LineInput(ln, Voice("v"), frames) for ln in lines]
    timeline = tl.build(lines, inputs, sample_rate=8000, gap=settings.gap)
    samples = mix.prepare(clip, settings)[:frames]
    tracemalloc.start()
    try:
        with blockmix.BlockMix(settings) as bm:
            for entry in timeline.lines:
                bm.add(entry, samples)
            bm.finish(timeline.frames)
            total = sum(block.shape[0] for block in bm.blocks(block=8000 * 10))
        assert total == timeline.frames
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_length():
    short, long = _peak_allocation(10), _peak_allocation(60)
    # the mix of 60 minutes would be 115 MB; each line keeps a few hundred bytes
    assert long - short < 3_000_000, (short, long)


def test_a_stream_levels_by_line_when_asked_by_speaker():
    outs = []
    for leveling in ("line", "speaker"):
        settings = mix.MixSettings(lufs=-16.0, leveling=leveling, allow_quieter=True)
        clips, timeline = scene(9, settings)
        bm = blockmix.BlockMix(settings, spill=False)
        bm.frames = timeline.frames
        lines = ((e, mix.prepare(clips[e.index], settings)[:e.frames]) for e in timeline.lines)
        outs.append(np.concatenate(list(blockmix.stream(bm, lines))))
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_peak_histogram_counts_as_np_histogram_does(dtype):
    """The histogram of group peaks (dB) kept as lines arrive holds np.histogram's counts over the same
    edges: values on the edges and next to them, the last edge (held by the last bin) and values outside
    them included."""
    rng = np.random.default_rng(3)
    edges = blockmix.PEAK_BINS
    for _ in range(50):
        values = np.concatenate([rng.uniform(-210.0, 50.0, int(rng.integers(0, 4000))),
                                 edges[rng.integers(0, edges.shape[0], 40)],
                                 np.nextafter(edges[rng.integers(0, edges.shape[0], 40)], -np.inf),
                                 np.nextafter(edges[rng.integers(0, edges.shape[0], 40)], np.inf),
                                 [edges[0], edges[-1], np.nextafter(edges[-1], np.inf), -np.inf]]).astype(dtype)
        np.testing.assert_array_equal(blockmix.binned(values), np.histogram(values, edges)[0])
