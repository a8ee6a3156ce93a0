"""Shared by the unit tests of the stores: a GCS state bucket in drongo's fake (generation preconditions
from tests/fakes/drongo_ext.py), driven through the real client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from drongo import mock_gcp
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from tests.fakes import drongo_ext

BUCKET = "example-staging-deployctl"


@pytest.fixture
def gcs() -> Iterator[storage.Client]:
    drongo_ext.install()
    drongo_ext.reset()
    with mock_gcp():
        client = storage.Client(project="example-staging", credentials=AnonymousCredentials())
        client.create_bucket(BUCKET)
        yield client
