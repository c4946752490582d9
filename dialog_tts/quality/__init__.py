"""The quality gate: which checks every take gets, the checks themselves, the recognizer."""
