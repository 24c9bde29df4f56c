"""The one access policy: which role may do which action, on which recordings.

Two questions, one answer each:

* **may this caller do this kind of thing at all?** — `ROLE_POLICY[role][action]` gives the
  *reach* of an action for a role (absent = never → 403 `wrong_role`);
* **on which recordings?** — the reach, turned into one SQL condition (`visible_sql`) that
  single-recording checks, lists and search all use, so a list can never show what the
  detail route refuses, and filtering happens in SQL, not on a page of results.

Reaches:
    ORG          every recording of the caller's org
    MEMBER       recordings the caller took part in (creator, a track's participant, the
                 room's creator) or was granted (user grant, or a grant to one of the
                 token's `groups`)
    PARTICIPANT  took part in (not merely granted): who may share a recording
    GRANTED      granted only — or the whole org where an org setting says so
    NONE         not at all

Scopes narrow tokens further: `upload` tokens only upload to their recording and their
own participant's tracks; `playback` tokens only read their recording's media; `join`
tokens only talk to signaling. Unknown or invisible recordings answer 404 (the caller may
not learn they exist); a recording the caller may see but not act on answers 403.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional

from sqlalchemy import text
from sqlmodel import Session

from core import keys
from core.auth import Principal
from core.errors import Forbidden, NotFound
from core.models import OrgSettings, Recording


class Action(str, Enum):
    CREATE_RECORDING = "create_recording"
    READ_METADATA = "read_metadata"  # status, steps, tracks, outputs list
    READ_LEDGER = "read_ledger"
    READ_MEDIA = "read_media"  # playback URLs and media bytes
    READ_TRANSCRIPT = "read_transcript"  # exports of any version, version list
    SEARCH = "search"
    EXPORT = "export"
    UPLOAD = "upload"
    POST_QUALITY = "post_quality"  # media quality samples and gap causes of a recording being made
    MINT_UPLOAD_TOKEN = "mint_upload_token"
    FINALIZE = "finalize"
    RETRANSCRIBE = "retranscribe"
    READ_GRANTS = "read_grants"
    MANAGE_GRANTS = "manage_grants"
    READ_ROOM = "read_room"
    MANAGE_ROOM = "manage_room"  # create, end, mint join tokens
    READ_VOCABULARY = "read_vocabulary"
    MANAGE_VOCABULARY = "manage_vocabulary"
    READ_ORG_SETTINGS = "read_org_settings"
    MANAGE_ORG_SETTINGS = "manage_org_settings"
    READ_RETENTION = "read_retention"
    MANAGE_RETENTION = "manage_retention"
    READ_AUDIT = "read_audit"
    REVOKE_TOKENS = "revoke_tokens"  # anyone else's token of the org (own token: always)
    MANAGE_WEBHOOKS = "manage_webhooks"
    OPEN_CLIENT_UPLOAD = "open_client_upload"  # a call participant's own chunk recording (join tokens only)


class Reach(str, Enum):
    ORG = "org"
    MEMBER = "member"
    PARTICIPANT = "participant"
    GRANTED = "granted"
    CONTENT_SETTING = "content_setting"  # whole org if `compliance_reads_content`, else none


A, R = Action, Reach
_CONTENT = (A.READ_MEDIA, A.READ_TRANSCRIPT, A.EXPORT, A.SEARCH)

# The table: role → action → reach. Anything absent is refused (403 wrong_role).
ROLE_POLICY: dict[str, dict[Action, Reach]] = {
    "admin": {a: R.ORG for a in Action},
    "interviewer": {
        A.CREATE_RECORDING: R.ORG, A.READ_METADATA: R.MEMBER, A.READ_LEDGER: R.MEMBER,
        **{a: R.MEMBER for a in _CONTENT}, A.MINT_UPLOAD_TOKEN: R.PARTICIPANT, A.FINALIZE: R.PARTICIPANT,
        A.RETRANSCRIBE: R.MEMBER, A.READ_GRANTS: R.PARTICIPANT, A.MANAGE_GRANTS: R.PARTICIPANT,
        A.READ_ROOM: R.ORG, A.MANAGE_ROOM: R.ORG, A.READ_VOCABULARY: R.ORG,
    },
    "assessor": {
        A.READ_METADATA: R.GRANTED, A.READ_LEDGER: R.GRANTED, **{a: R.GRANTED for a in _CONTENT},
        A.READ_VOCABULARY: R.ORG,
    },
    "compliance": {
        A.READ_METADATA: R.ORG, A.READ_LEDGER: R.ORG, **{a: R.CONTENT_SETTING for a in _CONTENT},
        A.READ_GRANTS: R.ORG, A.READ_ROOM: R.ORG, A.READ_VOCABULARY: R.ORG, A.READ_ORG_SETTINGS: R.ORG,
        A.READ_RETENTION: R.ORG, A.MANAGE_RETENTION: R.ORG, A.READ_AUDIT: R.ORG,
    },
    # integrations and the recording bot: create, upload, close — never read content
    "service": {
        A.CREATE_RECORDING: R.ORG, A.READ_METADATA: R.ORG, A.READ_LEDGER: R.ORG, A.UPLOAD: R.ORG,
        A.POST_QUALITY: R.ORG, A.MINT_UPLOAD_TOKEN: R.ORG, A.FINALIZE: R.ORG, A.READ_ROOM: R.ORG, A.MANAGE_ROOM: R.ORG,
    },
    "recorder": {
        A.CREATE_RECORDING: R.ORG, A.READ_METADATA: R.ORG, A.READ_LEDGER: R.ORG, A.UPLOAD: R.ORG,
        A.POST_QUALITY: R.ORG, A.FINALIZE: R.ORG,
    },
    "candidate": {},  # an API-scoped candidate token may do nothing; upload tokens see `_SCOPED`
}
# What a narrow token may do, whatever its role claims (bound to its own recording).
SCOPED: dict[str, frozenset[Action]] = {
    "upload": frozenset({A.UPLOAD, A.POST_QUALITY}),  # their own participant only (the route checks)
    "playback": frozenset({A.READ_MEDIA}),
    "join": frozenset({A.OPEN_CLIENT_UPLOAD}),  # their own room and participant only (the route checks)
}
# Join tokens (scope "join"): the roles a call participant may have, and who may end the call.
CALL_ROLES = ("candidate", "interviewer", "assessor", "recorder")
CALL_ENDERS = frozenset({"interviewer", "admin", "service"})


def may_end_call(role: str) -> bool:
    return role in CALL_ENDERS


@dataclass(frozen=True)
class OrgAccess:
    """The org switches the policy reads (defaults: least access)."""

    assessors_see_all: bool = False
    compliance_reads_content: bool = False


def org_access(s: Session, org: str) -> OrgAccess:
    row = s.get(OrgSettings, org)
    if row is None:
        return OrgAccess()
    return OrgAccess(assessors_see_all=row.assessors_see_all, compliance_reads_content=row.compliance_reads_content)


# ---------------------------------------------------------------- role-level questions

def reach(principal: Principal, action: Action) -> Optional[Reach]:
    """How far `action` reaches for this caller's role (None: not at all). API tokens only."""
    if principal.scope != "api":
        return None
    return ROLE_POLICY.get(principal.role, {}).get(action)


