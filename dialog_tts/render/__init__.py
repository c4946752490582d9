"""A render: its settings as values, the pipeline from jobs to files, reports, the up-to-date check."""
