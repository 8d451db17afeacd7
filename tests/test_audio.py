"""Audio conversion: any rate, width and channel count becomes what Google accepts."""
from __future__ import annotations

import io
import math
import struct
import tracemalloc

import pytest
from audio_samples import le16, peak_frequency16, rms16, silence, tone, wav

from ovos_stt_plugin_google_apikey import audio, decoding
from ovos_stt_plugin_google_apikey.errors import AudioError, AudioTooLongError, UnsupportedAudioError

KSDATAFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def riff(fmt_tag: int, channels: int, rate: int, bits: int, samples: bytes, *,
         extensible: bool = False, container_bits: int = 0, before_data: bytes = b"",
         after_data: bytes = b"", data_size: int = -1, riff_size: int = -1) -> bytes:
    """A WAV file written by hand, as recorders write them (``wave`` writes only plain PCM)."""
    container = container_bits or bits
    align = channels * container // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else fmt_tag, channels, rate, rate * align,
                      align, container)
    if extensible:      # cbSize, valid bits, channel mask, sub-format GUID
        fmt += struct.pack("<HHI", 22, bits, (1 << channels) - 1) + struct.pack("<H", fmt_tag) + KSDATAFORMAT_TAIL
    elif fmt_tag != 1:
        fmt += struct.pack("<H", 0)
    body = b"WAVE" + chunk(b"fmt ", fmt) + before_data
    body += b"data" + struct.pack("<I", len(samples) if data_size < 0 else data_size) + samples
    body += b"\0" * (len(samples) & 1) + after_data
    return b"RIFF" + struct.pack("<I", len(body) if riff_size < 0 else riff_size) + body


def chunk(name: bytes, payload: bytes) -> bytes:
    return name + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def floats(seconds: float, rate: int = 16000, fmt: str = "<f", amplitude: float = 0.5) -> bytes:
    count = int(seconds * rate)
    return struct.pack(f"{fmt[0]}{count}{fmt[1]}",
                       *(amplitude * math.sin(2 * math.pi * 440 * i / rate) for i in range(count)))


def flac_file(pcm: bytes, rate: int = 16000, channels: int = 1) -> bytes:
    soundfile = pytest.importorskip("soundfile")
    np = pytest.importorskip("numpy")
    buffer = io.BytesIO()
    soundfile.write(buffer, np.frombuffer(pcm, "<i2").reshape(-1, channels), rate, format="FLAC")
    return buffer.getvalue()


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_wav_matrix_keeps_native_rate_and_the_tone(rate, width, channels):
    pcm = audio.to_linear16(decoding.from_wav(wav(tone(0.5, rate, width, channels), rate, width, channels)))
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
    pcm = decoding.from_wav(wav(silence(0.1, width=1), width=1))
    assert set(pcm.data) == {0}           # unsigned 128 on disk is signed 0 in memory


def test_audiodata_from_opm_and_speech_recognition_shapes():
    from ovos_plugin_manager.utils.audio import AudioData
    data = tone(0.3, 22050)
    pcm = decoding.from_audio(AudioData(data, 22050, 2))
    assert (pcm.data, pcm.sample_rate, pcm.sample_width, pcm.channels) == (data, 22050, 2, 1)

    class LooksLikeSpeechRecognition:      # duck-typed: only the common attributes
        frame_data, sample_rate, sample_width = data, 22050, 2
    assert decoding.from_audio(LooksLikeSpeechRecognition()).data == data


def test_bytes_are_wav_by_magic_else_raw_16k():
    raw = tone(0.25)
    assert decoding.from_audio(raw) == audio.PCM(raw, 16000, 2, 1)
    assert decoding.from_audio(wav(raw, 8000)).sample_rate == 8000


def test_to_wav_round_trips():
    for width in (1, 2, 3):
        pcm = audio.PCM(tone(0.1, 16000, width), 16000, width)
        assert decoding.from_wav(audio.to_wav(pcm)) == pcm


