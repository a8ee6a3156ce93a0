"""Tests of the click commands."""
