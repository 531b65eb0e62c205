"""Demo data, synthetic traffic and the simulator behind ``vary simulate``."""
