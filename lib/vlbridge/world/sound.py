"""The scene as sound: shape is pitch, size is loudness, left/right is stereo pan, and
top/middle/bottom is when the tone plays (first, second, last third of the clip).
Colour is silent, so a listener (or an audio encoder) cannot know it.
"""
from __future__ import annotations

import wave as wavfile
from pathlib import Path

import numpy as np

from .scene import Scene

SAMPLE_RATE = 8000
DURATION = 0.5  # seconds
PITCH = {"circle": 330.0, "square": 523.25, "triangle": 784.0}  # Hz, a fifth-ish apart
LOUDNESS = {"small": 0.3, "large": 0.8}
PAN = {0: (0.9, 0.15), 1: (0.55, 0.55), 2: (0.15, 0.9)}  # (left gain, right gain) by column


def render_sound(scene: Scene, sample_rate: int = SAMPLE_RATE, duration: float = DURATION) -> np.ndarray:
    """Stereo float32 waveform [2, samples] in [-1, 1]."""
    n = int(round(sample_rate * duration))
    t = np.arange(n) / sample_rate
    wave = np.zeros((2, n), dtype=np.float64)
    third = n // 3
    for obj in scene.objects:
        start = obj.row * third
        length = third if obj.row < 2 else n - start
        local = t[:length]
        # A soft attack and decay so that tones start and stop without clicks.
        envelope = np.minimum(1.0, local / 0.01) * np.exp(-3.0 * local / (length / sample_rate))
        tone = LOUDNESS[obj.size] * envelope * np.sin(2 * np.pi * PITCH[obj.shape] * local)
        left, right = PAN[obj.col]
        wave[0, start:start + length] += left * tone
        wave[1, start:start + length] += right * tone
    return (np.clip(wave, -1.0, 1.0)).astype(np.float32)


def log_mel(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = 40,
            frame_length: int = 256, hop_length: int = 64) -> np.ndarray:
    """Log10-mel spectrogram per channel, [channels, n_mels, frames], via transformers.audio_utils."""
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    filters = mel_filter_bank(
        num_frequency_bins=frame_length // 2 + 1, num_mel_filters=n_mels, min_frequency=50.0,
        max_frequency=sample_rate / 2, sampling_rate=sample_rate, mel_scale="slaney", norm="slaney",
    )
    window = window_function(frame_length, "hann")
    channels = np.atleast_2d(wave)
    return np.stack([
        spectrogram(ch.astype(np.float64), window, frame_length=frame_length, hop_length=hop_length,
                    power=2.0, mel_filters=filters, log_mel="log10", mel_floor=1e-6)
        for ch in channels
    ]).astype(np.float32)


FULL_SCALE = 32767  # int16 full scale; samples map to [-1, 1] and back with this factor


def write_wav(path, wave: np.ndarray, sample_rate: int) -> Path:
    """Write float samples in [-1, 1], [channels, n] (or [n] for mono), as 16-bit PCM."""
    path = Path(path)
    channels = np.atleast_2d(np.asarray(wave, dtype=np.float64))
    pcm = np.round(np.clip(channels, -1.0, 1.0) * FULL_SCALE).astype("<i2")
    with wavfile.open(str(path), "wb") as out:
        out.setnchannels(channels.shape[0])
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.T.tobytes())  # WAV interleaves the channels frame by frame
    return path
