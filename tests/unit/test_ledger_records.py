"""Stored records are parsed strictly and carry a schema version, in both stores (SQLite rows, GCS objects).

A record that cannot be read is one LedgerDamaged error naming the record and where it is, with the repair
command as the hint (exit 5), never a JSONDecodeError or TypeError; one a newer deployctl wrote is refused,
not misread. Records are planted by writing the stored text straight into the medium (the row, the object),
not through the code under test."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.cloud import storage

from deployctl.errors import LedgerDamaged, PreconditionError
from deployctl.pipeline.ledger import StoredLedger
from deployctl.pipeline.model import ReleaseRecord, StageResult
from deployctl.targets.gcp.state import GcsLedger
from deployctl.targets.local.state import SqliteLedger
from tests.gcp.conftest import FAST
from tests.unit.conftest import BUCKET

HINT = "Repair it: deployctl ledger repair s"


@dataclass
class Medium:
    open: Callable[[], StoredLedger]  # the stack's ledger, opened anew as a separate process would
    plant: Callable[[str, str], None]  # store this text as the record of this id, bypassing the ledger
    stored: Callable[[str], str]  # the text stored for this id
    where: Callable[[str], str]  # how an error names the record of this id


@pytest.fixture(params=["sqlite", "gcs"])
def medium(request: pytest.FixtureRequest, tmp_path: Path) -> Medium:
    if request.param == "sqlite":
        path = tmp_path / "s" / "ledger.db"

        def plant(release_id: str, text: str) -> None:
            with contextlib.closing(sqlite3.connect(path)) as db, db:
                db.execute("INSERT INTO releases (id, record) VALUES (?, ?) "
                           "ON CONFLICT(id) DO UPDATE SET record = excluded.record", (release_id, text))

        def stored(release_id: str) -> str:
            with contextlib.closing(sqlite3.connect(path)) as db:
                return str(db.execute("SELECT record FROM releases WHERE id = ?", (release_id,)).fetchone()[0])

        return Medium(lambda: SqliteLedger(path), plant, stored, lambda rid: f"record {rid} of {path}")
    client: storage.Client = request.getfixturevalue("gcs")
    bucket = client.bucket(BUCKET)
    return Medium(lambda: GcsLedger(client, BUCKET, "s", FAST),
                  lambda rid, text: bucket.blob(f"deployctl/s/releases/{rid}.json").upload_from_string(text),
                  lambda rid: bucket.blob(f"deployctl/s/releases/{rid}.json").download_as_text(),
                  lambda rid: f"gs://{BUCKET}/deployctl/s/releases/{rid}.json")


def record(release_id: str, **kw: object) -> ReleaseRecord:
    return ReleaseRecord(id=release_id, stack="s", kind="release", started=1700000000.0, command="deployctl up s",
                         **kw)  # type: ignore[arg-type]


def three(medium: Medium) -> StoredLedger:
    ledger = medium.open()
    for _ in range(3):
        ledger.save(record(ledger.next_id(), outcome="succeeded", stages=[StageResult("build", "ok", 1.5)]))
    return ledger


def good(release_id: str, **changes: object) -> str:
    return json.dumps({**record(release_id).to_dict(), **changes})


@pytest.mark.parametrize(("text", "reason"), [
    ('{"id": "r0002", oops', "not JSON: Expecting property name enclosed in double quotes: line 1 column 17 (char 16)"),
    ("[1, 2]", "not a JSON object but list"),
    (good("r0002", started="yesterday"), "started: Input should be a valid number"),
    (good("r0002", started="1700000000"), "started: Input should be a valid number"),  # strict: no coercion
    (good("r0002", stages=[{"name": "build"}]), "stages.0.status: Field required (and 1 more)"),
    (good("r0002", kind="deploy"), "kind: Input should be 'release', 'rollback', 'rotate' or 'heal'"),
    (good("r0009"), "it holds the record of r0009"),
], ids=["bad JSON", "not an object", "wrong type", "a number as a string", "bad stage", "unknown kind", "other id"])
def test_a_record_that_cannot_be_read_is_one_error_naming_it(medium: Medium, text: str, reason: str) -> None:
    three(medium)
    medium.plant("r0002", text)
    ledger = medium.open()
    for read in (ledger.history, lambda: ledger.get("r0002")):
        with pytest.raises(LedgerDamaged) as caught:
            read()
        assert (caught.value.message, caught.value.hint, caught.value.exit_code) == (
            f"{medium.where('r0002')} is damaged ({reason})", HINT, 5)
    assert medium.stored("r0002") == text  # reading changed nothing


def test_records_carry_their_schema_and_one_without_it_is_schema_1(medium: Medium) -> None:
    ledger = three(medium)
    assert json.loads(medium.stored("r0001"))["schema"] == 1
    old = record("r0002", outcome="succeeded").to_dict()
    del old["schema"]  # written before records carried it
    medium.plant("r0002", json.dumps(old))
    got = medium.open().get("r0002")
    assert got is not None and got.schema == 1 and got == record("r0002", outcome="succeeded")
    assert [r.id for r in ledger.history()] == ["r0003", "r0002", "r0001"]


def test_a_rollback_recorded_before_repinned_existed_is_read_from_its_planned_steps(medium: Medium) -> None:
    three(medium)
    deploy = {"stage": "deploy", "service": "api", "action": "run", "message": "start a candidate revision"}
    switch = {"stage": "promote", "service": "api", "action": "run", "message": "route api 100% to api-1"}
    for release_id, steps in (("r0002", [deploy]), ("r0003", [switch])):
        old = {**record(release_id, restored="r0001", plan=steps).to_dict(), "kind": "rollback"}
        del old["repinned"]  # written before records carried it
        medium.plant(release_id, json.dumps(old))
    ledger = medium.open()
    assert [(r.id, r.repinned) for r in ledger.history()] == [("r0003", False), ("r0002", True), ("r0001", False)]
    medium.plant("r0002", good("r0002", kind="rollback", plan=[deploy], repinned=False))
    got = medium.open().get("r0002")
    assert got is not None and got.repinned is False  # a recorded field is what it says, whatever was planned


def test_a_record_from_a_newer_deployctl_is_refused_not_misread(medium: Medium) -> None:
    three(medium)
    text = good("r0003", schema=2, outcome={"state": "succeeded"})  # a shape this deployctl does not know
    medium.plant("r0003", text)
    with pytest.raises(PreconditionError) as caught:
        medium.open().history()
    assert not isinstance(caught.value, LedgerDamaged)
    assert (caught.value.message, caught.value.hint, caught.value.exit_code) == (
        f"{medium.where('r0003')} was written by a newer deployctl (record schema 2; this one reads 1)",
        "Upgrade deployctl to use this stack; nothing was changed.", 5)
    assert medium.stored("r0003") == text


def test_gcp_repair_moves_a_bad_object_aside_and_keeps_its_id_reserved(gcs: storage.Client) -> None:
    bucket, prefix = gcs.bucket(BUCKET), f"gs://{BUCKET}/deployctl/s/"
    ledger = GcsLedger(gcs, BUCKET, "s", FAST)
    for _ in range(4):
        ledger.save(record(ledger.next_id(), outcome="succeeded"))
    bucket.blob("deployctl/s/releases/r0002.json").upload_from_string("{oops")
    bucket.blob("deployctl/s/releases/r0004.json").upload_from_string(good("r0004", started="yesterday"))

    said = GcsLedger(gcs, BUCKET, "s", FAST).repair()

    aside = sorted(b.name for b in gcs.list_blobs(BUCKET, prefix="deployctl/s/damaged/"))
    assert len(aside) == 2 and aside[0].startswith("deployctl/s/damaged/r0002-")
    assert said == [
        f"Moved {prefix}releases/r0002.json (not JSON: Expecting property name enclosed in double quotes: "
        f"line 1 column 2 (char 1)) aside to gs://{BUCKET}/{aside[0]}; r0002 stays reserved, so it is never reused.",
        f"Moved {prefix}releases/r0004.json (started: Input should be a valid number) aside to "
        f"gs://{BUCKET}/{aside[1]}; r0004 stays reserved, so it is never reused.",
        f"{prefix}releases/ now holds 2 records (r0001, r0003); the next id is r0005.",
        f"The state bucket keeps earlier generations of every object (versioning): "
        f"gcloud storage ls --all-versions {prefix}releases/",
    ]
    assert bucket.blob(aside[0]).download_as_text() == "{oops"  # moved unchanged
    repaired = GcsLedger(gcs, BUCKET, "s", FAST)
    assert [r.id for r in repaired.history()] == ["r0003", "r0001"]
    assert repaired.get("r0002") is None and repaired.next_id() == "r0005"
    assert repaired.repair() == [f"{prefix}releases/ is not damaged: 2 records (r0001, r0003). Nothing to do."]
