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

``build_tiny_checkpoint(directory, kind, size="full")`` (a complete
checkpoint, ~4.5 GB) and ``full_size_model(kind, device=..., dtype=...)`` (a
loaded model built in place, nothing written but configs) give the real
architecture of ``Qwen/Qwen3-TTS-12Hz-1.7B-*`` instead: 1.92 B parameters in
the talker + code predictor, transformers' random init, audible output of
exactly ``samples_for(max_new_tokens)`` samples -- for GPU throughput / memory
benchmarks, too slow for CI.  ``full_size_parameter_counts(kind)`` counts its
parameters on the meta device, ``release(tts)`` frees it.  See
``full_size_model`` for what is and is not like the released checkpoints.

Run ``python tests/qwen_tiny.py --full [KIND [DEVICE]]`` for a smoke check of
the full-size model (default custom_voice, cuda if available).

Importing this module needs nothing beyond torch/transformers; the builders
import ``qwen_tts`` (through dialog_tts.backends.qwen_compat, which stands in for torchaudio
during that import where it cannot load).

Run ``python tests/qwen_tiny.py`` for a self-check of all three kinds.
"""

from __future__ import annotations

import gc
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

KINDS = ("custom_voice", "base", "voice_design")
SIZES = ("tiny", "full")

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

# ---------------------------------------------------------------------------
# Full size: the architecture of Qwen/Qwen3-TTS-12Hz-1.7B-{CustomVoice,VoiceDesign,Base}.
#
# Sources.  Talker / code predictor / speech tokenizer / speaker encoder sizes
# follow the third-party architecture note ivan-digital/qwen3-asr-swift
# docs/tts-model.md ("Component A: Talker", 1.7B column; "Component B: Code
# Predictor"; "Component C: Speech Tokenizer"; "Component D: Speaker
# Encoder"), checked against qwen_tts 0.1.1's own config classes
# (core/models/configuration_qwen3_tts.py, core/tokenizer_12hz/
# configuration_qwen3_tts_tokenizer_v2.py) and against config.json excerpts of
# the released checkpoints quoted by other ports.  Where they disagree:
#   * talker intermediate_size: the note says 8192; this uses 6144.  The 12 Hz
#     talkers are the Qwen3 LLM backbones (0.6B talker == Qwen3-0.6B: 1024
#     hidden, 28 layers, 16/8 heads, 128 head_dim, 3072 MLP; the 1.7B talker
#     matches Qwen3-1.7B, whose MLP is 6144); a Rust port's test that parses
#     the 1.7B-CustomVoice config.json has "intermediate_size": 6144; and the
#     parameter count fits: with 6144 the talker + code predictor are 1.92 B
#     (3.8 GB of bf16 safetensors, ~4.2 GiB with the 0.68 GB codec, as the 1.7B
#     downloads are), with 8192 it would be 2.27 B.  qwen_tts's
#     Qwen3TTSTalkerConfig defaults (hidden 1024, 20 layers, 2 KV heads, codec
#     ids 4196...) describe neither released size, so they are not used.
#   * speech-tokenizer decoder transformer: qwen_tts's decoder-config defaults
#     say hidden 1024 / MLP 3072, the released speech_tokenizer/config.json
#     (quoted verbatim by several ports) says hidden 512, MLP 1024, head_dim 64,
#     codebook_dim 512 (the "1024 -> 512 bottleneck" of the note); the released
#     values are used.  Its semantic_codebook_size (4096) is not read by
#     qwen_tts 0.1.1 and is left out.
#   * code predictor and speaker encoder: qwen_tts's defaults are the note's
#     figures; the code predictor's rope_theta (1e6) and max_position_embeddings
#     (65536) are the released config's.  The speaker encoder's enc_dim must be
#     the talker hidden size (the x-vector fills one codec-embedding slot).
# Token ids are NOT the real ones: the text tokenizer is the tiny byte-level one
# (ids < 272 in a 151936-row embedding), the codec special / language / speaker
# ids are the tiny builder's (all inside the real 3072-entry codec vocabulary).
_FULL_TALKER: dict[str, Any] = {
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000,
    "rms_norm_eps": 1e-6,
    "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20], "interleaved": True},
    "text_hidden_size": 2048,
    "text_vocab_size": 151936,
}
_FULL_CODE_PREDICTOR: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 5,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 65536,
    "rope_theta": 1000000,
    "rms_norm_eps": 1e-6,
}
_FULL_SPEAKER_ENCODER: dict[str, Any] = {
    "enc_dim": _FULL_TALKER["hidden_size"],
    "enc_channels": [512, 512, 512, 512, 1536],
    "enc_attention_channels": 128,
    "enc_res2net_scale": 8,
    "enc_se_channels": 128,
}
_FULL_CODEC_ENCODER: dict[str, Any] = {  # transformers MimiConfig (its defaults, spelled out) at 12.5 Hz
    "hidden_size": 512,
    "num_filters": 64,
    "upsample_groups": 512,
    "codebook_dim": 256,
    "vector_quantization_hidden_dimension": 256,
    "num_quantizers": 32,  # the encoder has 32; encoder_valid_num_quantizers keeps 16
    "num_hidden_layers": 8,
    "intermediate_size": 2048,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "head_dim": 64,
}
_FULL_CODEC_DECODER: dict[str, Any] = {
    "codebook_dim": 512,
    "hidden_size": 512,
    "latent_dim": 1024,
    "intermediate_size": 1024,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "head_dim": 64,
    "decoder_dim": 1536,
}
# Logit std of the full-size talker's codec head (see _prepare_full_model).
_FULL_LOGIT_STD = 3.0

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
    from dialog_tts.backends.qwen_compat import import_qwen_tts

    return import_qwen_tts()


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


def _config_dict(kind: str, token_ids: dict[str, int], model_size: str, size: str = "tiny") -> dict[str, Any]:
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
    if size == "full":
        code_predictor.update(_FULL_CODE_PREDICTOR)
        talker.update(_FULL_TALKER)
        speaker_encoder.update(_FULL_SPEAKER_ENCODER)
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


def _speech_tokenizer_config_dict(size: str = "tiny") -> dict[str, Any]:
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
    if size == "full":
        encoder.update(_FULL_CODEC_ENCODER)
        decoder.update(_FULL_CODEC_DECODER)
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


def _speech_tokenizer_config(size: str = "tiny") -> Any:
    _import_qwen_tts()
    from qwen_tts.core import Qwen3TTSTokenizerV2Config

    config = Qwen3TTSTokenizerV2Config(**{k: v for k, v in _speech_tokenizer_config_dict(size).items()
                                          if k not in ("architectures", "model_type")})
    config.architectures = ["Qwen3TTSTokenizerV2Model"]
    return config


def _randomize_codebooks(model: Any) -> None:
    """Codebooks start at zero: the decoder would output silence and the
    encoder would map every frame to code 0."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("_codebook.embedding_sum") or name.endswith("codebook.embed_sum"):
                tensor.copy_(torch.randn_like(tensor))


