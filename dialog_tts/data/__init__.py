"""Data files shipped with dialog-tts (the Edge voice table)."""
