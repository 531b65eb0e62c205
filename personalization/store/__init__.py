"""Redis and local files: profiles, the exposure writer, journal, spool, partitions, erasure, retention."""