def require(principal: Principal, action: Action) -> Reach:
    """403 unless the caller's token and role may do `action` somewhere in their org."""
    if principal.scope != "api":
        if action in SCOPED.get(principal.scope, frozenset()):
            return Reach.ORG  # narrowed to its recording by `recording_for`
        raise Forbidden(f"a {principal.scope!r} token cannot do this", code="wrong_scope")
    found = reach(principal, action)
    if found is None:
        raise Forbidden(f"role {principal.role!r} may not {action.value.replace('_', ' ')}", code="wrong_role")
    return found


def require_in_org(s: Session, principal: Principal, action: Action) -> OrgAccess:
    """`require`, plus the org switches: compliance reads content only where the org allows.
    Returns the org's switches for the caller's `visible_sql`."""
    found = require(principal, action)
    org = org_access(s, principal.org)
    if found is Reach.CONTENT_SETTING and not org.compliance_reads_content:
        raise Forbidden("this org does not let compliance read interview content", code="not_permitted")
    return org


def can(principal: Principal, action: Action) -> bool:
    try:
        require(principal, action)
    except Forbidden:
        return False
    return True


# ---------------------------------------------------------------- per-recording visibility (SQL)

def visible_sql(principal: Principal, action: Action, org: OrgAccess, alias: str = "r") -> tuple[str, dict[str, Any]]:
    """One SQL condition on `recording AS {alias}`: the recordings `action` reaches for the caller.

    Used by single-recording checks, lists and search alike. Always restricted to the
    caller's org and to recordings that are not deleted."""
    params: dict[str, Any] = {"acc_org": principal.org, "acc_sub": principal.sub}
    base = f"{alias}.org = :acc_org AND {alias}.status != 'deleted'"
    if principal.scope != "api":
        if action not in SCOPED.get(principal.scope, frozenset()) or not principal.recording_id:
            return "1 = 0", params
        params["acc_rec"] = principal.recording_id
        return f"{base} AND {alias}.id = :acc_rec", params
    found = reach(principal, action)
    cond = _reach_sql(found, principal, org, alias, params)
    return f"{base} AND ({cond})", params


