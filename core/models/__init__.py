"""SQLModel tables, one module per area. Importing this package registers them all."""
from core.models.recording import Chunk, ProcessingStep, Recording, RejectedChunk, Track
from core.models.room import CallSession, Room, RoomTransition

__all__ = ["Chunk", "ProcessingStep", "Recording", "RejectedChunk", "Track"]
__all__ += ["CallSession", "Room", "RoomTransition"]
from core.models.transcript import OrgVocabulary, TranscriptSegment, TranscriptTrackState, TranscriptVersion  # noqa: E402

__all__ += ["OrgVocabulary", "TranscriptSegment", "TranscriptTrackState", "TranscriptVersion"]
