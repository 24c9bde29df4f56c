"""transcribe: per-speaker speech-to-text (webrtcvad + faster-whisper), merge, exports.

Pure parts (VAD smoothing, carry/split math, quality flags, merge, exports, WER) take
plain values; `audio.decode` (PyAV) and `model` (faster-whisper) are the I/O edges.
"""
from transcribe.export import render
from transcribe.merge import merge_segments
from transcribe.model import DecodeOptions, ModelSpec, load_model
from transcribe.pipeline import TrackOptions, decode, plan_step, transcribe_track
from transcribe.types import Segment, Speaker, Transcript, Word
from transcribe.wer import wer

__all__ = ["DecodeOptions", "ModelSpec", "Segment", "Speaker", "TrackOptions", "Transcript", "Word",
           "decode", "load_model", "merge_segments", "plan_step", "render", "transcribe_track", "wer"]
