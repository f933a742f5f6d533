"""Provenance database (SQLAlchemy 2; SQLite by default, PostgreSQL by URL), in PREMIS terms.

Jobs are runs of the archive flow; items are the input objects a job saw; outputs are the
renditions (and review thumbnails) written for an item; events are what happened to an item
(ingest with its sha256 fixity value, validate, colorize, refine, write, skip) with the agent
that did it. Every item row carries the input's sha256, the model's name and sha256, the full
parameter set and its key, times, outcome and error. The schema is migrated with Alembic on open.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, create_engine, delete,
                        event, func, insert, select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from colorize_core.errors import DestinationBusyError, JobStoppedError, ProvenanceError, RelocationError

MIGRATIONS = Path(__file__).parent / "migrations"
_V = TypeVar("_V")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# An IN (...) binds one parameter per value: PostgreSQL takes at most 65,535 per statement,
# SQLite 32,766 in most builds (999 in old ones). A list of ids as long as a job (an archive's
# nightly job has one item per original) is asked for this many at a time.
IN_CHUNK = 5000


def in_chunks(values: Iterable[_V], size: int = IN_CHUNK) -> Iterator[list[_V]]:
    """``values`` (distinct, in order) as lists of at most ``size``, one ``in_()`` each."""
    values = list(dict.fromkeys(values))
    for n in range(0, len(values), size):
        yield values[n:n + size]


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    dest: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]]
    params_key: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(200))
    model_sha256: Mapped[str] = mapped_column(String(64))
    software: Mapped[dict[str, Any]]
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="running")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    items: Mapped[list[Item]] = relationship(back_populates="job", order_by="Item.id")


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    source_uri: Mapped[str] = mapped_column(Text)
    rel_path: Mapped[str] = mapped_column(Text)
    dest: Mapped[str] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    version_tag: Mapped[str | None] = mapped_column(String(200))
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    media_type: Mapped[str | None] = mapped_column(String(32))   # photo | film | unsupported
    format: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[str | None] = mapped_column(String(8))
    bit_depth: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))              # done | failed | skipped
    reason: Mapped[str | None] = mapped_column(Text)             # why skipped
    error_type: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    flags: Mapped[list[Any]] = mapped_column(default=list)       # already-colour, ...
    notes: Mapped[list[Any]] = mapped_column(default=list)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params_key: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(200))
    model_sha256: Mapped[str] = mapped_column(String(64))
    colourfulness: Mapped[float | None]
    chroma_spread: Mapped[float | None]
    media: Mapped[dict[str, Any] | None] = mapped_column(JSON)   # film: probe (rate, frames, audio...)
    previous_item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    job: Mapped[Job] = relationship(back_populates="items")
    outputs: Mapped[list[Output]] = relationship(back_populates="item", order_by="Output.id")
    events: Mapped[list[Event]] = relationship(back_populates="item", order_by="Event.id")

    __table_args__ = (Index("ix_items_done_lookup", "source_uri", "dest", "params_key", "status"),)


class Output(Base):
    __tablename__ = "outputs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))   # colour | thumb-original | thumb-colour
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    item: Mapped[Item] = relationship(back_populates="outputs")


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))     # ingest | validate | colorize | refine | write | skip
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure
    agent: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    item: Mapped[Item | None] = relationship(back_populates="events")


class Shot(Base):
    """A film's unit of work: whole shots (or a piece of a long one), frames [start, end).
    Its encoded segments live under DEST until the film is assembled; a re-run finds the done
    ones here by (dest, film sha256, parameters) and redoes only the rest."""

    __tablename__ = "shots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)  # the film, once assembled
    source_uri: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[str] = mapped_column(String(64))
    dest: Mapped[str] = mapped_column(Text)
    params_key: Mapped[str] = mapped_column(String(64))
    start_frame: Mapped[int] = mapped_column(Integer)
    end_frame: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))              # done | failed
    segments: Mapped[dict[str, Any]] = mapped_column(default=dict)   # rendition -> {uri, sha256, size}
    cuts: Mapped[list[Any]] = mapped_column(default=list)            # frame numbers where a shot starts
    shots: Mapped[list[Any]] = mapped_column(default=list)           # per shot: range, flicker, colourfulness
    stills: Mapped[list[Any]] = mapped_column(default=list)          # per shot: frame, original and colour thumbnails
    warping_error: Mapped[float | None]
    warping_error_unsmoothed: Mapped[float | None]
    colourfulness: Mapped[float | None]
    seconds: Mapped[float | None]
    error_type: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_shots_lookup", "dest", "source_sha256", "params_key", "status"),)


class DestLease(Base):
    """The job writing to a destination now: one row per DEST while a job runs there, so that a
    second job on the same DEST (same database) is refused instead of doing the same items again.
    Its holder renews it; a lease not renewed for the lease time was left by a job that crashed
    and is taken over. ``renewals`` makes every change of the row detectable (compare-and-set)."""

    __tablename__ = "dest_leases"
    dest: Mapped[str] = mapped_column(Text, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))
    holder: Mapped[dict[str, Any]]                       # host, pid, Prefect flow run
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    renewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    renewals: Mapped[int] = mapped_column(Integer, default=0)


class Relocation(Base):
    """A destination's records moved to the copy of it elsewhere (``colorize relocate``): from
    then on ``old`` is no destination of this database, and a job writing there is refused (it
    would do the whole archive again beside the files left there), until a relocation back. A
    source's (``kind`` source: the originals moved): a job reading from ``old`` is refused (it
    would take every original there for a new one)."""

    __tablename__ = "relocations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), default="dest")     # dest | source
    old: Mapped[str] = mapped_column(Text, index=True)
    new: Mapped[str] = mapped_column(Text, index=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    items: Mapped[int] = mapped_column(Integer)
    outputs: Mapped[int] = mapped_column(Integer)
    not_intact: Mapped[int] = mapped_column(Integer)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def normalise_url(url: str) -> str:
    """Accept a bare path as SQLite, and postgresql:// as psycopg 3; create SQLite's folder."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return url