def _random_model(model_class: Any, config: Any, **kwargs: Any) -> Any:
    """A *model_class* of random weights from *config*, by transformers' public ``AutoModel.from_config``
    (*kwargs*: its ``dtype`` and ``attn_implementation``), the class registered for its config as qwen_tts
    registers it when it loads a checkpoint."""
    from transformers import AutoModel

    AutoModel.register(type(config), model_class, exist_ok=True)
    return AutoModel.from_config(config, **kwargs)


def _new_speech_tokenizer_model(config: Any, *, device: Any = "cpu", dtype: Any = None) -> Any:
    """A random 12 Hz speech tokenizer (encoder + decoder) built directly on ``device`` in ``dtype``
    (None: float32), with random codebooks and an audible decoder."""
    _import_qwen_tts()
    from qwen_tts.core import Qwen3TTSTokenizerV2Model

    with torch.device(device):
        model = _random_model(Qwen3TTSTokenizerV2Model, config, dtype=dtype)
    model.to(device).eval()
    _randomize_codebooks(model)
    with torch.no_grad():
        _rescale_decoder(model.decoder)
    return model


def _write_speech_tokenizer(directory: Path, size: str = "tiny", weights: bool = True) -> None:
    import torch
    from transformers import EncodecFeatureExtractor

    _import_qwen_tts()
    from qwen_tts.core import Qwen3TTSTokenizerV2Model

    directory.mkdir(parents=True, exist_ok=True)
    if size == "tiny":
        config = _speech_tokenizer_config(size)
        model = Qwen3TTSTokenizerV2Model(config).eval()
        _randomize_codebooks(model)
        with torch.no_grad():
            _rescale_decoder(model.decoder)
        model.save_pretrained(str(directory), safe_serialization=True)
    elif weights:
        # float32 like the released speech_tokenizer/model.safetensors (~0.68 GB)
        model = _new_speech_tokenizer_model(_speech_tokenizer_config(size))
        model.save_pretrained(str(directory), safe_serialization=True)
        del model
    else:
        _speech_tokenizer_config(size).save_pretrained(str(directory))
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
    decoder(codes.to(last.weight.device))
    handle.remove()
    std = float(captured[-1].float().std())
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
                          max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, size: str = "tiny",
                          weights: bool = True) -> Path:
    """Write a random Qwen3-TTS checkpoint of ``kind`` into ``directory`` and return it.

    ``kind``: "custom_voice", "base" or "voice_design" (the config's ``tts_model_type``).
    ``model_size`` is the config's ``tts_model_size``; note qwen_tts drops the
    ``instruct`` of ``generate_custom_voice`` when it is a substring of "0b6"
    (the real 0.6B CustomVoice model), so the default is "1b7".
    ``max_new_tokens`` is written into generation_config.json (the default
    qwen_tts uses when a call does not pass one).
    Deterministic for a given seed; the caller's torch RNG state is left untouched.

    ``size``: "tiny" (the default: ~7 MB, ~1.8 M parameters, see the module
    docstring) or "full" (the Qwen3-TTS-12Hz-1.7B architecture, see
    ``full_size_model``).  With "full", ``weights=True`` writes a complete
    checkpoint that ``qwen_tts.Qwen3TTSModel.from_pretrained`` loads: a 3.83 GB
    bf16 ``model.safetensors`` (built on CPU in bf16: 38 s on 2 cores, peak
    RSS 4.3 GB) and a 0.68 GB float32 ``speech_tokenizer/model.safetensors``
    (the released files' sizes); with
    ``weights=False`` only the config, tokenizer and generation files (~40 kB),
    which is what ``full_size_model`` builds its model from.  ``weights`` is
    ignored for "tiny".
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")
    import torch

    _import_qwen_tts()
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        token_ids = _write_text_tokenizer(directory)
        config_dict = _config_dict(kind, token_ids, model_size, size)
        config = Qwen3TTSConfig(**{k: v for k, v in config_dict.items() if k not in ("architectures", "model_type")})
        config.architectures = ["Qwen3TTSForConditionalGeneration"]
        if size == "tiny":
            model = Qwen3TTSForConditionalGeneration(config).eval()
            _reinit_talker(model)
            _reinit_speaker_encoder(model)
            model.save_pretrained(str(directory), safe_serialization=True)
            _write_speech_tokenizer(directory / "speech_tokenizer")
        elif weights:
            model = _new_full_model(config, device="cpu", dtype=torch.bfloat16)
            model.save_pretrained(str(directory), safe_serialization=True)
            del model
            gc.collect()
            _write_speech_tokenizer(directory / "speech_tokenizer", size)
        else:
            config.save_pretrained(str(directory))
            _write_speech_tokenizer(directory / "speech_tokenizer", size, weights=False)

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


# ---------------------------------------------------------------------------
# Full size (benchmarks; too slow for CI)


def _new_full_model(config: Any, *, device: Any = "cpu", dtype: Any = torch.bfloat16,
                    attn_implementation: str | None = None) -> Any:
    """``Qwen3TTSForConditionalGeneration(config)`` with transformers' random init,
    allocated and initialised directly on ``device`` in ``dtype`` (no CPU copy,
    no safetensors), in eval mode, then ``_prepare_full_model``."""
    _import_qwen_tts()
    from qwen_tts.core.models import Qwen3TTSForConditionalGeneration

    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    with torch.device(device):
        model = _random_model(Qwen3TTSForConditionalGeneration, config, **kwargs)
    model.to(device).eval()
    _prepare_full_model(model)
    return model


def _prepare_full_model(model: Any) -> None:
    """Make generation always run to ``max_new_tokens``, as the tiny builder's talker does.

    transformers' init (normal, std 0.02) is kept everywhere, except the talker's
    codec head: it is scaled so that its logits have std ``_FULL_LOGIT_STD``
    (the final RMSNorm gives unit-RMS hidden states, so logit std = weight std *
    sqrt(hidden)), and its codec-EOS row is zeroed.  The EOS logit stays 0
    while ~2048 competitors have std 3: never in the top-k (k=50) and, without
    top-k, probability ~1e-5 a step; greedy never picks it either.  With the
    plain init (logit std 0.9) EOS would be sampled about once every 2000
    steps, so items would stop at random lengths and batched / serial runs
    would do different amounts of work.
    """
    head = model.talker.codec_head.weight
    with torch.no_grad():
        weight_std = float(head.float().std())
        head.mul_(_FULL_LOGIT_STD / (weight_std * head.shape[1] ** 0.5))
        head[model.config.talker_config.codec_eos_token_id].zero_()


def full_size_config(kind: str) -> Any:
    """The ``Qwen3TTSConfig`` of the full-size (1.7B) model of ``kind``, without writing anything."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    _import_qwen_tts()
    from qwen_tts.core.models import Qwen3TTSConfig

    config_dict = _config_dict(kind, _text_token_ids(), "1b7", "full")
    config = Qwen3TTSConfig(**{k: v for k, v in config_dict.items() if k not in ("architectures", "model_type")})
    config.architectures = ["Qwen3TTSForConditionalGeneration"]
    return config


