"""Kokoro's voices measured the way the suite judges them: pocketsphinx WER, median F0, timbre.

Used by tests/test_kokoro_voices.py (the palette's bounds) and run as a script to refresh the
figures ``dialog-tts voices`` shows (``dialog_tts/data/kokoro/voices.json``):

    python tests/kokoro_measure.py figures.jsonl   # every English voice, two processes, one thread each

The figures are of one onnxruntime thread per call (Kokoro's output depends slightly on the thread
count), on the held-out sentences the suite uses (:data:`SENTENCES`); the real-time factors are measured
after them, one voice after another in one process (:func:`measure_rtf`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
#: The held-out sentences measured (the first ones of the section): enough words that one misheard
#: word is about 0.7 % of WER, few enough for the suite to measure every palette voice in CI.
SENTENCES = 16
#: The suite measures every palette voice on the first eight of them (67 words): the bounds' check
#: in CI's time; the figures shown come from all sixteen.
SUITE_SENTENCES = 8
#: ...except a British voice's WER, which the suite reads on all sixteen (135 words). British voices read
#: 7-27 % under the American recognizer, where 67 words leave a large spread, and each is judged against
#: one other voice of its sex: on a 2-core AMD EPYC without AVX-512 (onnxruntime's kernels, so Kokoro's
#: samples, differ with the CPU), bm_fable read 11 of the first 67 words wrong and bm_george 5, over the
#: 2x bound by one word, while on all 135 they read 14 and 12.
SUITE_WER_SENTENCES = {"american": SUITE_SENTENCES, "british": SENTENCES}
PITCH_CLIPS = 8      # the median F0 is taken over the first eight sentences
N_MFCC = 13


def timbre(samples: np.ndarray, rate: int) -> np.ndarray:
    """The voice's mean MFCCs 1-12 over its voiced frames (librosa): where its spectral envelope sits."""
    import librosa

    x = np.asarray(samples, dtype=np.float32)
    mfcc = librosa.feature.mfcc(y=x, sr=rate, n_mfcc=N_MFCC, n_fft=1024, hop_length=240)
    energy = librosa.feature.rms(y=x, frame_length=1024, hop_length=240)[0]
    voiced = energy > 0.1 * energy.max()
    return mfcc[1:, voiced[: mfcc.shape[1]]].mean(axis=1)


def measure(name: str, count: int = SENTENCES, wer_count: int | None = None) -> dict:
    """One voice on the first *count* sentences: WER, errors, words, median F0, timbre (two halves, for its
    own spread); the WER, errors and words on the first *wer_count* instead where given (at least *count*).
    Its real-time factor is measured apart, with no recognizer beside it (:func:`measure_rtf`)."""
    import jiwer

    from dialog_tts import backends
    from dialog_tts.script.voice import Voice
    from measure import Recognizer, median_f0, sentences, words

    backend = backends.get_backend("kokoro").bind({"threads": 1}, workers=1)
    voice = backend.resolve(Voice(name, "kokoro"))
    recognize = Recognizer()
    texts = sentences()[:max(count, wer_count or count)]
    heard, clips = [], []
    for text in texts:
        clip = backend.synthesize(text, voice)
        heard.append(words(recognize(clip.samples, clip.sample_rate)))
        clips.append(clip)
    rate = clips[0].sample_rate
    audio = [c.samples for c in clips[:count]]
    scored = jiwer.process_words([words(t) for t in texts], heard)
    half = len(audio) // 2
    return {"name": name, "gender": backend.voice_gender(name), "wer": round(scored.wer, 4),
            "errors": scored.substitutions + scored.deletions + scored.insertions,
            "words": sum(len(words(t).split()) for t in texts),
            "f0": round(median_f0(np.concatenate(audio[:PITCH_CLIPS]), rate), 1),
            "timbre": timbre(np.concatenate(audio), rate).round(3).tolist(),
            "timbre_halves": [timbre(np.concatenate(audio[:half]), rate).round(3).tolist(),
                              timbre(np.concatenate(audio[half:]), rate).round(3).tolist()]}


#: The bounds a palette voice must meet (issue 25, item 4), and how many voices of each group it keeps.
WER_RATIO, WER_FLOOR = 2.0, 0.12
WOMEN_ABOVE_HZ, MEN_BELOW_HZ = 145.0, 160.0
KEEP = {"american": 6, "british": 2}     # per sex: six American women and men, two British of each
GRADES = ["A", "A-", "B+", "B", "B-", "C+", "C", "C-", "D+", "D", "D-", "F+", "F"]


