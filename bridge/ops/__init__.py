"""Operations: logs, metrics, health, the support console and the job tools behind the CLI."""
