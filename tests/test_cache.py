"""The persistent cache: hits skip the backend, mix-only changes re-synthesize nothing,
edits re-synthesize exactly what changed, corrupted entries are redone, the size bound evicts."""

from __future__ import annotations

import multiprocessing
import re
from pathlib import Path

import diskcache
import numpy as np
import pytest
from click.testing import CliRunner

from dialog_tts import synthesize_dialog
from dialog_tts.cli import main
from dialog_tts.io.audio import Clip
from dialog_tts.synth.cache import AudioCache, default_dir, make_key, parse_size, sha256

HUNDRED = "".join(f"{'AB'[i % 2]}: This is line number {i} of the script.\n" for i in range(100))


def render(script, out, **options):
    options.setdefault("backend", "tone")
    return synthesize_dialog(script, out, **options)


def test_keys_are_the_sha256_they_always_were():
    """The key's digest is hashlib's sha256, the digest keys have always had, so every cache written
    before keeps its entries."""
    import hashlib

    for data in (b"", b"abc", "Hello, w\u00f6rld.".encode(), bytes(range(256)) * 1000):
        assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    # written by the previous main, which took hashlib.sha256
    assert make_key("piper", "piper-tts 1.8; joe", {"name": "joe", "rate": 1.25}, "Hello, w\u00f6rld.") == \
        "a0d1eb74aae9d9b5cb6613b0feddb9c1cc115b37d6731771f4a5829375383510"


def test_clips_go_on_the_24_bit_grid_as_in_float64():
    """pcm24 works in float32 in place: every sample must be what the float64 formula gave (the cache
    holds clips made either way, and a changed sample would change output bytes)."""
    from dialog_tts.io.audio import pcm24

    def reference(x: np.ndarray) -> np.ndarray:
        y = np.clip(x.astype(np.float64) * 2.0 ** 23, -2.0 ** 23, 2.0 ** 23 - 1)
        return (np.round(y) / 2.0 ** 23).astype(np.float32)

    rng = np.random.default_rng(1)
    halves = ((rng.integers(-2 ** 23, 2 ** 23, 100_000) + 0.5) / 2 ** 23).astype(np.float32)   # ties to even
    edges = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1.0, 1e-45, -1e-45, 3e38, -3e38, 0.99999994,
                      0.9999999, 2 ** -24, -(2 ** -24), 3 * 2 ** -24, 1.5, -1.5], np.float32)
    for x in (rng.uniform(-1.5, 1.5, 200_000).astype(np.float32), halves, edges,
              rng.standard_normal((5000, 2)).astype(np.float32)):
        got, want = pcm24(Clip(x, 24000)).samples, reference(x)
        assert got.dtype == np.float32 and got.shape == x.shape
        assert np.array_equal(got, want, equal_nan=True)
        assert np.array_equal(np.signbit(got), np.signbit(want))
    assert pcm24(Clip(edges, 24000)).samples is not edges                   # the caller's clip is left alone


def test_second_run_is_served_from_the_cache(write_script, tone_backend, tmp_path):
    script = write_script("A: Hello there.\nB: General Kenobi.\n")
    first = render(script, tmp_path / "1.wav")
    assert len(tone_backend.calls) == 2 and first.totals.synthesized == 2
    second = render(script, tmp_path / "2.wav")
    assert len(tone_backend.calls) == 2          # the backend was not called again
    assert second.totals.cached == 2 and all(r.cache_hit for r in second.lines)
    assert (tmp_path / "1.wav").read_bytes() == (tmp_path / "2.wav").read_bytes()


@pytest.mark.parametrize("change", [
    {"voices": {"A": "mid,pan=-0.8,gain=-3dB"}},
    {"gap_ms": 700},
    {"lufs": -16},
    {"stereo": False, "sample_rate": 16000},
])
def test_mix_only_changes_resynthesize_nothing(write_script, tone_backend, tmp_path, change):
    script = write_script("A: Hello there, friend.\nB: Hi. How are you today?\n")
    render(script, tmp_path / "1.wav", voices={"A": "mid"})
    calls = len(tone_backend.calls)
    result = render(script, tmp_path / "2.wav", **{"voices": {"A": "mid"}, **change})
    assert len(tone_backend.calls) == calls
    assert result.totals.cached == 2