@pytest.mark.parametrize("data,message", [
    (b"RIFF\x00\x00\x00\x00WAVEjunk", "not a readable WAV"),
    (b"RIFF" + b"\xff" * 40, "not WAV audio; send WAV"),          # a RIFF form that is not WAVE
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "RIFF 'WEBP' file, not WAV audio"),
])
def test_broken_wav_is_an_audio_error(data, message):
    with pytest.raises(AudioError, match=message):
        decoding.from_audio(data)


def test_lying_header_rates_and_widths_are_refused():
    good = wav(tone(0.1))
    zero_rate = good[:24] + (0).to_bytes(4, "little") + good[28:]
    with pytest.raises(AudioError):
        decoding.from_audio(zero_rate)
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
        decoding.from_audio(42)


# ------------------------------------------------ WAVs as recorders write them (issue 12 point 5)

@pytest.mark.parametrize("bits, channels", [(16, 1), (24, 2), (32, 6), (24, 1)])
def test_wave_format_extensible_pcm_is_read(bits, channels):
    data = tone(0.5, 48000, bits // 8, channels)
    pcm = decoding.from_audio(riff(1, channels, 48000, bits, data, extensible=True))
    assert (pcm.sample_rate, pcm.sample_width, pcm.channels, pcm.data) == (48000, bits // 8, channels, data)
    mono = audio.to_linear16(pcm)
    assert peak_frequency16(mono.data, 48000) == pytest.approx(440, rel=0.03)


def test_extensible_20_valid_bits_in_a_24_bit_container():
    data = tone(0.2, 16000, 3)
    pcm = decoding.from_wav(riff(1, 1, 16000, 20, data, extensible=True, container_bits=24))
    assert (pcm.sample_width, pcm.data) == (3, data)


@pytest.mark.parametrize("extensible", [False, True])
@pytest.mark.parametrize("fmt, width", [("<f", 4), ("<d", 8)])
def test_float_wav_becomes_16_bit_pcm(extensible, fmt, width):
    pcm = decoding.from_wav(riff(3, 1, 16000, 8 * width, floats(0.5, fmt=fmt), extensible=extensible))
    assert (pcm.sample_rate, pcm.sample_width, pcm.duration) == (16000, 2, 0.5)
    assert rms16(pcm.data) == pytest.approx(0.5 * 32767 / 2 ** 0.5, rel=0.02)
    assert peak_frequency16(pcm.data, 16000) == pytest.approx(440, rel=0.03)


def test_float_out_of_range_clips_and_nan_is_silence():
    samples = struct.pack("<4f", 2.0, -3.0, float("nan"), float("inf"))
    pcm = decoding.from_wav(riff(3, 1, 16000, 32, samples))
    assert struct.unpack("<4h", pcm.data) == (32767, -32767, 0, 32767)


@pytest.mark.parametrize("tag, encode", [(6, "lin2alaw"), (7, "lin2ulaw")])
def test_alaw_and_mulaw_are_decoded(tag, encode):
    import audioop
    linear = tone(0.5, 8000)
    pcm = decoding.from_wav(riff(tag, 1, 8000, 8, getattr(audioop, encode)(linear, 2)))
    assert (pcm.sample_rate, pcm.sample_width, pcm.duration) == (8000, 2, 0.5)
    assert rms16(pcm.data) == pytest.approx(rms16(linear), rel=0.03)     # G.711 is ~13-bit


def test_compressed_wav_codecs_are_refused_naming_what_to_send():
    with pytest.raises(UnsupportedAudioError, match="0x0011.*send .*PCM"):        # IMA ADPCM
        decoding.from_wav(riff(0x11, 1, 8000, 4, bytes(100)))
    odd_guid = riff(1, 1, 16000, 16, tone(0.1), extensible=True).replace(KSDATAFORMAT_TAIL, bytes(14))
    with pytest.raises(UnsupportedAudioError, match="EXTENSIBLE.*send"):
        decoding.from_wav(odd_guid)


def test_extra_chunks_odd_sizes_and_trailing_chunks_are_skipped():
    data = tone(0.3)
    extra = chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00sox\x00\x00") + chunk(b"bext", b"x" * 7) + chunk(b"JUNK", bytes(3))
    pcm = decoding.from_wav(riff(1, 1, 16000, 16, data, before_data=extra, after_data=chunk(b"id3 ", b"tag")))
    assert pcm.data == data


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF, 10 ** 9])
def test_streamed_or_truncated_data_size_takes_what_is_there(size):
    data = tone(0.25)
    assert decoding.from_wav(riff(1, 1, 16000, 16, data, data_size=size)).data == data


