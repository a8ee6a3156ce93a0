"""The one reading of an app's declared Python version (init's image and the local target's venv)."""

from __future__ import annotations

from deployctl import pyversion


def _reader(files: dict[str, str]):
    return files.get


def test_a_pin_wins_over_a_range_and_the_nearest_pin_wins() -> None:
    files = {"pyproject.toml": "[project]\nrequires-python = '>=3.10'\n", ".python-version": "3.11\n",
             "svc/runtime.txt": "python-3.13.1\n"}
    found = pyversion.declared(_reader(files), ["svc", "."])
    assert found == pyversion.Declared("3.13", "svc/runtime.txt", ("3.13",))
    assert pyversion.declared(_reader(files), ["."]) == pyversion.Declared("3.11", ".python-version", ("3.11",))


def test_a_range_picks_the_default_and_allows_every_fitting_version() -> None:
    files = {"pyproject.toml": "[project]\nrequires-python = '>=3.11'\n"}
    found = pyversion.declared(_reader(files), ["."])
    assert found == pyversion.Declared("3.12", "requires-python >=3.11", ("3.12", "3.13", "3.11"))
    old = {"pyproject.toml": "[project]\nrequires-python = '<3.12'\n"}
    assert pyversion.declared(_reader(old), ["."]) == pyversion.Declared("3.11", "requires-python <3.12",
                                                                          ("3.11", "3.10"))


def test_a_pin_no_image_exists_for_and_nothing_declared_are_not_declarations() -> None:
    assert pyversion.declared(_reader({".python-version": "pypy3.9\n"}), ["."]) is None
    assert pyversion.declared(_reader({".python-version": "cpython-3.12.1\n"}), ["."]) == \
        pyversion.Declared("3.12", ".python-version", ("3.12",))
    assert pyversion.declared(_reader({"pyproject.toml": "[project]\nname = 'x'\n"}), ["."]) is None