def wer_bound(rows: list[dict], accent: str, gender: str) -> float:
    """The WER a palette voice of *accent* and *gender* may have: 2x the best of those *rows*, or 12 %.

    American voices share one bound (the best American voice's, of either sex, as issue 25 sets it);
    British voices speak British phonemes, which pocketsphinx's American model reads worse, the women's
    far worse than the men's, so each is judged against the best British voice of its own sex.
    """
    group = [r for r in rows if r["accent"] == accent and (accent == "american" or r["gender"] == gender)]
    return max(WER_RATIO * min(r["wer"] for r in group), WER_FLOOR)


def in_pitch_range(row: dict) -> bool:
    return row["f0"] > WOMEN_ABOVE_HZ if row["gender"] == "female" else row["f0"] < MEN_BELOW_HZ


def choose_palette(table: list[dict]) -> list[str]:
    """The palette from measured voices: those within their WER bound (:func:`wer_bound`) and their sex's
    pitch range; American voices first, each accent by grade, then WER, at most :data:`KEEP` of each sex."""
    palette: list[str] = []
    candidates = [r for r in table if in_pitch_range(r)]
    for accent, keep in KEEP.items():
        passing = sorted((r for r in candidates if r["accent"] == accent
                          and r["wer"] <= wer_bound(candidates, accent, r["gender"])),
                         key=lambda r: (GRADES.index(r["grade"]), r["wer"]))
        chosen = {r["name"] for sex in ("female", "male") for r in [p for p in passing if p["gender"] == sex][:keep]}
        palette += [r["name"] for r in passing if r["name"] in chosen]
    return palette


def _init(model_cache: str | None) -> None:
    sys.path.insert(0, str(HERE))
    if model_cache:
        os.environ["DIALOG_TTS_MODEL_CACHE"] = model_cache


def measure_all(names: list[str], model_cache: str | None = None, processes: int = 2,
                count: int = SENTENCES, wer_counts: list[int | None] | None = None) -> list[dict]:
    """Each voice whole in one of *processes* spawned processes (pocketsphinx holds the GIL); *wer_counts*,
    where given, is each voice's *wer_count* (:func:`measure`)."""
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init, initargs=(model_cache,)) as pool:
        return list(pool.map(measure, names, [count] * len(names), wer_counts or [None] * len(names)))


def main(out: Path) -> None:
    """Measure every voice not yet in *out* (JSON lines, one voice each, appended as each is done),
    then write the figures into voices.json."""
    from dialog_tts.backends import kokoro

    path = Path(kokoro.__file__).parents[1] / "data" / "kokoro" / "voices.json"
    table = json.loads(path.read_text(encoding="utf-8"))
    done = {json.loads(line)["name"] for line in out.read_text(encoding="utf-8").splitlines()} if out.exists() else set()
    todo = [row["name"] for row in table["voices"] if row["name"] not in done]
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init, initargs=(None,)) as pool:
        for found in pool.map(measure, todo):
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(found) + "\n")
    rows = {r["name"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    rtf = measure_rtf()
    for row in table["voices"]:
        found = rows[row["name"]]
        row.update(wer=found["wer"], f0=found["f0"], rtf=rtf[row["name"]])
    table["palette"] = choose_palette(table["voices"])
    table.pop("note", None)
    path.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")


def markdown() -> str:
    """voices.json as a markdown table (docs/voices.md carries it): every English voice, palette voices first."""
    from dialog_tts.backends import kokoro

    palette = kokoro.palette_names()
    rows = ["| voice | sex | accent | grade | WER | median F0 | real-time factor | in the default cast |",
            "|---|---|---|---|---|---|---|---|"]
    voices = sorted(kokoro.catalogue().values(), key=lambda v: (v.name not in palette,
                                                                 palette.index(v.name) if v.name in palette else 0))
    for v in voices:
        rows.append(f"| `{v.name}` | {v.gender} | {v.accent} | {v.grade} | {v.wer:.1%} | {v.f0:.0f} Hz | "
                    f"{v.rtf:.2f} | {palette.index(v.name) + 1 if v.name in palette else 'no'} |")
    return "\n".join(rows)


def measure_rtf(count: int = 4) -> dict[str, float]:
    """Every voice's real-time factor on the first *count* held-out sentences, one voice after another in
    this process with one thread (a quieter figure than :func:`measure`'s, which runs beside the recognizer)."""
    from dialog_tts import backends
    from dialog_tts.backends import kokoro
    from dialog_tts.script.voice import Voice
    from measure import sentences

    backend = backends.get_backend("kokoro").bind({"threads": 1}, workers=1)
    texts = sentences()[:count]
    backend.synthesize("Warm up.", Voice("af_heart", "kokoro"))
    found = {}
    for name in kokoro.catalogue():
        voice = Voice(name, "kokoro")
        start = time.perf_counter()
        audio = sum(backend.synthesize(text, voice).duration for text in texts)
        found[name] = round((time.perf_counter() - start) / audio, 3)
    return found


if __name__ == "__main__":
    _init(None)
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "kokoro_measured.jsonl"))