def test_a_million_empty_chunks_cost_little():
    # 8 MB of empty JUNK chunks before the audio: refused after a bounded walk, not after a
    # million steps (the walk is capped; a recorder writes a handful of chunks).
    blob = riff(1, 1, 16000, 16, tone(0.1), before_data=b"JUNK\0\0\0\0" * 1_000_000)
    with pytest.raises(AudioError, match="more than 64 chunks"):
        decoding.from_wav(blob)
    assert len(blob) > 8_000_000


def test_data_before_fmt_and_short_fmt_are_clear_errors():
    with pytest.raises(AudioError, match="before 'fmt '"):
        decoding.from_wav(b"RIFF\x10\x00\x00\x00WAVEdata\x02\x00\x00\x00\x00\x00")
    with pytest.raises(AudioError, match="too short"):
        decoding.from_wav(b"RIFF\x14\x00\x00\x00WAVEfmt \x04\x00\x00\x00\x01\x00\x01\x00data\x00\x00\x00\x00")


# ------------------------------------------------ the budget: known before decoding (issue 10 point 3)

def test_wav_budget_is_checked_from_the_header():
    blob = wav(silence(3.0))
    assert decoding.from_wav(blob, max_seconds=3.0).duration == 3.0
    with pytest.raises(AudioTooLongError, match="3.0 s, over the limit of 2 s"):
        decoding.from_wav(blob, max_seconds=2)


def test_raw_pcm_budget_uses_length_rate_and_width():
    # 10 MB declared as 1000 Hz 8-bit is 10,000 s: refused from the arithmetic alone.
    with pytest.raises(AudioTooLongError, match="10000.0 s"):
        decoding.decode(b"\x01\x02" * 5_000_000, sample_rate=1000, sample_width=1, max_seconds=120)


def test_flac_budget_from_streaminfo_before_decoding():
    blob = flac_file(silence(30.0))
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLongError, match="30.0 s, over the limit of 5 s"):
            decoding.decode(blob, max_seconds=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000          # 30 s decoded would be 960 kB; nothing was decoded


def test_flac_without_a_declared_length_stops_decoding_past_the_budget():
    blob = bytearray(flac_file(silence(60.0)))
    packed = int.from_bytes(blob[18:26], "big") & ~((1 << 36) - 1)     # total samples: 0, "unknown"
    blob[18:26] = packed.to_bytes(8, "big")
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLongError, match="more than 5 s"):
            decoding.decode(bytes(blob), max_seconds=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000          # the whole 60 s would be 1.9 MB; ~5 s of blocks were kept
    assert decoding.decode(bytes(blob)).duration == 60.0            # no budget: all of it


def test_compressed_audio_is_mixed_to_mono_as_it_decodes():
    left, right = tone(0.5), silence(0.5)
    stereo = b"".join(left[i:i + 2] + right[i:i + 2] for i in range(0, len(left), 2))
    pcm = decoding.decode(flac_file(stereo, 16000, 2))
    assert (pcm.channels, pcm.duration) == (1, 0.5)
    assert rms16(pcm.data) == pytest.approx(rms16(tone(0.5)) / 2, rel=0.02)


# ------------------------------------------------ what is not audio (issue 10 point 5)

@pytest.mark.parametrize("body, content_type, says", [
    (b"hello world", None, "not a whole number of 16-bit samples"),
    (b"hello world!", None, "text, not audio"),
    ("# README\n\nSome text, \u00e9t\u00e9.\n".encode(), None, "text, not audio"),
    (b"<html><body>x</body></html>", "text/html", "text/html body is not audio"),
    (b'{"a": 1}', "application/json", "application/json body is not audio"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), None, "PNG image"),
    (bytes(100), "application/x-www-form-urlencoded", "--data-binary @file"),
    (wav(tone(0.2)).replace(b"\n", b""), "application/x-www-form-urlencoded", "-F audio=@file"),
])
def test_what_is_not_audio_is_refused_saying_what_to_send(body, content_type, says):
    with pytest.raises(UnsupportedAudioError, match=says.replace("@", ".").replace("-", ".")) as caught:
        decoding.decode(body, content_type=content_type)
    assert "send" in str(caught.value)