def full_size_parameter_counts(kind: str) -> dict[str, int]:
    """Parameter counts of the full-size model of ``kind``, by component, from a
    copy built on the ``meta`` device (no memory, ~1 s).

    Keys: ``talker.text_embedding``, ``talker.codec_embedding``, ``talker.layers``
    (decoder layers + final norm), ``talker.text_projection``,
    ``talker.codec_head``, ``code_predictor.codec_embedding``,
    ``code_predictor.layers``, ``code_predictor.lm_head``,
    ``code_predictor.small_to_mtp_projection``, ``talker`` (all of the above),
    ``speaker_encoder`` (0 unless "base"), ``model`` (what model.safetensors
    holds: talker + speaker encoder), ``speech_tokenizer.encoder``,
    ``speech_tokenizer.decoder``, ``speech_tokenizer`` and ``total``.
    Parameters only: the Mimi encoder's codebooks are buffers (not counted),
    the decoder's are parameters (counted).
    """
    _import_qwen_tts()
    from qwen_tts.core import Qwen3TTSTokenizerV2Model
    from qwen_tts.core.models import Qwen3TTSForConditionalGeneration

    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters()) if module is not None else 0

    with torch.device("meta"):
        model = Qwen3TTSForConditionalGeneration(full_size_config(kind))
        codec = Qwen3TTSTokenizerV2Model(_speech_tokenizer_config("full"))
    talker, predictor = model.talker, model.talker.code_predictor
    counts = {
        "talker.text_embedding": count(talker.model.text_embedding),
        "talker.codec_embedding": count(talker.model.codec_embedding),
        "talker.layers": count(talker.model.layers) + count(talker.model.norm),
        "talker.text_projection": count(talker.text_projection),
        "talker.codec_head": count(talker.codec_head),
        "code_predictor.codec_embedding": count(predictor.model.codec_embedding),
        "code_predictor.layers": count(predictor.model.layers) + count(predictor.model.norm),
        "code_predictor.lm_head": count(predictor.lm_head),
        "code_predictor.small_to_mtp_projection": count(predictor.small_to_mtp_projection),
        "talker": count(talker),
        "speaker_encoder": count(model.speaker_encoder),
        "model": count(model),
        "speech_tokenizer.encoder": count(codec.encoder),
        "speech_tokenizer.decoder": count(codec.decoder),
        "speech_tokenizer": count(codec),
    }
    counts["total"] = counts["model"] + counts["speech_tokenizer"]
    assert sum(v for k, v in counts.items() if k.startswith(("talker.", "code_predictor."))) == counts["talker"]
    return counts


