"""Finishing: the timeline, the block mixer, loudness and true peak, music under the dialog."""
