"""Web intake: receive Real Geeks webhooks, verify, store durably, queue, acknowledge."""
