"""Background work: RQ queues, the jobs they carry and the worker process that runs them."""
