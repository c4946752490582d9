"""Tiny random Qwen3-TTS checkpoints that load through the real ``qwen_tts`` code.

``build_tiny_checkpoint(directory, kind)`` writes a directory laid out like a
real ``Qwen/Qwen3-TTS-12Hz-*`` snapshot (``config.json``, ``model.safetensors``,
text-tokenizer files, ``generation_config.json`` and ``speech_tokenizer/`` with
the 12 Hz codec), about 7 MB and ~1.8 M random parameters, so that
``qwen_tts.Qwen3TTSModel.from_pretrained(path, device_map="cpu",
dtype=torch.float32)`` and its ``generate_*`` methods run on CPU in a fraction
of a second.  ``kind`` is the checkpoint's ``tts_model_type``:
``"custom_voice"``, ``"base"`` or ``"voice_design"`` -- the only field
qwen_tts uses to tell the three model types apart.

The output is noise, but audible (decoder weights are re-initialised), it
depends on the inputs (speaker, language, text, instruct, reference audio all
change the codes under one seed), and its length is exactly
``samples_for(max_new_tokens)`` = (max_new_tokens - 1) * 1920 samples at
24 kHz: the talker never emits the codec end-of-speech token.

Importing this module needs nothing beyond torch/transformers; the builders
import ``qwen_tts`` (after registering the torchaudio stand-ins).

Run ``python tests/qwen_tiny.py`` for a self-check of all three kinds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KINDS = ("custom_voice", "base", "voice_design")

SAMPLE_RATE = 24000
SAMPLES_PER_FRAME = 1920  # 12.5 frames a second
DEFAULT_MAX_NEW_TOKENS = 24  # -> 23 frames = 44160 samples = 1.84 s (see frames_for)

# Speakers of the real 12Hz CustomVoice checkpoints (config keys are lower case;
# qwen_tts lower-cases names before looking them up).
SPEAKERS = ("vivian", "serena", "uncle_fu", "dylan", "eric", "ryan", "aiden", "ono_anna", "sohee")
SPEAKER_DIALECTS = {"dylan": "beijing_dialect", "eric": "sichuan_dialect"}
LANGUAGES = ("chinese", "english", "german", "italian", "portuguese", "spanish", "japanese", "korean",
             "french", "russian")
DIALECTS = ("beijing_dialect", "sichuan_dialect")

# Text tokenizer: 256 byte-level tokens, then these (ids 256...).
_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|tts_pad|>", "<|tts_text_bos|>",
                   "<|tts_text_eod|>")
_PLAIN_ADDED_TOKENS = ("assistant", "user")  # "<|im_start|>assistant\n" must be exactly 3 tokens
_TEXT_VOCAB_SIZE = 272

# Codec ids (talker vocabulary 3072; generation suppresses ids 2048..3071 except EOS).
_CODEC_VOCAB_SIZE = 3072
_CODEC_IDS = dict(codec_pad_id=2148, codec_bos_id=2149, codec_eos_token_id=2150, codec_think_id=2154,
                  codec_nothink_id=2155, codec_think_bos_id=2156, codec_think_eos_id=2157)
_LANGUAGE_IDS = {name: 2050 + i for i, name in enumerate(LANGUAGES + DIALECTS)}
_SPEAKER_IDS = {name: 3000 + i for i, name in enumerate(SPEAKERS)}

_HIDDEN = 16  # talker hidden size == speaker embedding size (enc_dim)
_NUM_CODE_GROUPS = 16
_CODEBOOK_SIZE = 2048

GENERATION_DEFAULTS: dict[str, Any] = {
    "do_sample": True,
    "repetition_penalty": 1.05,
    "temperature": 0.9,
    "top_p": 1.0,
    "top_k": 50,
    "subtalker_dosample": True,
    "subtalker_temperature": 0.9,
    "subtalker_top_k": 50,
    "subtalker_top_p": 1.0,
    "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
}


def frames_for(max_new_tokens: int) -> int:
    """Codec frames one item yields: the talker's first sampled token comes from
    the prefill step, which carries no residual codes, so qwen_tts returns
    ``max_new_tokens - 1`` frames (these checkpoints never emit EOS)."""
    return max(int(max_new_tokens) - 1, 0)


def samples_for(max_new_tokens: int) -> int:
    """Waveform length of one item from generate_custom_voice / generate_voice_design /
    x-vector-only generate_voice_clone at ``max_new_tokens``."""
    return frames_for(max_new_tokens) * SAMPLES_PER_FRAME


def _import_qwen_tts() -> Any:
    from dialog_tts.backends.qwen_compat import ensure_torchaudio

    ensure_torchaudio()
    import qwen_tts

    return qwen_tts


def _text_token_ids() -> dict[str, int]:
    names = _SPECIAL_TOKENS + _PLAIN_ADDED_TOKENS
    return {name: 256 + i for i, name in enumerate(names)}


def _write_text_tokenizer(directory: Path) -> dict[str, int]:
    """Byte-level BPE without merges, wrapped as a Qwen2TokenizerFast inside a Qwen3TTSProcessor."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    byte_chars = bytes_to_unicode()
    vocab = {byte_chars[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    ids = _text_token_ids()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in _PLAIN_ADDED_TOKENS])
    for name, expected in ids.items():
        assert tok.token_to_id(name) == expected, (name, tok.token_to_id(name), expected)
    fast = Qwen2TokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|endoftext|>",
        unk_token=None,
        pad_token="<|endoftext|>",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    _import_qwen_tts()
    from qwen_tts.core.models import Qwen3TTSProcessor

    Qwen3TTSProcessor(tokenizer=fast).save_pretrained(str(directory))
    return ids


