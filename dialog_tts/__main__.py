"""``python -m dialog_tts``: the same as the ``dialog-tts`` command."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="dialog-tts")
