"""Every Dramatiq actor, registered on the broker (`dramatiq workers.actors`).

Actor names must match `core.queue.ACTOR_QUEUES` (checked by a test).
"""
from workers import broker  # noqa: F401  (sets the broker before actors are declared)
from workers import media  # noqa: F401,E402  (process_chunk, composite_window, finalize_recording)
from workers import transcription  # noqa: F401,E402  (transcribe_chunk, finalize_transcript, retranscribe_recording, index_transcript)
