"""Tests of the Pulumi program (under mocks) and of the policy rules."""
