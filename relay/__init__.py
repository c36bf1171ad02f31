"""Prefect-facing delivery of outbox events: resume a job's flow run with its typed run input, progress artifact."""