def _config_dict(kind: str, token_ids: dict[str, int], model_size: str) -> dict[str, Any]:
    custom = kind == "custom_voice"
    code_predictor = {
        "vocab_size": _CODEBOOK_SIZE,
        "hidden_size": _HIDDEN,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "max_position_embeddings": 64,
        "num_code_groups": _NUM_CODE_GROUPS,
        "rope_theta": 10000,
    }
    talker = {
        "vocab_size": _CODEC_VOCAB_SIZE,
        "hidden_size": _HIDDEN,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "max_position_embeddings": 4096,
        "rope_theta": 10000,
        # multimodal RoPE like the real talker; sections sum to head_dim / 2
        "rope_scaling": {"rope_type": "default", "mrope_section": [4, 2, 2], "interleaved": True},
        "num_code_groups": _NUM_CODE_GROUPS,
        "text_hidden_size": _HIDDEN,
        "text_vocab_size": _TEXT_VOCAB_SIZE,
        **_CODEC_IDS,
        "codec_language_id": dict(_LANGUAGE_IDS),
        "spk_id": {name: _SPEAKER_IDS[name] for name in SPEAKERS} if custom else {},
        "spk_is_dialect": {name: SPEAKER_DIALECTS.get(name, False) for name in SPEAKERS} if custom else {},
        "code_predictor_config": code_predictor,
    }
    speaker_encoder = {
        "mel_dim": 128,  # extract_speaker_embedding always computes 128 mel bins
        "enc_dim": _HIDDEN,  # the x-vector is fed to the talker as one codec-embedding slot
        "enc_channels": [16, 16, 16, 16, 48],  # last == sum of the middle ones
        "enc_kernel_sizes": [5, 3, 3, 3, 1],
        "enc_dilations": [1, 2, 3, 4, 1],
        "enc_attention_channels": 8,
        "enc_res2net_scale": 2,
        "enc_se_channels": 8,
        "sample_rate": SAMPLE_RATE,
    }
    return {
        "architectures": ["Qwen3TTSForConditionalGeneration"],
        "model_type": "qwen3_tts",
        "tokenizer_type": "qwen3_tts_tokenizer_12hz",
        "tts_model_size": model_size,
        "tts_model_type": kind,
        "im_start_token_id": token_ids["<|im_start|>"],
        "im_end_token_id": token_ids["<|im_end|>"],
        "tts_pad_token_id": token_ids["<|tts_pad|>"],
        "tts_bos_token_id": token_ids["<|tts_text_bos|>"],
        "tts_eos_token_id": token_ids["<|tts_text_eod|>"],
        "talker_config": talker,
        "speaker_encoder_config": speaker_encoder,
    }


