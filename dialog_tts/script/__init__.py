"""The script and its cast: parsing, front matter, speaker maps, casting, lexicon, voices."""
