"""Run your own code in a workflow's steps: see README.md."""

from wfworker import protocol
from wfworker.worker import Job, NonRetryableError, StepNotFree, Worker

__all__ = ["Job", "NonRetryableError", "StepNotFree", "Worker", "protocol"]