def _speech_tokenizer_config_dict() -> dict[str, Any]:
    encoder = {  # transformers MimiConfig: 24 kHz in, 12.5 frames a second (960 * 2 = 1920)
        "sampling_rate": SAMPLE_RATE,
        "frame_rate": 12.5,
        "hidden_size": 16,
        "num_filters": 4,
        "upsampling_ratios": [8, 6, 5, 4],
        "codebook_size": _CODEBOOK_SIZE,
        "codebook_dim": 8,
        "vector_quantization_hidden_dimension": 8,
        "num_quantizers": _NUM_CODE_GROUPS,
        "num_semantic_quantizers": 1,
        "upsample_groups": 16,
        "num_hidden_layers": 1,
        "intermediate_size": 32,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "max_position_embeddings": 8000,
        "sliding_window": 250,
        "use_cache": False,
    }
    decoder = {
        "codebook_size": _CODEBOOK_SIZE,
        "codebook_dim": 16,
        "hidden_size": 16,
        "latent_dim": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "max_position_embeddings": 8000,
        "sliding_window": 72,
        "num_quantizers": _NUM_CODE_GROUPS,
        "upsample_rates": [8, 5, 4, 3],
        "upsampling_ratios": [2, 2],
        "decoder_dim": 32,
    }
    return {
        "architectures": ["Qwen3TTSTokenizerV2Model"],
        "model_type": "qwen3_tts_tokenizer_12hz",
        "encoder_config": encoder,
        "decoder_config": decoder,
        "encoder_valid_num_quantizers": _NUM_CODE_GROUPS,
        "input_sample_rate": SAMPLE_RATE,
        "output_sample_rate": SAMPLE_RATE,
        "decode_upsample_rate": SAMPLES_PER_FRAME,
        "encode_downsample_rate": SAMPLES_PER_FRAME,
    }


def _write_speech_tokenizer(directory: Path) -> None:
    import torch
    from transformers import EncodecFeatureExtractor

    _import_qwen_tts()
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model

    directory.mkdir(parents=True, exist_ok=True)
    config = Qwen3TTSTokenizerV2Config(**{k: v for k, v in _speech_tokenizer_config_dict().items()
                                          if k not in ("architectures", "model_type")})
    model = Qwen3TTSTokenizerV2Model(config).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            # Codebooks start at zero: the decoder would output silence and the
            # encoder would map every frame to code 0.
            if name.endswith("_codebook.embedding_sum") or name.endswith("codebook.embed_sum"):
                tensor.copy_(torch.randn_like(tensor))
        _rescale_decoder(model.decoder)
    model.save_pretrained(str(directory), safe_serialization=True)
    EncodecFeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0).save_pretrained(
        str(directory))


def _rescale_decoder(decoder: Any, target_std: float = 0.15) -> None:
    """Variance-preserving conv init, then scale the last conv so the output is clearly audible.

    The decoder's default init (normal, std 0.02) shrinks the signal ~10x per
    conv layer, leaving ~1e-9 at the output.
    """
    import torch
    from torch import nn

    convs = [m for m in decoder.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
    for conv in convs:
        if isinstance(conv, nn.ConvTranspose1d):
            fan_in = conv.in_channels * conv.kernel_size[0] / conv.stride[0]
        else:
            fan_in = conv.in_channels // conv.groups * conv.kernel_size[0]
        conv.weight.normal_(0.0, 1.0 / fan_in ** 0.5)
        if conv.bias is not None:
            conv.bias.zero_()
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, decoder.config.codebook_size, (2, decoder.config.num_quantizers, 20),
                          generator=generator)
    last = convs[-1]
    captured: list = []
    handle = last.register_forward_hook(lambda _m, _i, out: captured.append(out))
    decoder(codes)
    handle.remove()
    std = float(captured[-1].std())
    last.weight.mul_(target_std / max(std, 1e-12))


