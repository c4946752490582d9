"""Installed distributions read without importlib.metadata (start-up): the same answers as importlib.metadata."""

from __future__ import annotations

from importlib import metadata

import pytest

from dialog_tts import backends, dists


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path with one installed plugin distribution (as pip lays it out)."""
    info = tmp_path / "dialog_tts_fancy-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dialog-tts-fancy\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nfancy = fancy.cli:main\n\n"
                                           "[dialog_tts.backends]\nfancy = fancy_tts.backend:FancyBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    dists.clear()
    yield tmp_path
    dists.clear()


def test_a_plugins_entry_point_and_version_are_found(plugin_dir):
    assert dists.entry_point_targets("dialog_tts.backends")["fancy"] == "fancy_tts.backend:FancyBackend"
    assert dists.entry_point_targets("console_scripts")["fancy"] == "fancy.cli:main"
    assert dists.version("dialog-tts-fancy") == dists.version("Dialog_TTS.Fancy") == "1.2.3"
    assert dists.version("dialog-tts-fancy") == metadata.version("dialog-tts-fancy")   # the reference agrees


def test_the_registry_lists_a_plugin_backend(plugin_dir):
    backends.rescan()                       # the plugin was installed after the registry first looked
    try:
        assert "fancy" in backends.available()
        assert backends.target("fancy") == "fancy_tts.backend:FancyBackend"
        assert backends.target("piper") == "dialog_tts.backends.piper:PiperBackend"    # a built-in stays one
    finally:
        backends.rescan()                   # the plugin's folder goes with this test: looked for again


def test_the_same_answers_as_importlib_metadata_for_this_environment():
    dists.clear()
    names = {d.metadata["Name"] for d in metadata.distributions()}
    assert len(names) > 10
    assert {n: dists.version(n) for n in names} == {n: metadata.version(n) for n in names}
    for group in ("console_scripts", "pytest11", "dialog_tts.backends"):
        reference: dict[str, str] = {}
        for ep in metadata.entry_points(group=group):
            reference.setdefault(ep.name, ep.value)
        assert dists.entry_point_targets(group) == reference
    assert dists.version("surely-not-installed-anywhere") is None
