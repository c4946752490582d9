"""Synthesis: jobs, the engine (the only concurrency), its scheduling, executors and the cache."""
