"""Fakes of the external systems deployctl talks to, driven through the real client libraries.

Rule: a fake keeps the remote state in memory, answers through the real wire protocol (gRPC on localhost,
or drongo's HTTP interception) and records every mutating call, so tests assert on outcomes — what the
fake cloud holds — and on how many changes were made. Fault injection (bursts of 503/429, a change applied
but its response lost) is part of each fake. Recorded calls carry resource names, never secret payloads.
"""