MIGRATION_LOCK = 0x636F6C6F   # PostgreSQL advisory lock key ("colo") held while migrating


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision. Processes opening a database at the same
    moment (workers started together on a new database) migrate it one after the other: the
    first takes a lock, the others wait for it and then find the schema at its revision. The
    lock is PostgreSQL's advisory lock, or SQLite's write lock (BEGIN IMMEDIATE; other processes
    wait up to the busy timeout); either is released when the migration's transaction ends."""
    from alembic import command
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:   # at its revision already (nearly always): nothing to lock
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        elif engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@functools.cache
def _engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        migrate(engine)
    except Exception as exc:
        raise ProvenanceError(f"cannot open provenance database {engine.url!r}: {exc}") from exc
    return engine


def _with_parents(uri: str) -> list[str]:
    """``uri`` and the folders (prefixes) above it: /a/b/c, /a/b, /a; s3://bkt/p/q, s3://bkt/p, s3://bkt."""
    places, uri = [], uri.rstrip("/")
    while uri and not uri.endswith(":/"):
        places.append(uri)
        head, _, tail = uri.rpartition("/")
        if not tail or not head or head.endswith(":/"):
            break
        uri = head
    return places


class ProvenanceStore:
    """Opens (and migrates) the database at ``url``; one engine per URL per process."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = _engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    def start_job(self, source: str, dest: str, params: dict[str, Any], params_key: str, model_name: str,
                  model_sha256: str, software: dict[str, Any], flow_run_id: str | None,
                  job_id: str | None = None) -> str:
        job_id = job_id or str(uuid.uuid4())
        with self.session() as s:
            s.add(Job(id=job_id, source=source, dest=dest, params=params, params_key=params_key,
                      model_name=model_name, model_sha256=model_sha256, software=software,
                      flow_run_id=flow_run_id))
        return job_id

    def finish_job(self, job_id: str, status: str, if_running: bool = False) -> None:
        """Record how the job ended; with ``if_running``, only if nothing else has (a job stopped
        by a signal: whatever it had recorded stands). No job row (stopped before it was
        written): nothing to record."""
        q = update(Job).where(Job.id == job_id)
        if if_running:
            q = q.where(Job.status == "running")
        with self.session() as s:
            s.execute(q.values(status=status, finished_at=utcnow()).execution_options(synchronize_session=False))

    def take_dest(self, dest: str, job_id: str, holder: dict[str, Any], stale_after: float,
                  take_over: str | None = None) -> dict[str, Any] | None:
        """Take DEST's lease for ``job_id``. A lease renewed less than ``stale_after`` seconds ago
        belongs to a running job: DestinationBusyError, unless ``take_over`` names that job. An
        older one was left by a crashed job: it is taken over, that job is marked crashed if its
        row still says running (``marked_crashed``), and the lease it held is returned (None when
        DEST was free). Safe against jobs taking it at the same moment, on SQLite and PostgreSQL
        alike: an insert of the same DEST fails, and a take-over changes the row only if nobody
        changed it since it was read."""
        for _ in range(5):
            now = utcnow()
            try:
                with self.session() as s:
                    row = s.get(DestLease, dest)
                    if row is None:
                        s.add(DestLease(dest=dest, job_id=job_id, holder=holder, acquired_at=now, renewed_at=now,
                                        renewals=0))
                        return None
                    old = lease_dict(row)
                    _refuse_if_live(old, now, stale_after, take_over)
                    taken = s.execute(update(DestLease)
                                      .where(DestLease.dest == dest, DestLease.job_id == old["job_id"],
                                             DestLease.renewals == old["renewals"])
                                      .values(job_id=job_id, holder=holder, acquired_at=now, renewed_at=now,
                                              renewals=0).execution_options(synchronize_session=False))
                    if taken.rowcount != 1:
                        continue   # renewed or taken since it was read: look again
                    marked = s.execute(update(Job).where(Job.id == old["job_id"], Job.status == "running")
                                       .values(status="crashed", finished_at=now)
                                       .execution_options(synchronize_session=False))
                    return {**old, "marked_crashed": marked.rowcount == 1}
            except IntegrityError:
                continue           # another job inserted it first: look again
        raise DestinationBusyError(f"{dest}: other jobs kept taking the destination's lease; try again")

    def renew_dest(self, dest: str, job_id: str) -> bool:
        """Renew ``job_id``'s lease on DEST; False if it is no longer that job's (taken over)."""
        with self.session() as s:
            res = s.execute(update(DestLease).where(DestLease.dest == dest, DestLease.job_id == job_id)
                            .values(renewed_at=utcnow(), renewals=DestLease.renewals + 1)
                            .execution_options(synchronize_session=False))
            return res.rowcount == 1

    def release_dest(self, dest: str, job_id: str) -> None:
        """Give DEST's lease back (only if ``job_id`` still holds it)."""
        with self.session() as s:
            s.execute(delete(DestLease).where(DestLease.dest == dest, DestLease.job_id == job_id)
                      .execution_options(synchronize_session=False))

    def dest_lease(self, dest: str) -> dict[str, Any] | None:
        """Who holds DEST's lease now, as a dict; None when DEST is free."""
        with self.session() as s:
            row = s.get(DestLease, dest)
            return lease_dict(row) if row else None

    def check_dest(self, dest: str, stale_after: float, take_over: str | None = None) -> None:
        """DestinationBusyError if a running job holds DEST (what take_dest would refuse), taking
        nothing: a command's early check, before it starts a job that would be refused."""
        lease = self.dest_lease(dest)
        if lease:
            _refuse_if_live(lease, utcnow(), stale_after, take_over)

    def relocated_away(self, uri: str, kind: str = "dest") -> Relocation | None:
        """The relocation that moved the records of DEST (of a SOURCE, with ``kind`` source: of a
        folder that holds it too) at ``uri`` elsewhere, if that is the latest of its kind that
        touched it (None if it never was, or was relocated back since)."""
        places = [uri] if kind == "dest" else _with_parents(uri)   # a source's folder moves with its parent
        q = (select(Relocation).where(Relocation.kind == kind, Relocation.old.in_(places) | Relocation.new.in_(places))
             .order_by(Relocation.at.desc()).limit(1))
        with self.session() as s:
            latest = s.scalars(q).first()
        return latest if latest is not None and latest.old in places else None

    def check_not_relocated(self, dest: str | None, source: str | None = None) -> None:
        """RelocationError if DEST's records were moved elsewhere (a job writing there would do
        the whole archive again, beside the files left there), or SOURCE's (a job reading there
        would take every original for a new one): the message says where to."""
        for uri, kind, what in ((dest, "dest", "write there"), (source, "source", "read from there")):
            moved = self.relocated_away(uri, kind) if uri else None
            if moved is not None:
                raise RelocationError(f"{uri} was relocated to {moved.new} at {moved.at:%Y-%m-%d %H:%M} UTC "
                                      f"(relocation {moved.id}): its records name that place; {what} (or relocate "
                                      f"it back)")

    def find_done(self, source_uri: str, dest: str, params_key: str, sha256: str) -> Item | None:
        """The newest item done for this source, destination and parameters whose input had
        this sha256 (same content, e.g. a file touched but unchanged); None if there is none."""
        q = select(Item).where(Item.source_uri == source_uri, Item.dest == dest, Item.params_key == params_key,
                               Item.status == "done", Item.sha256 == sha256)
        with self.session() as s:
            return s.scalars(q.order_by(Item.id.desc()).limit(1)).first()

    def done_index(self, dest: str, params_key: str) -> dict[str, Any]:
        """The newest done item per source URI for this destination and parameter set, in one
        query of the columns a skip record needs (rows, not ORM objects: an archive has millions)."""
        cols = [Item.source_uri, Item.id, Item.job_id, Item.size, Item.version_tag, Item.sha256, Item.media_type,
                Item.format, Item.width, Item.height, Item.channels, Item.bit_depth, Item.flags, Item.model_name,
                Item.media]   # a photo's XMP sidecar read with it (NULL for most), a film's probe
        q = (select(*cols).where(Item.dest == dest, Item.params_key == params_key, Item.status == "done")
             .order_by(Item.id))
        with self.session() as s:
            return {row.source_uri: row for row in s.execute(q)}

    def add_items(self, items: list[tuple[Item, list[Event]]]) -> None:
        """Record many items (with their events) in one transaction."""
        with self.session() as s:
            for item, _ in items:
                s.add(item)
            s.flush()
            for item, events in items:
                for e in events:
                    e.item_id, e.job_id = item.id, item.job_id
                    s.add(e)

    def add_events(self, events: Iterable[dict[str, Any]]) -> None:
        """Record events on existing items (review decisions: a job's approval has one for each
        of its items) or on a job as a whole (``item_id`` None: an export written), given as the
        columns of each, in one transaction, :data:`IN_CHUNK` rows a statement, without an ORM
        object for each."""
        rows = iter(events)
        with self.session() as s:
            while part := list(itertools.islice(rows, IN_CHUNK)):
                s.execute(insert(Event), part)

    def item(self, item_id: int) -> Item | None:
        with self.session() as s:
            return s.get(Item, item_id)

    def recorded_in_job(self, job_id: str, source_uris: list[str]) -> set[str]:
        """Which of ``source_uris`` this job has recorded already (a retried batch skips them)."""
        if not source_uris:
            return set()
        with self.session() as s:
            return {uri for part in in_chunks(source_uris) for uri in s.scalars(
                select(Item.source_uri).where(Item.job_id == job_id, Item.source_uri.in_(part)))}

    def add_item(self, item: Item, outputs: list[Output] = (), events: list[Event] = ()) -> int:
        """Record an item with its outputs and events in one transaction; returns its id."""
        with self.session() as s:
            s.add(item)
            s.flush()
            for o in outputs:
                o.item_id = item.id
                s.add(o)
            for e in events:
                e.item_id, e.job_id = item.id, item.job_id
                s.add(e)
            return item.id

    def add_shot(self, shot: Shot) -> int:
        with self.session() as s:
            s.add(shot)
            s.flush()
            return shot.id

    def done_shots(self, dest: str, source_sha256: str, params_key: str) -> dict[tuple[int, int], Shot]:
        """Shots of this film encoded for DEST with these parameters and not yet joined into a
        film (whose segments are therefore still there), by frame range, the newest for each."""
        q = (select(Shot).where(Shot.dest == dest, Shot.source_sha256 == source_sha256,
                                Shot.params_key == params_key, Shot.status == "done", Shot.item_id.is_(None))
             .order_by(Shot.id))
        with self.session() as s:
            return {(r.start_frame, r.end_frame): r for r in s.scalars(q)}

    def failed_shots(self, job_id: str, source_sha256: str) -> list[Shot]:
        q = (select(Shot).where(Shot.job_id == job_id, Shot.source_sha256 == source_sha256, Shot.status == "failed")
             .order_by(Shot.start_frame))
        with self.session() as s:
            return list(s.scalars(q))

    def link_shots(self, shot_ids: list[int], item_id: int) -> None:
        """Attach the shots a film was assembled from to the film's item."""
        with self.session() as s:
            for sid in shot_ids:
                s.get(Shot, sid).item_id = item_id

    def item_shots(self, item_id: int) -> list[Shot]:
        with self.session() as s:
            return list(s.scalars(select(Shot).where(Shot.item_id == item_id).order_by(Shot.start_frame)))

    def job(self, job_id: str) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    def job_status(self, job_id: str) -> str | None:
        """The job's status alone (None: no such job)."""
        with self.session() as s:
            return s.scalar(select(Job.status).where(Job.id == job_id))

    def jobs(self, limit: int = 20, dest: str | None = None) -> list[dict[str, Any]]:
        """The newest jobs (of one DEST if given), newest first, as plain dicts: the job's columns,
        its items counted by status, and the lease it holds on its DEST (None if it holds none)."""
        q = select(Job).order_by(Job.started_at.desc(), Job.id).limit(limit)
        if dest is not None:
            q = q.where(Job.dest == dest)
        with self.session() as s:
            jobs = s.scalars(q).all()
            ids = [j.id for j in jobs]
            counts: dict[str, dict[str, int]] = {i: {"done": 0, "skipped": 0, "failed": 0} for i in ids}
            leases = {}
            for part in in_chunks(ids):
                per_status = (select(Item.job_id, Item.status, func.count()).where(Item.job_id.in_(part))
                              .group_by(Item.job_id, Item.status))
                for job_id, status, n in s.execute(per_status):
                    counts[job_id][status] = n
                leases.update((r.job_id, lease_dict(r))
                              for r in s.scalars(select(DestLease).where(DestLease.job_id.in_(part))))
        return [{"id": j.id, "status": j.status, "source": j.source, "dest": j.dest, "model_name": j.model_name,
                 "model_sha256": j.model_sha256, "flow_run_id": j.flow_run_id, "started_at": _aware(j.started_at),
                 "finished_at": _aware(j.finished_at) if j.finished_at else None, "counts": counts[j.id],
                 "lease": leases.get(j.id)} for j in jobs]

    def job_items(self, job_id: str) -> list[dict[str, Any]]:
        """Every item of a job as plain dicts, by path (:meth:`job_item_pages`, joined)."""
        return [row for page in self.job_item_pages(job_id) for row in page]

    def job_item_pages(self, job_id: str, size: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """A job's items as plain dicts, by path, ``size`` at a time: each with its outputs (of
        the earlier item for skips) and its film's shots. A nightly job over an archive has an
        item per original: its ids are read first (one statement), then each page takes a few
        statements, and only one page is held at a time. ``size``: :data:`IN_CHUNK` unless given."""
        with self.session() as s:
            ids = s.scalars(select(Item.id).where(Item.job_id == job_id).order_by(Item.rel_path, Item.id)).all()
        for part in in_chunks(ids, size or IN_CHUNK):
            yield self._item_rows(part)

    def _item_rows(self, ids: list[int]) -> list[dict[str, Any]]:
        with self.session() as s:   # one statement each for the items, their earlier items, outputs and shots
            loaded = {it.id: it for it in s.scalars(select(Item).where(Item.id.in_(ids)))}
            items = [loaded[i] for i in ids if i in loaded]
            done_of = dict(loaded)
            earlier = [it.previous_item_id for it in items if it.previous_item_id]
            done_of.update((it.id, it) for it in s.scalars(select(Item).where(Item.id.in_(earlier))))
            outputs: dict[int, list[Output]] = {}
            shown = [it.previous_item_id or it.id for it in items]
            for o in s.scalars(select(Output).where(Output.item_id.in_(shown)).order_by(Output.id)):
                outputs.setdefault(o.item_id, []).append(o)
            films = [i for i, it in done_of.items() if it.media_type == "film"]
            shots: dict[int, list[Shot]] = {}
            for sh in s.scalars(select(Shot).where(Shot.item_id.in_(films)).order_by(Shot.item_id, Shot.start_frame)):
                shots.setdefault(sh.item_id, []).append(sh)
            rows = []
            for it in items:
                done = done_of[it.previous_item_id] if it.previous_item_id else it
                row = {c.name: getattr(it, c.name) for c in Item.__table__.columns}
                row["outputs"] = [{"kind": o.kind, "uri": o.uri, "sha256": o.sha256, "size": o.size}
                                  for o in outputs.get(done.id, [])]
                row["media"] = done.media
                row["done_item_id"] = done.id if done.status == "done" else None
                row["shots"] = [{"start": sh.start_frame, "end": sh.end_frame, "shots": sh.shots,
                                 "stills": sh.stills, "warping_error": sh.warping_error,
                                 "warping_error_unsmoothed": sh.warping_error_unsmoothed,
                                 "colourfulness": sh.colourfulness, "job_id": sh.job_id}
                                for sh in shots.get(done.id, [])] if done.media_type == "film" else []
                if it.previous_item_id:
                    row["colourfulness"] = done.colourfulness
                    row["done_in_job"] = done.job_id
                rows.append(row)
            return rows


def _aware(at: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time here is UTC."""
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def lease_dict(row: DestLease) -> dict[str, Any]:
    return {"dest": row.dest, "job_id": row.job_id, "holder": dict(row.holder or {}),
            "acquired_at": _aware(row.acquired_at), "renewed_at": _aware(row.renewed_at), "renewals": row.renewals}


def _refuse_if_live(lease: dict[str, Any], now: datetime, stale_after: float, take_over: str | None) -> None:
    idle = (now - lease["renewed_at"]).total_seconds()
    if idle < stale_after and take_over != lease["job_id"]:
        raise DestinationBusyError(_busy_message(lease, idle, stale_after))


def _busy_message(lease: dict[str, Any], idle: float, stale_after: float) -> str:
    h = lease["holder"]
    who = ", ".join(f"{k} {h[k]}" for k in ("host", "pid", "flow_run") if h.get(k))
    return (f"{lease['dest']} is being written by job {lease['job_id']} ({who}), which took it at "
            f"{lease['acquired_at']:%Y-%m-%d %H:%M:%S} UTC and renewed its lease {idle:.0f} s ago. Wait for that job "
            f"to finish. If it has stopped, its lease is taken over once it has gone {stale_after:.0f} s without "
            f"renewal, or at once with --take-over {lease['job_id']} (the flow's take_over parameter).")


class DestinationLease:
    """Holds DEST for a job while it runs (a context manager): the lease is taken on entering
    (DestinationBusyError while another job holds it), renewed by a daemon thread every tenth of
    ``lease_seconds``, and given back on leaving. The thread renews it however long a shot or a
    batch takes, in this process, where the job's flow waits for its tasks. ``taken_over``: the
    lease of a crashed job this one took over (None if DEST was free); ``lost``: a renewal found
    the lease another job's (this job went ``lease_seconds`` without renewing: the database was
    out of reach)."""

    def __init__(self, store: ProvenanceStore, dest: str, job_id: str, *, holder: dict[str, Any],
                 lease_seconds: float, take_over: str | None = None,
                 log: logging.Logger | logging.LoggerAdapter | None = None) -> None:
        self.store, self.dest, self.job_id, self.holder = store, dest, job_id, holder
        self.lease_seconds, self.take_over = lease_seconds, take_over
        self.log = log or logging.getLogger(__name__)
        self.taken_over: dict[str, Any] | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DestinationLease:
        self.taken_over = self.store.take_dest(self.dest, self.job_id, self.holder, self.lease_seconds, self.take_over)
        self._thread = threading.Thread(target=self._renew, name=f"lease {self.dest}", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 10):
            try:
                if not self.store.renew_dest(self.dest, self.job_id):
                    self.lost = True
                    self.log.error("job %s lost its lease on %s: another job took it over after %.0f s without "
                                   "renewal and may be writing there too", self.job_id, self.dest, self.lease_seconds)
                    return
            except Exception as exc:  # noqa: BLE001 - the database out of reach a moment: try again next time
                self.log.warning("renewing the lease on %s failed (will try again): %s", self.dest, exc)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if not self.lost:
            try:
                self.store.release_dest(self.dest, self.job_id)
            except Exception as err:  # noqa: BLE001 - never hide how the job ended; the lease runs out
                self.log.warning("giving the lease on %s back failed: %s; it runs out %.0f s after its last "
                                 "renewal", self.dest, err, self.lease_seconds)


class JobWatch:
    """Whether a job is still running, as its tasks see it: :meth:`check` reads the job's status
    (at most every ``every`` seconds) and raises JobStoppedError once the job is no longer
    running: cancelled (Ctrl-C, a cancellation from Prefect), or marked crashed by a job that
    took DEST over. Work that checks between items and frames stops there, whatever process or
    machine it runs on, instead of writing on into a DEST its job no longer holds. Only an answer
    stops it: a database out of reach for a moment does not (the work records its results there
    when done, and fails then if it is still out of reach)."""

    EVERY = 2.0   # seconds between reads of the job's status

    def __init__(self, store: ProvenanceStore, job_id: str, every: float | None = None) -> None:
        self.store, self.job_id, self.every = store, job_id, self.EVERY if every is None else every
        self._checked = -float("inf")

    def check(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.every:
            return
        try:
            status = self.store.job_status(self.job_id)
        except Exception:  # noqa: BLE001 - the database out of reach a moment: the work goes on, asked again next time
            return
        if status != "running":
            raise JobStoppedError(f"job {self.job_id} is {status or 'not recorded'}: its work stops here")
        self._checked = now
