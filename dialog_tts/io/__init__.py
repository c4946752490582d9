"""Clips and files: audio values and codecs, the writers, tags, subtitles, the review page, outputs."""
