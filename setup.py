"""Packaging for ovos-stt-plugin-google-apikey (setup.py, as OVOS plugins do)."""
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_ID = "ovos-stt-plugin-google-apikey"
PLUGINS = [
    f"{PLUGIN_ID} = ovos_stt_plugin_google_apikey.plugin:GoogleAPIKeySTT",
    f"{PLUGIN_ID}-streaming = ovos_stt_plugin_google_apikey.streaming:GoogleAPIKeyStreamingSTT",
]
CONFIGS = [
    f"{PLUGIN_ID}.config = ovos_stt_plugin_google_apikey.plugin:GoogleAPIKeySTTConfig",
    f"{PLUGIN_ID}-streaming.config = ovos_stt_plugin_google_apikey.plugin:GoogleAPIKeySTTConfig",
]

WYOMING = ["wyoming>=1.10,<2", "zeroconf>=0.100"]


def version() -> str:
    scope: dict = {}
    with open(os.path.join(HERE, "ovos_stt_plugin_google_apikey", "version.py")) as f:
        exec(f.read(), scope)
    return scope["__version__"]


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    README = f.read()

setup(
    name="ovos-stt-plugin-google-apikey",
    version=version(),
    description="OVOS STT plugin: Google Cloud Speech-to-Text over REST with just an API key",
    long_description=README,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=["ovos_stt_plugin_google_apikey", "ovos_stt_plugin_google_apikey.server"],
    # The language table is data of the package, not a package of its own: package_data alone
    # (include_package_data would take MANIFEST.in's files too, and setuptools then warns that
    # the 'data' folder is a package missing from `packages`).
    package_data={"ovos_stt_plugin_google_apikey": ["data/*.txt"]},
    python_requires=">=3.9",
    install_requires=[
        # >=0.9 covers the released ovos-stt-server launcher (it pins OPM <1.0); <3 is today's OVOS.
        "ovos-plugin-manager>=0.9.0,<3.0.0",
        "ovos-utils>=0.0.38,<1.0.0",
        "requests>=2.26,<3",
        "audioop-lts>=0.2.1; python_version>='3.13'",
    ],
    extras_require={
        # httptools: uvicorn's C parser (h11, its fallback, cost 15 % of the server's time);
        # fastapi-offline (MIT): Swagger UI and ReDoc served by the server, so /docs works offline;
        # pybase64 (BSD): SIMD base64 (wheels for aarch64 and armv7l), 300 -> 5 us on a 4.5 s clip
        "server": ["fastapi>=0.100,<1", "uvicorn>=0.22,<1", "httptools>=0.6", "python-multipart>=0.0.9",
                   "prometheus_client>=0.16", "fastapi-offline>=1.7,<2", "pybase64>=1.3"],
        "flac": ["soundfile>=0.12"],     # FLAC and Ogg Opus; wheels bundle libsndfile
        # `ovos-google-stt wyoming` (Home Assistant); zeroconf for --zeroconf discovery
        "wyoming": WYOMING,
        "test": ["pytest>=7", "hypothesis>=6",
                 # the linters .ci/run runs, pinned: a new release may add findings
                 "ruff==0.17.6", "mypy==2.4.1", "httpx>=0.24", "SpeechRecognition>=3.8", "build>=1",
                 "schemathesis>=4,<5", "matplotlib>=3.5",
                 # drives Debian's chromium (no browser download) in tests/test_docs_offline.py
                 "playwright>=1.40",
                 # its own loaders (module and fallback) in tests/test_ovos_loading.py; pure Python
                 "ovos-dinkum-listener>=0.5,<1",
                 # Google's own description of the API (its discovery document) and its own
                 # client's REST transport: what the fake Google is checked against.
                 "google-api-python-client>=2.100", "google-cloud-speech>=2.20",
                 *WYOMING],
    },
    entry_points={
        "console_scripts": ["ovos-google-stt = ovos_stt_plugin_google_apikey.cli:main"],
        "opm.stt": PLUGINS,
        "opm.stt.config": CONFIGS,
        # OPM 0.x (the released ovos-stt-server launcher) reads only the old groups.
        "mycroft.plugin.stt": PLUGINS,
        "mycroft.plugin.stt.config": CONFIGS,
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: End Users/Desktop",
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Speech",
    ],
    keywords="OpenVoiceOS OVOS mycroft plugin stt google speech-to-text",
)
