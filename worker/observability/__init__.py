"""Operations: metrics, structured logs, traces."""
