"""HTTP API: /health (liveness), /startup (dependencies), /docs, / and the notes API under /api."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app import db, settings
from app.models import EMBEDDING_DIM, Note


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    db.dispose()  # at shutdown (SIGTERM): close the pooled connections instead of dropping them


app = FastAPI(title="notes", description="The sample service deployed by deployctl.", version="1.0.0",
              lifespan=lifespan)
STATIC = Path(__file__).parent / "static"
DbSession = Annotated[Session, Depends(db.session)]


@app.get("/health")
def health() -> dict[str, str]:
    """Liveness: answers without touching any dependency."""
    return {"status": "healthy", "service": settings.service(), "revision": settings.revision()}


@app.get("/startup")
def startup() -> JSONResponse:
    """Readiness of every dependency; 503 when one fails. Reports states, never values."""
    checks = {"database": _database_state(), "secret_key": settings.secret_key_state()}
    ok = all(state == "ok" for state in checks.values())
    return JSONResponse({"status": "ok" if ok else "failing", "checks": checks}, status_code=200 if ok else 503)


def _database_state() -> str:
    """A read of the app's own table, not just a login: a login without privileges on the schema (a rotated
    password's second login before its GRANT, say) must keep the revision from ever getting traffic."""
    try:
        with db.engine().connect() as conn:
            conn.execute(text("SELECT 1 FROM notes LIMIT 1"))
    except db.NotConfigured:
        return "missing: DATABASE_URL"
    except SQLAlchemyError as exc:
        return f"error: {type(getattr(exc, 'orig', None) or exc).__name__}"
    return "ok"


@app.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


class NoteIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = ""
    tags: list[str] = []
    embedding: list[float] | None = Field(default=None, min_length=EMBEDDING_DIM, max_length=EMBEDDING_DIM)


class NoteOut(BaseModel):
    id: int
    title: str
    body: str
    tags: list[str]
    created_at: datetime


def _out(note: Note) -> NoteOut:
    return NoteOut(id=note.id, title=note.title, body=note.body, tags=list(note.tags), created_at=note.created_at)


@app.post("/api/notes", status_code=201)
def create_note(note: NoteIn, session: DbSession) -> NoteOut:
    row = Note(title=note.title, body=note.body, tags=note.tags, embedding=note.embedding)
    session.add(row)
    session.commit()
    session.refresh(row)
    return _out(row)


@app.get("/api/notes")
def list_notes(
    session: DbSession, tag: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[NoteOut]:
    query = select(Note).order_by(Note.id.desc()).limit(limit)
    if tag:
        query = query.where(Note.tags.contains([tag]))
    return [_out(n) for n in session.scalars(query)]


@app.get("/api/notes/{note_id}")
def get_note(note_id: int, session: DbSession) -> NoteOut:
    note = session.get(Note, note_id)
    if note is None:
        raise HTTPException(404, "no such note")
    return _out(note)


@app.post("/api/notes/similar")
def similar(embedding: Annotated[list[float], Field(min_length=EMBEDDING_DIM, max_length=EMBEDDING_DIM)],
            session: DbSession, limit: Annotated[int, Query(ge=1, le=50)] = 5) -> list[NoteOut]:
    query = (select(Note).where(Note.embedding.is_not(None))
             .order_by(Note.embedding.cosine_distance(embedding)).limit(limit))
    return [_out(n) for n in session.scalars(query)]