def _reinit_talker(model: Any, logit_scale: float = 3.0) -> None:
    """Give the talker weights that make its output depend on its input.

    With the default init (normal, std 0.02) a 16-wide talker's logits are
    almost flat and nearly independent of the prompt, so under one seed every
    speaker / text / instruct would sample the same codes.  Here: unit-variance
    embeddings, fan-in-scaled linears, sharper output heads.  The codec EOS row
    of the talker head is zeroed: its logit stays 0 while ~2048 competitors
    have std ~3, so EOS is never among the top-k (k=50) and, even without
    top-k, has probability ~1e-6 a step -- generation always runs to
    ``max_new_tokens``.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        for module in model.talker.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, module.in_features ** -0.5)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, 1.0)
        for layer in model.talker.model.layers:
            # Sharper attention and a stronger attention branch: otherwise a
            # one-slot change in the prompt (the speaker) barely moves the
            # last position's logits and same-seed outputs often coincide.
            layer.self_attn.q_norm.weight.fill_(3.0)
            layer.self_attn.k_norm.weight.fill_(3.0)
            layer.self_attn.o_proj.weight.mul_(3.0)
        for spk_id in (model.config.talker_config.spk_id or {}).values():
            model.talker.model.codec_embedding.weight[spk_id].mul_(3.0)  # louder speaker slot
        model.talker.codec_head.weight.mul_(logit_scale)
        for head in model.talker.code_predictor.lm_head:
            head.weight.mul_(logit_scale)
        model.talker.codec_head.weight[model.config.talker_config.codec_eos_token_id].zero_()


def _reinit_speaker_encoder(model: Any) -> None:
    """He-init the ECAPA-TDNN convs and scale its output to unit variance, so that
    different reference audio gives clearly different x-vectors."""
    import numpy as np
    import torch
    from torch import nn

    encoder = model.speaker_encoder
    if encoder is None:
        return
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, nn.Conv1d):
                fan_in = module.in_channels // module.groups * module.kernel_size[0]
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.zero_()
        t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
        probes = [np.sin(2 * np.pi * f * t).astype(np.float32) * 0.5 for f in (220.0, 1000.0)]
        embeddings = torch.stack([model.extract_speaker_embedding(p, SAMPLE_RATE) for p in probes])
        encoder.fc.weight.div_(float(embeddings.std()) + 1e-12)


def build_tiny_checkpoint(directory: Path, kind: str, *, seed: int = 0, model_size: str = "1b7",
                          max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Path:
    """Write a tiny random Qwen3-TTS checkpoint of ``kind`` into ``directory`` and return it.

    ``kind``: "custom_voice", "base" or "voice_design" (the config's ``tts_model_type``).
    ``model_size`` is the config's ``tts_model_size``; note qwen_tts drops the
    ``instruct`` of ``generate_custom_voice`` when it is a substring of "0b6"
    (the real 0.6B CustomVoice model), so the default is "1b7".
    ``max_new_tokens`` is written into generation_config.json (the default
    qwen_tts uses when a call does not pass one).
    Deterministic for a given seed; the caller's torch RNG state is left untouched.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    import torch

    _import_qwen_tts()
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        token_ids = _write_text_tokenizer(directory)
        config_dict = _config_dict(kind, token_ids, model_size)
        config = Qwen3TTSConfig(**{k: v for k, v in config_dict.items() if k not in ("architectures", "model_type")})
        config.architectures = ["Qwen3TTSForConditionalGeneration"]
        model = Qwen3TTSForConditionalGeneration(config).eval()
        _reinit_talker(model)
        _reinit_speaker_encoder(model)
        model.save_pretrained(str(directory), safe_serialization=True)
        _write_speech_tokenizer(directory / "speech_tokenizer")

    # Qwen3TTSSpeakerEncoderConfig never calls PretrainedConfig.__init__, so
    # save_pretrained writes a bare-bones dict with "model_type": "" that its
    # __init__ then rejects; write config.json from the plain dict instead.
    saved = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    saved["speaker_encoder_config"] = config_dict["speaker_encoder_config"]
    (directory / "config.json").write_text(json.dumps(saved, indent=2, ensure_ascii=False), encoding="utf-8")
    generation = dict(GENERATION_DEFAULTS, max_new_tokens=int(max_new_tokens))
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")
    return directory


def build_all(directory: Path, *, seed: int = 0) -> dict[str, Path]:
    """Build all three kinds under directory/{custom_voice,base,voice_design}."""
    directory = Path(directory)
    return {kind: build_tiny_checkpoint(directory / kind, kind, seed=seed) for kind in KINDS}


def load(path: Path) -> Any:
    """``Qwen3TTSModel.from_pretrained(path, device_map="cpu", dtype=torch.float32)``."""
    import torch

    qwen_tts = _import_qwen_tts()
    return qwen_tts.Qwen3TTSModel.from_pretrained(str(path), device_map="cpu", dtype=torch.float32)


def chirp(seconds: float = 2.0, sr: int = SAMPLE_RATE) -> Any:
    """A float32 test reference: a 200 -> 2000 Hz chirp at -6 dBFS."""
    import numpy as np

    t = np.arange(int(seconds * sr)) / sr
    f0, f1 = 200.0, 2000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    return (0.5 * np.sin(phase)).astype(np.float32)


def _self_check() -> None:  # pragma: no cover - run by hand
    import tempfile
    import time

    import numpy as np
    import soundfile as sf
    import torch

    from dialog_tts.backends.qwen_compat import ensure_torchaudio

    ensure_torchaudio()
    from qwen_tts import VoiceClonePromptItem

    # The models are tiny: a second intra-op thread buys nothing and, on 2
    # shared cores under load, made a batch of 2 swing between 0.8 and 5.8 s.
    torch.set_num_threads(1)

    def audible(wavs: list, n: int) -> None:
        assert len(wavs) == n, len(wavs)
        for w in wavs:
            assert isinstance(w, np.ndarray) and w.dtype == np.float32 and w.ndim == 1, (type(w), w.dtype)
            assert float(np.abs(w).max()) > 1e-3, float(np.abs(w).max())

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths = build_all(root)
        print(f"build_all: {time.perf_counter() - t0:.2f} s")
        for kind, path in paths.items():
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            print(f"  {kind}: {size / 1e6:.2f} MB, files: {sorted(str(f.relative_to(path)) for f in path.rglob('*') if f.is_file())}")

        models = {}
        for kind, path in paths.items():
            t0 = time.perf_counter()
            models[kind] = load(path)
            print(f"load {kind}: {time.perf_counter() - t0:.2f} s")
            assert models[kind].model.tts_model_type == kind

        # custom voice
        m = models["custom_voice"]
        speakers = m.get_supported_speakers()
        print("speakers:", speakers, "languages:", m.get_supported_languages())
        assert {"vivian", "ryan", "sohee"} <= set(speakers)
        assert {"auto", "english", "chinese", "korean"} <= set(m.get_supported_languages())
        torch.manual_seed(0)
        t0 = time.perf_counter()
        wavs, sr = m.generate_custom_voice(["Hello there.", "A second, longer line of text."],
                                           speaker=["Vivian", "Ryan"], language=["english", "english"],
                                           instruct=["", "whisper"])
        print(f"custom_voice batch of 2: {time.perf_counter() - t0:.2f} s, lengths {[len(w) for w in wavs]}")
        assert sr == SAMPLE_RATE
        audible(wavs, 2)
        assert all(len(w) == samples_for(DEFAULT_MAX_NEW_TOKENS) for w in wavs)
        wavs, sr = m.generate_custom_voice("Scalar call.", speaker="Sohee", language="korean", instruct="happy",
                                           max_new_tokens=8)
        audible(wavs, 1)
        assert len(wavs[0]) == samples_for(8)
        wavs, _ = m.generate_custom_voice("Dialect.", speaker="dylan", language="chinese")
        audible(wavs, 1)

        # base / voice clone
        m = models["base"]
        assert m.get_supported_speakers() == []
        ref = root / "ref.wav"
        sf.write(str(ref), chirp(), SAMPLE_RATE)
        items = m.create_voice_clone_prompt(ref_audio=str(ref), ref_text="reference words")
        assert len(items) == 1 and isinstance(items[0], VoiceClonePromptItem)
        item = items[0]
        assert item.icl_mode and not item.x_vector_only_mode and item.ref_text == "reference words"
        assert tuple(item.ref_spk_embedding.shape) == (_HIDDEN,), item.ref_spk_embedding.shape
        assert tuple(item.ref_code.shape) == (25, _NUM_CODE_GROUPS), item.ref_code.shape
        t0 = time.perf_counter()
        wavs, sr = m.generate_voice_clone(["Line one.", "Line two."], language="english",
                                          voice_clone_prompt=items * 2)
        print(f"voice_clone (ICL) batch of 2: {time.perf_counter() - t0:.2f} s, lengths {[len(w) for w in wavs]}")
        audible(wavs, 2)
        xv = m.create_voice_clone_prompt(ref_audio=(chirp(1.5, 16000), 16000), x_vector_only_mode=True)
        assert xv[0].ref_code is None and xv[0].x_vector_only_mode and not xv[0].icl_mode
        blend = VoiceClonePromptItem(ref_code=None,
                                     ref_spk_embedding=0.3 * item.ref_spk_embedding + 0.7 * xv[0].ref_spk_embedding,
                                     x_vector_only_mode=True, icl_mode=False)
        wavs, sr = m.generate_voice_clone(["Line one.", "Line two.", "Line three."], language=None,
                                          voice_clone_prompt=[xv[0], blend, item])
        audible(wavs, 3)
        assert [len(w) for w in wavs[:2]] == [samples_for(DEFAULT_MAX_NEW_TOKENS)] * 2

        # voice design
        m = models["voice_design"]
        t0 = time.perf_counter()
        wavs, sr = m.generate_voice_design(["Line one.", "Line two."],
                                           instruct=["a calm elderly narrator", "a bright young voice"])
        print(f"voice_design batch of 2: {time.perf_counter() - t0:.2f} s")
        audible(wavs, 2)

        # determinism
        m = models["custom_voice"]
        runs = []
        for _ in range(2):
            torch.manual_seed(123)
            runs.append(m.generate_custom_voice("Same seed.", speaker="ryan", language="english")[0][0])
        assert np.array_equal(runs[0], runs[1])
        greedy = [m.generate_custom_voice("Greedy.", speaker="ryan", language="english", do_sample=False,
                                          subtalker_dosample=False)[0][0] for _ in range(2)]
        assert np.array_equal(greedy[0], greedy[1])
        # a rebuilt checkpoint with the same seed is identical
        again = build_tiny_checkpoint(root / "again", "custom_voice")
        assert (again / "model.safetensors").read_bytes() == (paths["custom_voice"] / "model.safetensors").read_bytes()
        print("self-check OK")


if __name__ == "__main__":  # pragma: no cover
    _self_check()