def full_size_model(kind: str, *, device: Any = "cpu", dtype: Any = torch.bfloat16,
                    directory: Path | None = None, seed: int = 0, attn_implementation: str | None = None,
                    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Any:
    """A loaded ``qwen_tts.Qwen3TTSModel`` of ``kind`` at the real 1.7B size, with random weights.

    What it builds: the architecture of ``Qwen/Qwen3-TTS-12Hz-1.7B-{CustomVoice,
    VoiceDesign,Base}`` (see ``_FULL_TALKER`` ff. for the sizes and their
    sources) -- talker 2048 hidden x 28 layers, code predictor 1024 x 5 layers
    with 15 LM heads, 151936 x 2048 text embedding, the 12 Hz speech tokenizer
    (Mimi encoder, 8-layer decoder transformer + 1536-wide vocoder) and, for
    "base", the ECAPA-TDNN speaker encoder (enc_dim 2048): 1.917 B parameters
    in the talker + code predictor, 2.070 B with the speech tokenizer (2.082 B
    for "base"; ``full_size_parameter_counts``).

    How: ``build_tiny_checkpoint(directory, kind, size="full", weights=False)``
    writes only the config / tokenizer / generation files; the model and the
    speech tokenizer are then instantiated from those configs directly on
    ``device`` in ``dtype`` (transformers' random init, run on the device;
    nothing is written or read as safetensors), and wrapped the way
    ``Qwen3TTSModel.from_pretrained(directory, device_map=device, dtype=dtype,
    attn_implementation=...)`` wraps a real checkpoint: the speech tokenizer
    also gets ``dtype`` (as from_pretrained passes its dtype on), but not
    ``attn_implementation`` (from_pretrained drops it for the tokenizer).
    ``directory`` (None: a temporary one, deleted before returning) keeps those
    files; ``build_tiny_checkpoint(..., size="full")`` writes a complete
    checkpoint instead, for timing the real ``from_pretrained`` path.

    Cost, measured on CPU (2 cores, AVX512-bf16, 24 GB): 34-40 s, almost all
    of it transformers' init (Linear kaiming-uniform, then normal) of 1.9 B
    values on the CPU; peak RSS 4.9 GB in bf16 (9.3 GB in float32) -- the
    weights (bf16: 3.83 GB model + 0.34 GB speech tokenizer) and ~0.5 GB of
    libraries, no staging copy.  On a GPU the same init runs on the device
    (expect seconds) and the CPU never holds the weights.  For comparison,
    ``build_tiny_checkpoint(..., size="full")`` took 38 s (peak 4.3 GB) to
    write 3.83 GB + 0.68 GB, and ``from_pretrained`` of it 1.8 s (mmap) plus
    page-in; its talker weights equal this function's CPU-bf16 ones for the
    same seed.

    Differences from the released checkpoints (relevant to benchmarks):
      * random weights, so output is noise; codebooks are random and the
        decoder rescaled so the audio is audible (not silent);
      * generation never stops early (``_prepare_full_model``): every item runs
        exactly ``max_new_tokens`` talker steps and yields
        ``samples_for(max_new_tokens)`` samples -- choose ``max_new_tokens``
        per line to mimic real utterance lengths (~12.5 per second of speech);
      * the text tokenizer is the tiny byte-level one: a line costs ~1 token a
        byte instead of ~1 per 3-4 characters, so prompts (and the text fed
        during generation) are ~3x longer than with the real Qwen2 BPE;
      * token ids (text special tokens, codec language / speaker ids) are the
        tiny builder's, not the released ones.

    ``seed`` makes the weights deterministic for a given device / dtype; the
    caller's RNG state (CPU, and the CUDA device used) is left untouched.
    ``attn_implementation``: None (transformers' default, "sdpa"), "eager",
    or "flash_attention_2" (needs flash-attn, and a half dtype).
    Free it with ``release(tts)``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    qwen_tts = _import_qwen_tts()
    from qwen_tts.core import Qwen3TTSTokenizerV2Config
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSProcessor
    from transformers import AutoFeatureExtractor

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    device = torch.device(device)
    with tempfile.TemporaryDirectory(prefix="qwen3tts-full-") as tmp:
        root = Path(directory) if directory is not None else Path(tmp)
        build_tiny_checkpoint(root, kind, seed=seed, max_new_tokens=max_new_tokens, size="full", weights=False)
        config = Qwen3TTSConfig.from_pretrained(str(root))
        codec_config = Qwen3TTSTokenizerV2Config.from_pretrained(str(root / "speech_tokenizer"))
        processor = Qwen3TTSProcessor.from_pretrained(str(root), fix_mistral_regex=True)
        feature_extractor = AutoFeatureExtractor.from_pretrained(str(root / "speech_tokenizer"))
        generate_config = json.loads((root / "generation_config.json").read_text(encoding="utf-8"))

    rng_devices = []
    if device.type == "cuda":
        rng_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        model = _new_full_model(config, device=device, dtype=dtype, attn_implementation=attn_implementation)
        codec = _new_speech_tokenizer_model(codec_config, device=device, dtype=dtype)

    speech_tokenizer = qwen_tts.Qwen3TTSTokenizer()
    speech_tokenizer.model = codec
    speech_tokenizer.feature_extractor = feature_extractor
    speech_tokenizer.config = codec.config
    speech_tokenizer.device = codec.device
    model.load_speech_tokenizer(speech_tokenizer)
    model.load_generate_config(generate_config)
    return qwen_tts.Qwen3TTSModel(model=model, processor=processor, generate_defaults=model.generate_config)


def release(tts: Any) -> None:
    """Free a ``Qwen3TTSModel``'s weights now (CPU RAM or GPU memory), even while
    references to it remain: its modules are moved to the ``meta`` device, so
    ``tts`` is unusable afterwards.  Then ``gc.collect()``, with CUDA
    ``torch.cuda.empty_cache()``, and on glibc ``malloc_trim(0)``: many weight
    tensors (8-25 MB) end up in malloc's heap rather than in their own mmaps, and
    without the trim ~3.5 GB of freed CPU memory can stay in the process's RSS
    (reusable by it, but not by anyone else)."""
    model = getattr(tts, "model", None)
    if model is not None:
        speech_tokenizer = getattr(model, "speech_tokenizer", None)
        if speech_tokenizer is not None and getattr(speech_tokenizer, "model", None) is not None:
            speech_tokenizer.model.to("meta")
        model.to("meta")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


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

    from dialog_tts.backends.qwen_compat import import_qwen_tts

    VoiceClonePromptItem = import_qwen_tts().VoiceClonePromptItem

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


def _full_check(kind: str = "custom_voice", device: str | None = None) -> None:  # pragma: no cover - by hand
    """Build the full-size model of ``kind`` on ``device`` (default: cuda if available) in bf16,
    print its parameter counts, build time and memory, run one short batch of 2, release it."""
    import resource
    import time

    import numpy as np

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    for name, n in full_size_parameter_counts(kind).items():
        print(f"  {name:40s} {n:>14,d}")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    tts = full_size_model(kind, device=device)
    if cuda:
        torch.cuda.synchronize(device)
    print(f"full_size_model({kind!r}, device={device!r}): {time.perf_counter() - t0:.1f} s")
    texts, tokens = ["Hello there.", "A second, longer line of text."], 4
    t0 = time.perf_counter()
    if kind == "custom_voice":
        wavs, sr = tts.generate_custom_voice(texts, speaker=["Vivian", "Ryan"], language=["english"] * 2,
                                             max_new_tokens=tokens)
    elif kind == "voice_design":
        wavs, sr = tts.generate_voice_design(texts, instruct=["a calm narrator", "a bright young voice"],
                                             language=["english"] * 2, max_new_tokens=tokens)
    else:
        prompt = tts.create_voice_clone_prompt(ref_audio=(chirp(), SAMPLE_RATE), ref_text="reference words")
        wavs, sr = tts.generate_voice_clone(texts, language="english", voice_clone_prompt=prompt * 2,
                                            max_new_tokens=tokens)
    print(f"batch of 2, max_new_tokens={tokens}: {time.perf_counter() - t0:.1f} s, lengths {[len(w) for w in wavs]}, "
          f"peaks {[round(float(np.abs(w).max()), 3) for w in wavs]}")
    assert sr == SAMPLE_RATE and [len(w) for w in wavs] == [samples_for(tokens)] * 2
    if cuda:
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    release(tts)
    print("full-size check OK")


if __name__ == "__main__":  # pragma: no cover
    import sys

    if sys.argv[1:2] == ["--full"]:
        _full_check(*sys.argv[2:4])
    else:
        _self_check()
