"""Task logs: appended in chunks, encrypted at rest, capped by plan, watched by regex rules.

Free keeps the last 10 KB, pro the last ``pro_log_cap_bytes`` (10 MB at most). Older output is
dropped whole chunks first, then by re-sealing the oldest kept chunk's tail; the chained digest
still covers everything ever received, and the machine that ran the task sends the SHA-256 of
its whole output when it ends (spec §11: "only hash task logs > 10 MB").

Each appended chunk is checked against the user's ``match`` rules: the first matching line per
pattern becomes a ``match`` event, with an event id derived from the task, chunk and pattern, so
a retried upload cannot notify twice.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from claude_notify.cloud.server.db.models import Channel, Task, TaskLog, TaskLogChunk
from claude_notify.cloud.server.db.ops import insert_ignore
from claude_notify.cloud.server.fanout import Owner, Planned
from claude_notify.cloud.server.ingest import FREE_TAIL_BYTES, record_event
from claude_notify.cloud.server.logcrypt import LogCipher, Sealed
from claude_notify.cloud.server.patterns import first_matching_line
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent

MAX_MATCH_LINE = 4096
"""Lines longer than this are checked only on their first 4096 characters."""
EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class Appended:
    bytes_total: int
    bytes_kept: int
    digest: str
    notifications: list[Planned]


def cap_for(plan: str, settings: Settings) -> int:
    return settings.pro_log_cap_bytes if plan == "pro" else FREE_TAIL_BYTES


def _context(task_id: uuid.UUID, seq: int) -> bytes:
    return f"{task_id}:{seq}".encode()


def append(
    session: Session,
    *,
    user: Owner,
    task: Task,
    data: bytes,
    cipher: LogCipher,
    now: datetime,
    settings: Settings,
) -> Appended:
    """Store one chunk, trim to the plan's cap and fire ``match`` rules; the caller commits."""
    log = _locked_log(session, user=user, task=task, now=now)
    seq = log.next_seq
    sealed = cipher.seal(data, _context(task.id, seq))
    session.add(
        TaskLogChunk(
            id=uuid.uuid4(),
            task_id=task.id,
            user_id=user.user_id,
            seq=seq,
            key_id=sealed.key_id,
            nonce=sealed.nonce,
            ciphertext=sealed.ciphertext,
            size=len(data),
            created_at=now,
        )
    )
    log.next_seq = seq + 1
    log.bytes_total += len(data)
    log.bytes_kept += len(data)
    log.digest = hashlib.sha256(bytes.fromhex(log.digest) + data).hexdigest()
    log.updated_at = now
    session.flush()
    _trim(session, log, cipher, cap_for(user.plan, settings))
    planned = _fire_rules(
        session, user=user, task=task, data=data, seq=seq, now=now, settings=settings
    )
    return Appended(log.bytes_total, log.bytes_kept, log.digest, planned)


def _locked_log(session: Session, *, user: Owner, task: Task, now: datetime) -> TaskLog:
    """The task's log row, made empty if it has none yet, locked until the caller commits (the
    chunks' sequence numbers come from it)."""
    insert_ignore(
        session,
        TaskLog,
        {
            "task_id": task.id,
            "user_id": user.user_id,
            "bytes_total": 0,
            "bytes_kept": 0,
            "digest": EMPTY_DIGEST,
            "next_seq": 0,
            "updated_at": now,
        },
        ["task_id"],
    )
    return session.scalars(
        select(TaskLog).where(TaskLog.task_id == task.id).with_for_update()).one()


def _trim(session: Session, log: TaskLog, cipher: LogCipher, cap: int) -> None:
    """Drop the oldest output until at most ``cap`` bytes remain."""
    chunks = session.scalars(
        select(TaskLogChunk).where(TaskLogChunk.task_id == log.task_id).order_by(TaskLogChunk.seq)
    ).all()
    excess = log.bytes_kept - cap
    for chunk in chunks:
        if excess <= 0:
            break
        if chunk.size <= excess:
            session.execute(delete(TaskLogChunk).where(TaskLogChunk.id == chunk.id))
            excess -= chunk.size
            log.bytes_kept -= chunk.size
            continue
        context = _context(log.task_id, chunk.seq)
        plain = cipher.open(Sealed(chunk.key_id, chunk.nonce, chunk.ciphertext), context)
        kept = plain[excess:]
        resealed = cipher.seal(kept, context)
        chunk.key_id, chunk.nonce, chunk.ciphertext = (
            resealed.key_id,
            resealed.nonce,
            resealed.ciphertext,
        )
        chunk.size = len(kept)
        log.bytes_kept -= excess
        excess = 0


