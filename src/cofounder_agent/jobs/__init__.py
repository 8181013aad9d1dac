"""The job system: queue, worker, events and stored results behind small ports."""
