"""Provenance database (SQLAlchemy 2; SQLite by default, PostgreSQL by URL), in PREMIS terms.

Jobs are runs of the archive flow; items are the input objects a job saw; outputs are the
renditions (and review thumbnails) written for an item; events are what happened to an item
(ingest with its sha256 fixity value, validate, colorize, refine, write, skip) with the agent
that did it. Every item row carries the input's sha256, the model's name and sha256, the full
parameter set and its key, times, outcome and error. The schema is migrated with Alembic on open.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from colorize_core.errors import ProvenanceError

MIGRATIONS = Path(__file__).parent / "migrations"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
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
                  model_sha256: str, software: dict[str, Any], flow_run_id: str | None) -> str:
        job_id = str(uuid.uuid4())
        with self.session() as s:
            s.add(Job(id=job_id, source=source, dest=dest, params=params, params_key=params_key,
                      model_name=model_name, model_sha256=model_sha256, software=software,
                      flow_run_id=flow_run_id))
        return job_id

    def finish_job(self, job_id: str, status: str) -> None:
        with self.session() as s:
            job = s.get(Job, job_id)
            job.status, job.finished_at = status, utcnow()

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
                Item.format, Item.width, Item.height, Item.channels, Item.bit_depth, Item.flags, Item.model_name]
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

    def add_events(self, events: list[Event]) -> None:
        """Record events on existing items (review decisions, links between outputs)."""
        with self.session() as s:
            for e in events:
                s.add(e)

    def item(self, item_id: int) -> Item | None:
        with self.session() as s:
            return s.get(Item, item_id)

    def recorded_in_job(self, job_id: str, source_uris: list[str]) -> set[str]:
        """Which of ``source_uris`` this job has recorded already (a retried batch skips them)."""
        if not source_uris:
            return set()
        with self.session() as s:
            q = select(Item.source_uri).where(Item.job_id == job_id, Item.source_uri.in_(source_uris))
            return set(s.scalars(q).all())

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

    def job_items(self, job_id: str) -> list[dict[str, Any]]:
        """Every item of a job as plain dicts, with outputs (of the earlier item for skips)."""
        with self.session() as s:
            items = s.scalars(select(Item).where(Item.job_id == job_id).order_by(Item.rel_path, Item.id)).all()
            rows = []
            for it in items:
                done = s.get(Item, it.previous_item_id) if it.previous_item_id else it
                row = {c.name: getattr(it, c.name) for c in Item.__table__.columns}
                row["outputs"] = [{"kind": o.kind, "uri": o.uri, "sha256": o.sha256, "size": o.size}
                                  for o in done.outputs]
                row["media"] = done.media
                row["done_item_id"] = done.id if done.status == "done" else None
                row["shots"] = [{"start": sh.start_frame, "end": sh.end_frame, "shots": sh.shots,
                                 "stills": sh.stills, "warping_error": sh.warping_error,
                                 "warping_error_unsmoothed": sh.warping_error_unsmoothed,
                                 "colourfulness": sh.colourfulness, "job_id": sh.job_id}
                                for sh in s.scalars(select(Shot).where(Shot.item_id == done.id)
                                                    .order_by(Shot.start_frame))] if done.media_type == "film" else []
                if it.previous_item_id:
                    row["colourfulness"] = done.colourfulness
                    row["done_in_job"] = done.job_id
                rows.append(row)
            return rows
