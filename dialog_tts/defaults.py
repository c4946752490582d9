"""Defaults the command line shows before anything else loads: a leaf module, it imports nothing.

``dialog-tts --help`` prints them; importing the voice module for them (its
dataclass and parsers) would be a measurable share of that start-up.
"""

#: The backend of speakers whose voice names none (the only place it is spelled).
DEFAULT_BACKEND = "piper"

#: How the voices' lines are levelled before the mix (``--leveling``): each line, each speaker's lines
#: together, or not; checked before the timeline or the mixer loads.
LEVELING = ("line", "speaker", "off")
