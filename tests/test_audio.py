"""Audio conversion: any rate, width and channel count becomes what Google accepts."""
from __future__ import annotations

import pytest

from audio_samples import le16, peak_frequency16, rms16, silence, tone, wav
from ovos_stt_plugin_google_apikey import audio
from ovos_stt_plugin_google_apikey.errors import AudioError


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_wav_matrix_keeps_native_rate_and_the_tone(rate, width, channels):
    pcm = audio.to_linear16(audio.from_wav(wav(tone(0.5, rate, width, channels), rate, width, channels)))
    assert (pcm.sample_rate, pcm.sample_width, pcm.channels) == (rate, 2, 1)
    assert pcm.duration == pytest.approx(0.5, abs=0.001)
    # The mono mix of identical channels is the tone itself, at half scale (0.5 amplitude).
    assert rms16(pcm.data) == pytest.approx(0.5 * 32767 / 2 ** 0.5, rel=0.03)
    assert peak_frequency16(pcm.data, rate) == pytest.approx(440, rel=0.03)


@pytest.mark.parametrize("rate", [4000, 6000, 96000, 192000])
def test_rates_outside_google_range_are_resampled_to_16k(rate):
    pcm = audio.to_linear16(audio.from_raw(tone(0.5, rate), rate))
    assert pcm.sample_rate == 16000
    assert pcm.duration == pytest.approx(0.5, abs=0.002)
    assert peak_frequency16(pcm.data, 16000) == pytest.approx(440, rel=0.03)


def test_channels_are_mixed_not_dropped():
    # Left silent, right loud: a "first channel only" conversion would give silence.
    left = silence(0.2)
    right = tone(0.2)
    stereo = b"".join(left[i:i + 2] + right[i:i + 2] for i in range(0, len(left), 2))
    pcm = audio.to_linear16(audio.from_raw(stereo, 16000, 2, 2))
    assert rms16(pcm.data) == pytest.approx(rms16(right) / 2, rel=0.02)


def test_eight_bit_wav_is_unsigned_on_disk_and_signed_in_memory():
    pcm = audio.from_wav(wav(silence(0.1, width=1), width=1))
    assert set(pcm.data) == {0}           # unsigned 128 on disk is signed 0 in memory


def test_audiodata_from_opm_and_speech_recognition_shapes():
    from ovos_plugin_manager.utils.audio import AudioData
    data = tone(0.3, 22050)
    pcm = audio.from_audio(AudioData(data, 22050, 2))
    assert (pcm.data, pcm.sample_rate, pcm.sample_width, pcm.channels) == (data, 22050, 2, 1)

    class LooksLikeSpeechRecognition:      # duck-typed: only the common attributes
        frame_data, sample_rate, sample_width = data, 22050, 2
    assert audio.from_audio(LooksLikeSpeechRecognition()).data == data


def test_bytes_are_wav_by_magic_else_raw_16k():
    raw = tone(0.25)
    assert audio.from_audio(raw) == audio.PCM(raw, 16000, 2, 1)
    assert audio.from_audio(wav(raw, 8000)).sample_rate == 8000


def test_to_wav_round_trips():
    for width in (1, 2, 3):
        pcm = audio.PCM(tone(0.1, 16000, width), 16000, width)
        assert audio.from_wav(audio.to_wav(pcm)) == pcm


@pytest.mark.parametrize("data,message", [
    (b"RIFF\x00\x00\x00\x00WAVEjunk", "not a readable PCM WAV"),
    (b"RIFF" + b"\xff" * 40, "not a readable PCM WAV"),
])
def test_broken_wav_is_an_audio_error(data, message):
    with pytest.raises(AudioError, match=message):
        audio.from_audio(data)


def test_lying_header_rates_and_widths_are_refused():
    good = wav(tone(0.1))
    zero_rate = good[:24] + (0).to_bytes(4, "little") + good[28:]
    with pytest.raises(AudioError):
        audio.from_audio(zero_rate)
    with pytest.raises(AudioError, match="plausible"):
        audio.PCM(b"\0\0", 5_000_000, 2)
    with pytest.raises(AudioError, match="sample width"):
        audio.PCM(b"\0" * 10, 16000, 5)
    with pytest.raises(AudioError, match="channels"):
        audio.PCM(b"\0" * 10, 16000, 2, 0)


def test_partial_trailing_frame_is_dropped():
    assert audio.from_raw(le16([1, 2, 3]) + b"\x07").data == le16([1, 2, 3])


def test_not_audio_at_all():
    with pytest.raises(AudioError, match="cannot read audio from int"):
        audio.from_audio(42)


def test_float_wav_is_refused_clearly():
    good = wav(tone(0.1, width=4), width=4)
    float_fmt = good[:20] + (3).to_bytes(2, "little") + good[22:]   # WAVE_FORMAT_IEEE_FLOAT
    with pytest.raises(AudioError, match="not a readable PCM WAV"):
        audio.from_audio(float_fmt)
