"""`ovos-google-stt check`: what it prints without a key, with a bad key, on a retry, and with
credentials in the endpoint."""
from __future__ import annotations

from fake_google import Fault
from test_cli import run

SECRET = "MARKER-cli-check-secret-93"


def test_check_without_a_key_says_how_to_set_one_and_nothing_about_the_server(fake):
    out = run(["check"], fake, key=None)
    assert out.returncode == 2 and "GOOGLE_STT_API_KEY" in out.stderr
    assert "503" not in out.stderr and "until then" not in out.stderr


def test_check_with_a_key_of_two_lines_is_refused_without_printing_it(fake):
    out = run(["check"], fake, key=f"AIza{SECRET}\n# prod key")
    assert out.returncode == 2 and "more than one line" in out.stderr and "GOOGLE_STT_API_KEY" in out.stderr
    assert SECRET not in out.stderr + out.stdout and fake.requests == []


def test_check_prints_no_retry_lines_unless_verbose(fake):
    fake.script(Fault.http(503))
    out = run(["check"], fake)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "" and len(fake.requests) == 2
    fake.script(Fault.http(503))
    out = run(["check", "-v"], fake)
    assert out.returncode == 0 and "retrying in" in out.stderr


def test_check_shows_the_endpoint_without_its_credentials(fake):
    endpoint = fake.endpoint.replace("http://", f"http://user:{SECRET}@")
    out = run(["check", "-v", "--endpoint", endpoint])
    assert out.returncode == 0, out.stderr
    assert "http://***@127.0.0.1" in out.stdout
    assert SECRET not in out.stdout + out.stderr
    out = run(["check", "--endpoint", f"http://user:{SECRET}@127.0.0.1:9", "--timeout", "1"])
    assert out.returncode == 1 and "http://***@127.0.0.1:9" in out.stderr and SECRET not in out.stderr


def test_check_refuses_a_bad_endpoint_at_start_up(fake):
    for endpoint, says in (("http://[::1", "'endpoint' must be"), ("http://host:99999", "'endpoint' must be"),
                           ("https://speech.googleapis.com/v1", "without the API version")):
        out = run(["check", "--endpoint", endpoint])
        assert out.returncode == 2 and says in out.stderr, out.stderr
