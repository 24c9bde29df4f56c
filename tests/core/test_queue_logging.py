import io
import json

import dramatiq
import pytest
import redis

from core.errors import QueueError
from core.logging import bound, configure_logging, get_logger
from core.queue import ACTOR_QUEUES, enqueue, make_broker


def test_enqueue_by_name_lands_on_the_actor_queue(redis_url: str) -> None:
    broker = make_broker(redis_url)
    msg_id = enqueue(broker, "process_chunk", "rec_1", "t1", 3)
    client = redis.Redis.from_url(redis_url)
    queued = client.hgetall("dramatiq:media.msgs")
    bodies = {b["message_id"]: b for b in map(json.loads, queued.values())}
    body = bodies[msg_id]
    assert body["actor_name"] == "process_chunk" and body["args"] == ["rec_1", "t1", 3]
    with pytest.raises(ValueError):
        enqueue(broker, "no_such_actor")
    broker.close()


def test_enqueue_when_redis_is_down_is_queue_error() -> None:
    from recorder.services import free_port

    broker = make_broker(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(QueueError):
        enqueue(broker, "finalize_recording", "rec_1")
    dramatiq.set_broker(dramatiq.get_broker())


def test_actor_queue_contract_has_a_queue_per_actor() -> None:
    assert set(ACTOR_QUEUES.values()) <= {"media", "transcribe", "default"}


def test_json_logs_carry_bound_context() -> None:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    with bound(recording_id="rec_9", room_id="room_2", phase="ingest"):
        get_logger("t").info("chunk_stored", seq=4)
    get_logger("t").info("outside")
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[0]["recording_id"] == "rec_9" and lines[0]["room_id"] == "room_2"
    assert lines[0]["phase"] == "ingest" and lines[0]["event"] == "chunk_stored" and lines[0]["seq"] == 4
    assert "recording_id" not in lines[1]
