"""The released OVOS packages the compatibility tests install, each into its own venv."""

# ovos-stt-http-server 0.1.4's __main__ imports its gradio_app module, which imports gradio at
# start-up even without --gradio. gradio (with pandas, matplotlib, numpy...) is ~380 MB and is
# only used with --gradio, so a stub module stands in for it (the launcher then takes 122 MB).
GRADIO_STUB = {
    "gradio/__init__.py": (
        '"""Stub: ovos-stt-http-server 0.1.4 imports gradio at start-up but uses it only with --gradio."""\n'
        "def __getattr__(name):\n"
        "    raise ImportError('gradio stub: the real gradio is not installed')\n"
    ),
}

# The released client; resolves ovos-plugin-manager 2.x. It imports speech_recognition without
# declaring it.
CLIENT_013 = [["ovos-stt-plugin-server==0.1.3", "SpeechRecognition"]]

# The released launcher, light: its own pins, without gradio/flask, plus the SpeechRecognition
# it forgets to declare. OPM 0.9 imports pkg_resources, gone from setuptools 82.
SERVER_014 = [
    ["--no-deps", "ovos-stt-http-server==0.1.4"],
    ["ovos-plugin-manager>=0.7.0,<1.0.0", "ovos-utils>=0.0.32,<1.0.0", "fastapi~=0.95",
     "uvicorn~=0.22", "SpeechRecognition", "setuptools<81"],
]
SERVER_014_SITE_FILES = GRADIO_STUB

# The current pre-release launcher (it pulls ovos-plugin-manager pre-releases). Pinned: --pre
# would pick up a new alpha of every OVOS dependency on each install.
SERVER_028 = [["ovos-stt-http-server==0.28.3a1"]]