def test_editing_one_line_of_a_hundred_synthesizes_one(write_script, tone_backend, tmp_path):
    script = write_script(HUNDRED)
    render(script, tmp_path / "1.wav")
    assert len(tone_backend.calls) == 100
    script.write_text(HUNDRED.replace("line number 57 ", "line number fifty-seven "), encoding="utf-8")
    result = render(script, tmp_path / "2.wav")
    assert tone_backend.calls[100:] == [("This is line number fifty-seven of the script.", "mid")]
    assert result.totals.cached == 99 and result.totals.synthesized == 1


@pytest.mark.parametrize("voices, changed", [
    ({"A": "high"}, 50),               # another voice for A: A's 50 lines
    ({"A": "mid,rate=1.2x"}, 50),      # another rate for A
    ({"B": "mid,pitch=+1st"}, 50),     # another pitch for B
    ({"B": "mid,volume=-2dB"}, 50),    # another synthesis volume for B
])
def test_voice_changes_resynthesize_exactly_that_speakers_lines(write_script, tone_backend, tmp_path, voices, changed):
    script = write_script(HUNDRED)
    render(script, tmp_path / "1.wav", voices={"A": "mid", "B": "mid"})
    render(script, tmp_path / "2.wav", voices={"A": "mid", "B": "mid", **voices})
    assert len(tone_backend.calls) == 100 + changed


def test_corrupted_entries_are_detected_evicted_and_redone(write_script, tone_backend, tmp_path, private_cache, caplog):
    script = write_script("A: Hello there.\nB: General Kenobi.\n")
    render(script, tmp_path / "1.wav")
    with diskcache.Cache(str(private_cache)) as raw:   # damage every stored value behind the tool's back
        keys = list(raw)
        assert len(keys) == 2
        for key in keys:
            data = bytearray(raw[key])
            data[-10] ^= 0xFF
            raw[key] = bytes(data)
        raw[keys[1]] = b"not even flac"
    with caplog.at_level("WARNING", logger="dialog_tts"):
        result = render(script, tmp_path / "2.wav")
    assert len(tone_backend.calls) == 4                 # both redone
    assert result.totals.synthesized == 2
    assert sum("was corrupted" in r.getMessage() for r in caplog.records) == 2
    assert (tmp_path / "1.wav").read_bytes() == (tmp_path / "2.wav").read_bytes()
    render(script, tmp_path / "3.wav")                  # and the redone entries are good again
    assert len(tone_backend.calls) == 4


def clip(seconds: float, seed: int) -> Clip:
    rng = np.random.default_rng(seed)
    return Clip((rng.standard_normal(round(16000 * seconds)) * 0.2).astype(np.float32), 16000)


def test_size_bound_evicts_least_recently_used(tmp_path):
    limit = 1_500_000
    with AudioCache(tmp_path / "c", size_limit=limit) as cache:
        keys = [make_key("tone", "f", {}, str(i)) for i in range(40)]
        cache.put(keys[0], clip(2.0, 0))
        for i, key in enumerate(keys[1:], start=1):
            assert cache.get(keys[0]) is not None       # keep touching the first entry
            cache.put(key, clip(2.0, i))
        info = cache.info()
        assert info.size <= limit * 1.3                 # diskcache culls at each write
        assert info.entries < 40
        assert cache.get(keys[0]) is not None           # most recently used: kept
        assert cache.get(keys[1]) is None               # least recently used: evicted
        assert cache.get(keys[-1]) is not None


def test_no_cache_neither_reads_nor_writes(write_script, tone_backend, tmp_path, private_cache):
    script = write_script("A: Hello there.\n")
    render(script, tmp_path / "1.wav", cache=False)
    with AudioCache(private_cache) as cache:
        assert cache.info().entries == 0
    render(script, tmp_path / "2.wav")
    render(script, tmp_path / "3.wav", cache=False)
    assert len(tone_backend.calls) == 3