def _reach_sql(found: Optional[Reach], principal: Principal, org: OrgAccess, alias: str,
               params: dict[str, Any]) -> str:
    if found is None:
        return "1 = 0"
    if found is Reach.ORG:
        return "1 = 1"
    if found is Reach.CONTENT_SETTING:
        return "1 = 1" if org.compliance_reads_content else "1 = 0"
    if found is Reach.GRANTED:
        return "1 = 1" if org.assessors_see_all else _granted_sql(principal, alias, params)
    took_part = (f"{alias}.created_by = :acc_sub"
                 f" OR EXISTS (SELECT 1 FROM track acc_t WHERE acc_t.recording_id = {alias}.id"
                 " AND acc_t.participant_id = :acc_sub)"
                 f" OR EXISTS (SELECT 1 FROM room acc_room WHERE acc_room.id = {alias}.room_id"
                 " AND acc_room.created_by = :acc_sub)")
    if found is Reach.PARTICIPANT:
        return took_part
    return f"{took_part} OR {_granted_sql(principal, alias, params)}"


def _granted_sql(principal: Principal, alias: str, params: dict[str, Any]) -> str:
    groups = list(getattr(principal, "groups", ()) or ())[:64]
    who = "(acc_g.kind = 'user' AND acc_g.subject = :acc_sub)"
    if groups:
        names = []
        for i, group in enumerate(groups):
            params[f"acc_grp{i}"] = group
            names.append(f":acc_grp{i}")
        who += f" OR (acc_g.kind = 'group' AND acc_g.subject IN ({', '.join(names)}))"
    return (f"EXISTS (SELECT 1 FROM recordinggrant acc_g WHERE acc_g.recording_id = {alias}.id AND ({who}))")


def _visible(s: Session, principal: Principal, action: Action, recording_id: str, org: OrgAccess) -> bool:
    cond, params = visible_sql(principal, action, org)
    row = s.connection().execute(text(f"SELECT 1 FROM recording r WHERE r.id = :acc_id AND {cond}"),
                                 {"acc_id": recording_id, **params}).first()
    return row is not None


def recording_for(s: Session, principal: Principal, action: Action, recording_id: str) -> Recording:
    """The recording if the caller may do `action` on it.

    404 when it is unknown, deleted, another org's, or not visible to the caller at all;
    403 when the caller may see it but not do this (or the token cannot do this anywhere)."""
    keys.check_id(recording_id, "recording_id")
    require(principal, action)
    org = org_access(s, principal.org)
    if _visible(s, principal, action, recording_id, org):
        rec = s.get(Recording, recording_id)
        assert rec is not None
        return rec
    if action is not Action.READ_METADATA and _visible(s, principal, Action.READ_METADATA, recording_id, org):
        raise Forbidden(f"you may see this recording but not {action.value.replace('_', ' ')}",
                        code="not_permitted")
    if principal.scope != "api" and principal.recording_id and principal.recording_id != recording_id:
        raise Forbidden("this token is for another recording", code="wrong_recording")
    raise NotFound(f"recording {recording_id} not found", code="unknown_recording")


def visible_recording(s: Session, principal: Principal, recording_id: str,
                      action: Action = Action.READ_METADATA) -> Recording:
    """Compatibility name for `recording_for` (reading metadata unless told otherwise)."""
    return recording_for(s, principal, action, recording_id)
