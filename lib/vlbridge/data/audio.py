"""Reading 16-bit PCM WAV files (stdlib `wave`; world.sound writes them), and the manifest that pairs
each file with a caption."""
from __future__ import annotations

import wave as wavfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..world.sound import FULL_SCALE, SAMPLE_RATE
from .errors import DataError
from .jsonfile import field, read_json


def read_wav(path, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV file as float32 [channels, n] in [-1, 1], and its sample rate, which must be
    `sample_rate`: the microworld's sounds and the audio encoder's log-mels are at SAMPLE_RATE, and
    samples at another rate would be read as other frequencies, not refused."""
    path = Path(path)
    try:
        with wavfile.open(str(path), "rb") as source:
            channels, width, rate = source.getnchannels(), source.getsampwidth(), source.getframerate()
            frames = source.readframes(source.getnframes())
    except FileNotFoundError:
        raise DataError(f"{path}: audio file not found") from None
    # The stdlib raises RuntimeError, not wave.Error, for a chunk size past the end of the file.
    except (wavfile.Error, EOFError, OSError, RuntimeError) as error:
        raise DataError(f"{path}: not a readable WAV file ({error!r})") from None
    if width != 2:
        raise DataError(f"{path}: expected 16-bit PCM samples, got {8 * width}-bit")
    if rate != sample_rate:
        raise DataError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz (resample the file, "
                        "or pass the rate you mean as sample_rate)")
    if len(frames) % (2 * channels):
        raise DataError(f"{path}: truncated WAV data ({len(frames)} bytes for {channels} 16-bit channels)")
    pcm = np.frombuffer(frames, dtype="<i2")
    return (pcm.reshape(-1, channels).T / FULL_SCALE).astype(np.float32), rate


@dataclass(frozen=True)
class AudioRecord:
    seed: int
    file_name: str
    caption: str
    audio_path: Path | None


def load_audio_captions(json_path, audio_dir=None) -> list[AudioRecord]:
    """The microworld's audio manifest: a JSON list of {seed, file_name, caption}."""
    path = Path(json_path)
    entries = read_json(path)
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of {{seed, file_name, caption}}, got {type(entries).__name__}")
    records = []
    for i, entry in enumerate(entries):
        where = f"entry {i}"
        name = field(entry, "file_name", path, where, str)
        audio_path = None
        if audio_dir is not None:
            audio_path = Path(audio_dir) / name
            if not audio_path.is_file():
                raise DataError(f"{path}: {where}: audio file not found: {audio_path}")
        records.append(AudioRecord(field(entry, "seed", path, where, int), name,
                                   field(entry, "caption", path, where, str), audio_path))
    return records
