"""The signaling options, taken once from `Settings` at start-up."""
from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings


@dataclass(frozen=True)
class SignalingConfig:
    jwt_secret: str
    jwt_issuer: str
    join_token_ttl_s: int = 300
    join_token_cache_s: int = 75
    resume_window_s: int = 300
    orphan_timeout_s: int = 90
    orphan_sweep_s: float = 5.0
    room_unused_ttl_s: int = 24 * 3600
    room_lease_ttl_s: int = 600
    room_create_rate: int = 120
    join_token_rate: int = 600
    heartbeat_s: float = 2.5
    max_message_bytes: int = 64 * 1024
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl_s: int = 4 * 3600
    public_url: str = ""

    @classmethod
    def from_settings(cls, s: Settings) -> SignalingConfig:
        return cls(jwt_secret=s.jwt_secret, jwt_issuer=s.jwt_issuer, join_token_ttl_s=s.join_token_ttl_s,
                   join_token_cache_s=min(s.join_token_cache_s, s.join_token_ttl_s // 2),
                   resume_window_s=s.resume_window_s, orphan_timeout_s=s.orphan_timeout_s,
                   orphan_sweep_s=s.orphan_sweep_s, room_unused_ttl_s=s.room_unused_ttl_s,
                   room_lease_ttl_s=s.room_lease_ttl_s, room_create_rate=s.room_create_rate_per_minute,
                   join_token_rate=s.join_token_rate_per_minute, heartbeat_s=s.signal_heartbeat_s,
                   max_message_bytes=s.signal_max_message_bytes, stun_urls=tuple(s.stun_urls),
                   turn_urls=tuple(s.turn_urls), turn_secret=s.turn_secret, turn_ttl_s=s.turn_credential_ttl_s,
                   public_url=s.public_url)

    @property
    def resume_window_ms(self) -> int:
        return self.resume_window_s * 1000

    @property
    def node_ttl_ms(self) -> int:
        """A process that stops refreshing its key for this long counts as dead."""
        return int(max(3 * self.heartbeat_s, 2.0) * 1000)