def test_cache_dir_option_and_environment(write_script, tone_backend, tmp_path, monkeypatch):
    monkeypatch.setenv("DIALOG_TTS_CACHE_DIR", str(tmp_path / "from-env"))
    assert default_dir() == tmp_path / "from-env"
    monkeypatch.delenv("DIALOG_TTS_CACHE_DIR")
    assert default_dir().name == "dialog-tts" and ".cache" in default_dir().parts
    script = write_script("A: Hello there.\n")
    result = CliRunner().invoke(main, ["-s", str(script), "--backend", "tone", "--cache-dir", str(tmp_path / "opt"),
                                       "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 0, result.output
    with AudioCache(tmp_path / "opt") as cache:
        assert cache.info().entries == 1


def test_clear_cache_alone_and_cache_info(write_script, tone_backend, tmp_path, private_cache):
    script = write_script("A: Hello there.\nB: Hi.\nA: Bye now.\n")
    render(script, tmp_path / "1.wav")
    runner = CliRunner()
    info = runner.invoke(main, ["cache", "info"])
    assert info.exit_code == 0
    assert f"location: {private_cache}" in info.output and "entries:  3" in info.output
    cleared = runner.invoke(main, ["--clear-cache"])
    assert cleared.exit_code == 0, cleared.output
    assert f"Cleared the cache at {private_cache}: 3 entries" in cleared.output and "freed" in cleared.output
    assert "entries:  0" in runner.invoke(main, ["cache", "info"]).output
    render(script, tmp_path / "2.wav")
    assert len(tone_backend.calls) == 6
    assert "3 entries" in runner.invoke(main, ["cache", "clear"]).output


def test_fingerprint_change_invalidates(write_script, tone_backend, tmp_path):
    script = write_script("A: Hello there.\n")
    render(script, tmp_path / "1.wav")
    tone_backend.fingerprint = lambda voice: "tone 2.0"   # a new model version
    render(script, tmp_path / "2.wav")
    assert len(tone_backend.calls) == 2


@pytest.mark.parametrize("text, size", [("2GB", 2_000_000_000), ("500MB", 500_000_000), ("1.5GiB", int(1.5 * 2**30)),
                                        ("1000", 1000), ("64 kB", 64_000)])
def test_parse_size(text, size):
    assert parse_size(text) == size


def test_bad_cache_size_is_a_usage_error(write_script, tmp_path):
    result = CliRunner().invoke(main, ["-s", str(write_script("A: hi\n")), "--cache-size", "lots", "-o",
                                       str(tmp_path / "o.wav")])
    assert result.exit_code == 2 and "cache size 'lots'" in result.output


def _writer(directory: str, start: int, count: int) -> None:
    with AudioCache(directory) as cache:
        for i in range(start, start + count):
            cache.put(make_key("tone", "f", {}, str(i)), clip(0.1, i))


def test_two_processes_share_one_cache(tmp_path):
    directory = str(tmp_path / "shared")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(directory, start, 40)) for start in (0, 40)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with AudioCache(directory) as cache:
        assert cache.info().entries == 80
        assert all(cache.get(make_key("tone", "f", {}, str(i))) is not None for i in range(80))


def test_unchanged_output_is_not_rendered_again(write_script, tone_backend, tmp_path):
    """Like make: same script, same options, output untouched since written → nothing to do."""
    script = write_script("A: Hello there.\n[pause 300ms]\nB: General Kenobi.\n")
    out = tmp_path / "o.wav"
    first = render(script, out, report=tmp_path / "r1.json")
    stamp = out.stat().st_mtime_ns
    again = render(script, out, report=tmp_path / "r2.json")
    assert again.totals.up_to_date and again.totals.cached == 2
    assert out.stat().st_mtime_ns == stamp                         # not rewritten
    assert [(r.start, r.end) for r in again.lines] == [(r.start, r.end) for r in first.lines]
    import json
    report = json.loads((tmp_path / "r2.json").read_text())
    assert report["totals"]["up_to_date"] and [r["source"] for r in report["lines"]] == ["cache", "cache"]
    assert len(tone_backend.calls) == 2


@pytest.mark.parametrize("change", ["touch", "delete", "gap", "pan", "pause", "force", "format"])
def test_any_change_renders_again(write_script, tone_backend, tmp_path, change):
    script = write_script("A: Hello there.\n[pause 300ms]\nB: General Kenobi.\n")
    out = tmp_path / "o.wav"
    render(script, out)
    options: dict = {}
    if change == "touch":
        out.write_bytes(out.read_bytes() + b"\0\0")                # edited by someone else
    elif change == "delete":
        out.unlink()
    elif change == "gap":
        options["gap_ms"] = 400
    elif change == "pan":
        options["voices"] = {"B": "mid,pan=0.9"}
    elif change == "pause":
        script.write_text("A: Hello there.\n[pause 900ms]\nB: General Kenobi.\n", encoding="utf-8")
    elif change == "force":
        options["force"] = True
    result = render(script, tmp_path / "o.flac" if change == "format" else out, **options)
    assert not result.totals.up_to_date
    assert result.totals.cached == 2                               # the lines still come from the cache
    assert len(tone_backend.calls) == 2


def test_up_to_date_through_the_cli(write_script, tone_backend, tmp_path):
    script = write_script("A: Hello there.\n")
    args = ["-s", str(script), "--backend", "tone", "-o", str(tmp_path / "o.wav")]
    CliRunner().invoke(main, args)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "o.wav is up to date: 1 line, all cached" in result.output
    result = CliRunner().invoke(main, args + ["--force"])
    assert "Wrote" in result.output and "1 cached" in result.output


# ------------------------------------------------------------------ the cache heals or steps aside (issue 11)

THREE = "A: Hello there, this is the first line.\nB: And this one is the second line.\nA: A third line to finish.\n"


def warnings_about(result, text):
    return [ln for ln in result.output.splitlines() if ln.startswith("Warning:") and text in ln]


def cli_render(script, out, *extra):
    return CliRunner().invoke(main, ["-s", str(script), "--backend", "tone", "-o", str(out), *extra])


def damage(db: Path, how: str, start: int = 0) -> None:
    import gc

    gc.collect()   # the connections a render leaves behind close: the database file holds every page
    size = db.stat().st_size
    with open(db, "r+b") as f:
        if how == "random bytes":
            f.seek(start)
            f.write(np.random.default_rng(0).bytes(size - start))
        else:
            f.truncate(size // 2)


def fill_cache(directory: Path, count: int = 300) -> list[str]:
    """A cache whose database is large (small values live inside it); returns the keys."""
    keys = [make_key("tone", "f", {}, str(i)) for i in range(count)]
    with AudioCache(directory) as cache:
        for i, key in enumerate(keys):
            cache.put(key, clip(0.05, i))
    return keys


@pytest.mark.parametrize("how", ["random bytes", "truncated"])
def test_a_damaged_database_is_moved_aside_and_a_fresh_cache_starts(write_script, tone_backend, tmp_path,
                                                                     private_cache, how):
    script = write_script(THREE)
    fill_cache(private_cache)
    assert cli_render(script, tmp_path / "1.wav").exit_code == 0     # its rows are the last ones written
    damage(private_cache / "cache.db", how)
    result = cli_render(script, tmp_path / "2.wav")
    assert result.exit_code == 0, result.output
    assert len(warnings_about(result, "was damaged")) == 1
    assert len(tone_backend.calls) == 6                    # the lines were synthesized again
    assert (tmp_path / "1.wav").read_bytes() == (tmp_path / "2.wav").read_bytes()
    aside = list(private_cache.glob("damaged-*"))
    assert len(aside) == 1 and (aside[0] / "cache.db").is_file()
    result = cli_render(script, tmp_path / "3.wav", "--force")
    assert result.exit_code == 0 and "3 cached" in result.output and len(tone_backend.calls) == 6


@pytest.mark.parametrize("command", [["cache", "clear"], ["--clear-cache"], ["cache", "info"]])
def test_cache_commands_heal_a_damaged_database(tmp_path, private_cache, command):
    fill_cache(private_cache)
    damage(private_cache / "cache.db", "random bytes")
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    assert len(warnings_about(result, "was damaged")) == 1
    if command[-1] == "info":
        assert "entries:  0" in result.output
    else:
        assert "0 entries" in result.output and not list(private_cache.glob("damaged-*"))  # clear frees it too


def test_a_database_damaged_while_in_use_is_healed(tmp_path, caplog):
    keys = fill_cache(tmp_path / "c")
    with AudioCache(tmp_path / "c") as cache, caplog.at_level("WARNING", logger="dialog_tts"):
        assert cache.get(keys[0]) is not None              # opened and working
        damage(tmp_path / "c" / "cache.db", "random bytes", start=4096)   # all but the first page
        found = [cache.get(key) is not None for key in keys]
        cache.put(keys[0], clip(0.05, 0))
        assert cache.get(keys[0]) is not None               # the fresh cache works
    assert sum(found) < len(keys)
    assert sum("was damaged" in r.getMessage() for r in caplog.records) == 1


def test_a_read_only_cache_is_read_and_never_written(write_script, tone_backend, tmp_path, private_cache, mounts):
    script = write_script(THREE)
    assert cli_render(script, tmp_path / "1.wav", "--no-cache").exit_code == 0
    two = write_script("".join(THREE.splitlines(keepends=True)[:2]), name="two.txt")
    assert cli_render(two, tmp_path / "two.wav").exit_code == 0
    calls = len(tone_backend.calls)
    mounts.read_only(private_cache)
    result = cli_render(script, tmp_path / "2.wav")
    assert result.exit_code == 0, result.output
    assert len(warnings_about(result, "cannot write the cache")) == 1
    assert len(warnings_about(result, "the folder is read-only")) == 1
    assert "1 synthesized, 2 cached" in result.output       # read what it could, synthesized the rest
    assert len(tone_backend.calls) == calls + 1
    assert (tmp_path / "1.wav").read_bytes() == (tmp_path / "2.wav").read_bytes()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_cache_dir_that_cannot_be_created_is_done_without(write_script, tone_backend, tmp_path):
    script = write_script(THREE)
    result = cli_render(script, tmp_path / "o.wav", "--cache-dir", "/proc/dialog-tts-cache")
    assert result.exit_code == 0, result.output
    assert len(warnings_about(result, "cannot write the cache at /proc/dialog-tts-cache")) == 1
    assert "3 synthesized" in result.output and (tmp_path / "o.wav").is_file()


def test_a_full_disk_stops_the_cache_not_the_render(write_script, tone_backend, tmp_path, mounts):
    disk = mounts.tmpfs("512k")
    script = write_script(HUNDRED)
    assert cli_render(script, tmp_path / "ref.wav", "--no-cache").exit_code == 0
    result = cli_render(script, tmp_path / "1.wav", "--cache-dir", str(disk / "c"))
    assert result.exit_code == 0, result.output
    warned = warnings_about(result, "cannot write the cache")
    assert len(warned) == 1 and ("No space left on device" in warned[0] or "disk is full" in warned[0])
    assert (tmp_path / "ref.wav").read_bytes() == (tmp_path / "1.wav").read_bytes()
    with open(disk / "filler", "wb", buffering=0) as f:     # now not one byte is left
        for size in (65536, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    result = cli_render(script, tmp_path / "2.wav", "--cache-dir", str(disk / "c"))
    assert result.exit_code == 0, result.output
    assert len(warnings_about(result, "cannot write the cache")) == 1
    cached = int(re.search(r"(\d+) cached", result.output)[1])
    assert 0 < cached < 100                                 # what was stored is read back
    assert (tmp_path / "ref.wav").read_bytes() == (tmp_path / "2.wav").read_bytes()


def test_an_entry_copied_over_another_is_a_miss(write_script, tone_backend, tmp_path, private_cache, caplog):
    with AudioCache(tmp_path / "c") as cache:
        a, b = make_key("tone", "f", {}, "a"), make_key("tone", "f", {}, "b")
        cache.put(a, clip(0.5, 1))
        cache.put(b, clip(0.5, 2))
    with diskcache.Cache(str(tmp_path / "c")) as raw:
        raw[b] = raw[a]                                      # a valid entry, under the wrong key
    with AudioCache(tmp_path / "c") as cache, caplog.at_level("WARNING", logger="dialog_tts"):
        assert cache.get(a) is not None
        assert cache.get(b) is None and b not in cache       # detected, evicted
    assert sum("was corrupted" in r.getMessage() for r in caplog.records) == 1


def test_a_value_file_copied_over_another_is_synthesized_again(write_script, tone_backend, tmp_path, private_cache):
    long = "A: " + "This line is long enough for its own value file. " * 4 + "\nB: " + "And so is this one. " * 9 + "\n"
    script = write_script(long)
    assert cli_render(script, tmp_path / "1.wav").exit_code == 0
    files = sorted(private_cache.rglob("*.val"))
    assert len(files) == 2
    files[1].write_bytes(files[0].read_bytes())
    result = cli_render(script, tmp_path / "2.wav", "--force")
    assert result.exit_code == 0, result.output
    assert len(warnings_about(result, "was corrupted")) == 1
    assert "1 synthesized, 1 cached" in result.output and len(tone_backend.calls) == 3
    assert (tmp_path / "1.wav").read_bytes() == (tmp_path / "2.wav").read_bytes()


def test_peek_answers_as_in_does_without_opening_diskcache(tmp_path, mounts):
    keys = fill_cache(tmp_path / "c", count=20)
    absent = [make_key("tone", "f", {}, f"absent {i}") for i in range(5)]
    with AudioCache(tmp_path / "c") as cache:          # a new process's cache: diskcache not opened yet
        assert cache.peek([*keys, *absent]) == [True] * 20 + [False] * 5
        assert not cache.opened                        # answered by a plain read-only query
        assert [key in cache for key in [*keys, *absent]] == [True] * 20 + [False] * 5
        assert cache.opened
        assert cache.peek([keys[0], absent[0]]) == [True, False]      # diskcache open now: asked directly
    mounts.read_only(tmp_path / "c")
    with AudioCache(tmp_path / "c") as cache:
        assert cache.peek([keys[0], absent[0]]) == [True, False]


def test_peek_makes_no_cache_where_there_is_none(tmp_path):
    with AudioCache(tmp_path / "none") as cache:
        assert cache.peek([make_key("tone", "f", {}, "x")]) == [False]
    assert not (tmp_path / "none").exists()


def test_peek_on_a_damaged_database_heals_it_as_in_does(tmp_path, caplog):
    keys = fill_cache(tmp_path / "c", count=20)
    damage(tmp_path / "c" / "cache.db", "random bytes")
    with AudioCache(tmp_path / "c") as cache, caplog.at_level("WARNING", logger="dialog_tts"):
        assert cache.peek(keys[:3]) == [False] * 3
    assert sum("was damaged" in r.getMessage() for r in caplog.records) == 1


def test_the_mixers_readings_are_kept_apart_from_the_lines_and_cleared_with_them(
        write_script, tone_backend, tmp_path, private_cache):
    """A render keeps its true-peak readings in the cache's analysis folder: not entries (``cache info``
    counts the lines), read back by the next render of the same lines (the folder does not grow), and
    removed by ``cache clear``."""
    script = write_script("A: Hello there.\nB: Hi.\nA: Bye now.\n")
    render(script, tmp_path / "1.wav")
    analysis = private_cache / "analysis"
    with diskcache.Cache(str(analysis)) as kept:
        assert len(kept) == 3
    render(script, tmp_path / "2.wav", lufs=-16)
    with diskcache.Cache(str(analysis)) as kept:
        assert len(kept) == 3
    runner = CliRunner()
    assert "entries:  3" in runner.invoke(main, ["cache", "info"]).output
    cleared = runner.invoke(main, ["cache", "clear"])
    assert cleared.exit_code == 0 and "3 entries" in cleared.output, cleared.output
    assert not analysis.exists()


def test_an_analysis_folder_that_cannot_be_opened_only_costs_the_readings(write_script, tone_backend, tmp_path):
    script = write_script("A: Hello there.\nB: Hi.\n")
    folder = tmp_path / "cache"
    render(script, tmp_path / "1.wav", cache_dir=folder)
    (folder / "analysis").rename(tmp_path / "aside")
    (folder / "analysis").write_text("not a folder")          # the analysis folder cannot be opened
    result = render(script, tmp_path / "2.wav", cache_dir=folder, lufs=-16)
    assert result.path.exists() and (folder / "analysis").read_text() == "not a folder"
