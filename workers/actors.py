"""Every Dramatiq actor, registered on the broker (`dramatiq workers.actors`).

Actor names must match `core.queue.ACTOR_QUEUES` (checked by a test).
"""
from workers import broker  # noqa: F401  (sets the broker before actors are declared)
from workers import policy  # noqa: F401,E402  (step_failed: on_retry_exhausted of every actor, queue "default")
from workers import media  # noqa: F401,E402  (process_chunk, composite_window, finalize_recording)
from workers import transcription  # noqa: F401,E402  (transcribe_chunk, finalize_transcript, retranscribe_recording, index_transcript)
from workers import webhooks  # noqa: F401,E402  (deliver_webhook)
from workers import audit  # noqa: F401,E402  (audit_checkpoint)
from workers import retention  # noqa: F401,E402  (apply_retention, retention_tick, sync_legal_holds)
