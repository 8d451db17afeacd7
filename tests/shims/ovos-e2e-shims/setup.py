"""Test-only OVOS plugins for tests/test_listener_e2e.py; installed only into that test's venv."""
from setuptools import setup

setup(
    name="ovos-e2e-shims",
    version="0.0.1",
    description="Test-only OVOS plugins: a real-time WAV microphone, a wake word that never fires, "
                "and ovos-vad-plugin-noise under the entry-point group plugin-manager 2.x reads",
    py_modules=["ovos_e2e_shims"],
    entry_points={
        "opm.microphone": ["ovos-microphone-plugin-e2e-wav = ovos_e2e_shims:WavFolderMicrophone"],
        "opm.wake_word": ["ovos-ww-plugin-e2e-never = ovos_e2e_shims:NeverWakeWord"],
        # ovos-vad-plugin-noise 0.1.2 registers only under 'ovos.plugin.VAD', which plugin-manager
        # 2.2 does not read; this puts the real plugin's own class under 'opm.VAD'.
        "opm.VAD": ["ovos-vad-plugin-noise = ovos_vad_plugin_noise:NoiseVAD"],
    },
)