def test_raw_pcm_rule():
    pcm = tone(0.25)
    for content_type in (None, "audio/L16", "application/octet-stream", "audio/wav"):
        assert decoding.decode(pcm, content_type=content_type).data == pcm
    # Declared by its parameters, raw PCM is taken whatever the Content-Type (curl --data-binary).
    declared = decoding.decode(pcm, content_type="application/x-www-form-urlencoded", sample_rate=8000)
    assert (declared.sample_rate, declared.data) == (8000, pcm)
    # A file is a file whatever it is labelled.
    assert decoding.decode(wav(pcm), content_type="text/plain").data == pcm
    assert decoding.decode(wav(pcm), content_type="application/x-www-form-urlencoded").data == pcm


def test_a_file_libsndfile_cannot_open_is_said_without_our_object_s_address():
    pytest.importorskip("soundfile")
    with pytest.raises(AudioError) as info:
        decoding.decode(b"fLaC" + bytes(500))          # a FLAC signature and nothing of FLAC
    assert "cannot decode the FLAC audio" in str(info.value)
    assert "object at 0x" not in str(info.value) and "<_io" not in str(info.value)


def test_mp3_is_decoded_when_libsndfile_reads_it(tmp_path):
    soundfile = pytest.importorskip("soundfile")
    np = pytest.importorskip("numpy")
    if "MP3" not in soundfile.available_formats():
        with pytest.raises(UnsupportedAudioError, match="MP3 needs libsndfile 1.1"):
            decoding.decode(b"ID3\x04" + bytes(200))
        return
    soundfile.write(tmp_path / "x.mp3", np.frombuffer(tone(1.0), "<i2"), 16000, format="MP3")
    blob = (tmp_path / "x.mp3").read_bytes()
    pcm = decoding.decode(blob, content_type="audio/mpeg")
    assert pcm.sample_rate == 16000 and pcm.duration == pytest.approx(1.0, abs=0.1)
    assert peak_frequency16(pcm.data, 16000) == pytest.approx(440, rel=0.05)
    with pytest.raises(AudioTooLongError):
        decoding.decode(blob, content_type="audio/mpeg", max_seconds=0.5)
    tagged = b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(10) + blob  # an ID3v2 tag (padding only): no label needed
    assert decoding.decode(tagged).duration == pytest.approx(pcm.duration, abs=0.05)


def test_raw_pcm_whose_first_sample_looks_like_an_mpeg_header_is_still_pcm():
    pcm = b"\xff\xfb\x90\x64" + tone(0.25)[4:]          # sync, MPEG-1 layer III, 128 kbit/s, 44.1 kHz
    assert decoding.sniff(pcm) is None and decoding.sniff(pcm, mpeg_labelled=True) == "MP3"
    assert decoding.decode(pcm).data == pcm


def test_high_rate_compressed_audio_is_brought_to_16k_as_it_decodes():
    # 120 s of 384 kHz FLAC silence is a few kB; decoded at its rate it would be 92 MB.
    pcm = decoding.decode(flac_file(tone(1.0, 192000), 192000))
    assert (pcm.sample_rate, pcm.channels) == (16000, 1)
    assert pcm.duration == pytest.approx(1.0, abs=0.01)
    assert peak_frequency16(pcm.data, 16000) == pytest.approx(440, rel=0.03)
