"""core: settings, db + models, storage, queue, auth, errors, logging, time math.

Imports no other package of interview-recorder.
"""
from core.errors import RecorderError
from core.settings import Settings, get_settings

__all__ = ["RecorderError", "Settings", "get_settings"]