class DigestMismatch(ValueError):
    """The machine's digest disagrees with the log the server holds in full."""


def record_output_digest(
    session: Session, *, user: Owner, task: Task, sha256: str, size: int, cipher: LogCipher,
    now: datetime,
) -> TaskLog:
    """Store the SHA-256 of the task's whole output, sent by the machine that ran it.

    When the server holds exactly that many bytes, all of them, it checks the digest against
    them; a log trimmed to the plan's cap (or missing what the uploader had to drop) cannot be
    checked, and the digest is what remains of the part that is gone.
    """
    insert_ignore(
        session,
        TaskLog,
        {"task_id": task.id, "user_id": user.user_id, "bytes_total": 0, "bytes_kept": 0,
         "digest": EMPTY_DIGEST, "next_seq": 0, "updated_at": now},
        ["task_id"],
    )
    log = session.scalars(select(TaskLog).where(TaskLog.task_id == task.id).with_for_update()).one()
    if log.bytes_total == size and log.bytes_kept == size:
        held = hashlib.sha256(read(session, task=task, cipher=cipher)).hexdigest()
        if held != sha256:
            raise DigestMismatch(f"the output digest does not match the {size} bytes received")
    log.output_sha256, log.output_bytes, log.updated_at = sha256, size, now
    return log


def read(session: Session, *, task: Task, cipher: LogCipher) -> bytes:
    """The kept part of a task's log, decrypted, oldest first."""
    chunks = session.scalars(
        select(TaskLogChunk).where(TaskLogChunk.task_id == task.id).order_by(TaskLogChunk.seq)
    )
    return b"".join(
        cipher.open(Sealed(c.key_id, c.nonce, c.ciphertext), _context(task.id, c.seq))
        for c in chunks
    )


def read_tail(session: Session, *, task: Task, cipher: LogCipher, max_bytes: int) -> bytes:
    """The last ``max_bytes`` of a task's kept log, decrypting only the newest chunks."""
    first, size = None, 0
    for seq, chunk_size in session.execute(
        select(TaskLogChunk.seq, TaskLogChunk.size)
        .where(TaskLogChunk.task_id == task.id).order_by(TaskLogChunk.seq.desc())
    ):
        first, size = seq, size + chunk_size
        if size >= max_bytes:
            break
    if first is None:
        return b""
    chunks = session.scalars(
        select(TaskLogChunk).where(TaskLogChunk.task_id == task.id, TaskLogChunk.seq >= first)
        .order_by(TaskLogChunk.seq)
    )
    data = b"".join(
        cipher.open(Sealed(c.key_id, c.nonce, c.ciphertext), _context(task.id, c.seq))
        for c in chunks
    )
    return data[-max_bytes:]


def _fire_rules(
    session: Session,
    *,
    user: Owner,
    task: Task,
    data: bytes,
    seq: int,
    now: datetime,
    settings: Settings,
) -> list[Planned]:
    patterns = {
        str(c.rules["regex"])
        for c in session.scalars(select(Channel).where(
            Channel.workspace_id == task.workspace_id,
            ~Channel.personal | (Channel.user_id == user.user_id)))
        if "match" in c.rules.get("on", []) and c.rules.get("regex")
    }
    if not patterns:
        return []
    text = data.decode(errors="replace")
    planned: list[Planned] = []
    for pattern in sorted(patterns):
        line = first_matching_line(pattern, text, max_line=MAX_MATCH_LINE)
        if line is None:
            continue
        digest = hashlib.sha256(pattern.encode()).hexdigest()[:16]
        event = TaskEvent(
            type="match",
            source="run",
            task_id=task.key,
            machine_id=task.machine_id or "server",
            session_id=task.session_id,
            event_id=f"log:{task.id}:{seq}:{digest}",
            command=task.cmd,
            match=line[:MAX_MATCH_LINE],
        )
        result = record_event(session, user=user, event=event, now=now, settings=settings)
        planned += result.notifications
    return planned
