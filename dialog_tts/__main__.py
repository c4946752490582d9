"""``python -m dialog_tts``: the same as the ``dialog-tts`` command."""

from dialog_tts.cli import main

if __name__ == "__main__":
    main(prog_name="dialog-tts")
