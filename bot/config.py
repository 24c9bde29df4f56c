"""The bot's options, taken once from `Settings` by `bot.service.run()`."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from bot.admission import AdmissionPolicy
from bot.api import ApiOptions
from bot.ladder import LadderConfig
from bot.monitor import MonitorConfig
from bot.segments import SegmentPolicy
from core.settings import Settings


@dataclass(frozen=True)
class BotConfig:
    api: ApiOptions
    redis_url: str
    spool_dir: Path
    policy: SegmentPolicy
    participant_id: str = "recorder-bot"
    display_name: str = "Recorder"
    stop_grace_s: float = 30.0      # on shutdown, wait this long for the last uploads
    rejoin_after_s: float = 5.0     # retry a room another bot holds / that failed
    ice_loopback: bool = False
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    admission: AdmissionPolicy = field(default_factory=AdmissionPolicy)

    @classmethod
    def from_settings(cls, s: Settings) -> BotConfig:
        api = ApiOptions(base_url=s.bot_api_url or s.api_base_url, jwt_secret=s.jwt_secret,
                         jwt_issuer=s.jwt_issuer, give_up_s=s.bot_upload_give_up_s)
        ladder = LadderConfig(heartbeat_s=s.bot_heartbeat_s, ice_restart_s=s.bot_ice_restart_s,
                              renegotiate_s=s.bot_renegotiate_s, socket_wait_s=s.bot_socket_wait_s)
        admission = AdmissionPolicy(max_participants=s.bot_max_participants, room_floor=s.bot_room_floor)
        return cls(api=api, redis_url=s.redis_url, spool_dir=Path(s.data_dir) / "bot",
                   policy=SegmentPolicy(segment_ms=round(s.bot_segment_s * 1000)), ice_loopback=s.bot_ice_loopback,
                   monitor=MonitorConfig(ladder=ladder, quality_s=s.bot_quality_s), admission=admission,
                   display_name=process_name())


def process_name() -> str:
    """The recorder's name in a room's call history (admins see it): which bot process holds the seat."""
    return f"Recorder ({socket.gethostname()}:{os.getpid()})"[:128]
