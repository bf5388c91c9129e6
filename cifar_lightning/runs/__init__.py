"""Run plumbing: run folders, checkpoint files, the resume decision and the record of each run."""
