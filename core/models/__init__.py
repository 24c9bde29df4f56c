"""SQLModel tables, one module per area. Importing this package registers them all."""
from core.models.recording import Chunk, ProcessingStep, Recording, RejectedChunk, Track
from core.models.room import CallSession, Room, RoomTransition

__all__ = ["Chunk", "ProcessingStep", "Recording", "RejectedChunk", "Track"]
__all__ += ["CallSession", "Room", "RoomTransition"]
from core.models.transcript import OrgVocabulary, TranscriptSegment, TranscriptTrackState, TranscriptVersion  # noqa: E402

__all__ += ["OrgVocabulary", "TranscriptSegment", "TranscriptTrackState", "TranscriptVersion"]
from core.models.access import OrgSettings, RecordingGrant  # noqa: E402

__all__ += ["OrgSettings", "RecordingGrant"]
from core.models.audit import AuditEvent  # noqa: E402

__all__ += ["AuditEvent"]
from core.models.webhook import WebhookAttempt, WebhookDelivery, WebhookEndpoint  # noqa: E402

__all__ += ["WebhookAttempt", "WebhookDelivery", "WebhookEndpoint"]
from core.models.retention import (CandidateEvent, DeletionReceipt, ErasureRequest, LegalHold, ManifestItem,  # noqa: E402
                                   RecordingMatter, RecordingTombstone, RetentionManifest, RetentionPolicy)

__all__ += ["CandidateEvent", "DeletionReceipt", "ErasureRequest", "LegalHold", "ManifestItem", "RecordingMatter",
            "RecordingTombstone", "RetentionManifest", "RetentionPolicy"]
from core.models.quality import MediaGap, QualitySample  # noqa: E402

__all__ += ["MediaGap", "QualitySample"]
