"""Qwen voice-clone prompts: computed once per reference, kept in memory and in the disk cache.

A clone voice needs the prompt the model computes from its reference recording
(speech codes and a speaker embedding); a blend averages the embeddings of
several.  Computing one takes a model forward pass, so each is made once per
(model, reference file version, reference text) and stored in the cache's
blobs; a prompt that fails is kept as an error and raised for the lines of
that voice only.  torch and qwen_tts are imported only when a prompt is made.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from dialog_tts.errors import SynthesisError

log = logging.getLogger("dialog_tts")

#: (prompt key, model id, reference file, reference text)
Wanted = tuple[str, str, str, "str | None"]


class ClonePrompts:
    """The prompts of one backend instance (shared by its per-render views)."""

    def __init__(self, create: Callable[[str, str, str | None], Any], torch: Callable[[], Any]) -> None:
        self._create = create                        # (model id, ref, ref_text) -> VoiceClonePromptItem
        self._torch = torch
        self._prompts: dict[str, Any] = {}           # prompt key -> VoiceClonePromptItem
        self._errors: dict[str, Exception] = {}
        self._ref_audio: dict[str, Any] = {}         # file identity -> (samples, rate)

    def prepare(self, wanted: Iterable[Wanted], cache: Any = None) -> None:
        """Make (or load from *cache*) every wanted prompt not made yet; failures are kept."""
        for key, model_id, ref, ref_text in wanted:
            if key in self._prompts or key in self._errors:
                continue
            try:
                self._prompts[key] = self._load_or_create(key, model_id, ref, ref_text, cache)
            except Exception as exc:  # noqa: BLE001 - kept and raised for the lines of that voice
                log.warning("voice-clone prompt for %s failed: %s", ref, exc)
                self._errors[key] = exc

    def get(self, wanted: Wanted) -> Any:
        """The prompt for *wanted* (made now if it was not prepared); SynthesisError if it failed."""
        key = wanted[0]
        if key not in self._prompts and key not in self._errors:
            self.prepare([wanted])
        error = self.error([wanted])
        if error is not None:
            raise error
        return self._prompts[key]

    def error(self, wanted: Iterable[Wanted]) -> SynthesisError | None:
        """Why one of the *wanted* prompts failed (None: all were made)."""
        for key, _model, ref, _text in wanted:
            if key in self._errors:
                return SynthesisError(f"voice-clone prompt for {ref} failed: {self._errors[key]}")
        return None

    def blend(self, parts: Sequence[tuple[str, Any, float]]) -> Any:
        """The weighted average of the speaker embeddings of (key, prompt, weight) parts, kept by spec."""
        blend_key = "blend:" + json.dumps(sorted([key, weight] for key, _item, weight in parts))
        blend = self._prompts.get(blend_key)
        if blend is None:
            from qwen_tts.inference.qwen3_tts_model import VoiceClonePromptItem

            total = sum(w for _k, _i, w in parts)
            embedding = sum(item.ref_spk_embedding * (w / total) for _k, item, w in parts)
            blend = self._prompts[blend_key] = VoiceClonePromptItem(
                ref_code=None, ref_spk_embedding=embedding, x_vector_only_mode=True, icl_mode=False, ref_text=None)
        return blend

    def _load_or_create(self, key: str, model_id: str, ref: str, ref_text: str | None, cache: Any) -> Any:
        torch = self._torch()
        from qwen_tts.inference.qwen3_tts_model import VoiceClonePromptItem

        if cache is not None:
            data = cache.get_blob("qwen-prompt:" + key)
            if data is not None:
                try:
                    return VoiceClonePromptItem(**torch.load(io.BytesIO(data), weights_only=True))
                except Exception as exc:  # noqa: BLE001 - a damaged entry is recomputed
                    log.warning("cached voice-clone prompt for %s was unreadable (%s); recomputing", ref, exc)
        item = self._create(model_id, ref, ref_text)
        if cache is not None:
            buf = io.BytesIO()
            torch.save({"ref_code": item.ref_code, "ref_spk_embedding": item.ref_spk_embedding,
                        "x_vector_only_mode": item.x_vector_only_mode, "icl_mode": item.icl_mode,
                        "ref_text": item.ref_text}, buf)
            cache.put_blob("qwen-prompt:" + key, buf.getvalue())
        return item

    def reference_audio(self, ref: str, identity: list[Any]) -> tuple[Any, int]:
        """A reference file's samples, read once per file version (*identity*: path, size, mtime)."""
        ident = json.dumps(identity)
        cached = self._ref_audio.get(ident)
        if cached is None:
            from dialog_tts.io.audio import decode

            try:
                clip = decode(Path(ref).read_bytes())
            except Exception as exc:
                raise SynthesisError(f"cannot read ref_audio {ref!r}: {exc}") from exc
            cached = self._ref_audio[ident] = (clip.mono(), clip.sample_rate)
        return cached
