"""Wiring: the simulator as the handler of the processor's steps, on a worker of the worker library (worker/)."""

from wfworker import Worker

from services.processor.settings import ProcessorSettings
from services.processor.simulator import Simulator


def create_app(settings: ProcessorSettings) -> Worker:
    worker = settings.worker("processor", "processor", settings.concurrency, settings.port)
    simulator = Simulator(settings)
    for workflow_type, step in settings.step_names:
        worker.add_step(workflow_type, step, simulator.run)
    return worker
