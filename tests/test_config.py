"""Configuration: flags beat environment beat defaults; bad values exit 2 with one line."""

import subprocess
import sys

import pytest

from rabbitipc import defaults
from rabbitipc.connection import redact
from rabbitipc.programs import options as config
from support import RECEIVER, ROOT, SENDER, program_env


def run_program(script, *args, env=None):
    environment = program_env("amqp://guest:guest@127.0.0.1:1/%2F", **(env or {}))
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("script,args,env,needle", [
    (SENDER, ["--rate", "-1"], {}, "--rate: '-1' is not a number of at least 0"),
    (SENDER, ["--min-interval", "3", "--max-interval", "1"], {}, "--min-interval 3.0 is larger"),
    (SENDER, ["--bogus"], {}, "unrecognized arguments: --bogus"),
    (SENDER, [], {"AMQP_URL": "http://localhost"}, "AMQP_URL: must start with amqp://"),
    (SENDER, ["--url", "amqp://localhost:notaport/"], {}, "--url: Port could not be cast"),
    (SENDER, [], {"RABBITIPC_COUNT": "0"}, "RABBITIPC_COUNT: '0' is not a whole number of at least 1"),
    (RECEIVER, ["--queue-type", "stream"], {}, "'stream' is not one of classic, quorum"),
    (RECEIVER, ["--queue", "amq.x"], {}, "reserved by RabbitMQ"),
    (RECEIVER, [], {"RABBITIPC_STRICT": "maybe"}, "RABBITIPC_STRICT: 'maybe' is not a boolean"),
    (RECEIVER, ["--handler", "nonexistent_mod:fn"], {}, "cannot import 'nonexistent_mod'"),
])
def test_invalid_values_exit_2_with_one_line(script, args, env, needle):
    """Any bad flag or environment value: exit code 2, a single stderr line naming it, no traceback."""
    result = run_program(script, *args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


@pytest.mark.parametrize("script", [SENDER, RECEIVER])
def test_help_lists_every_flag_with_its_environment_variable(script):
    """--help names each option's flag, environment variable and the exit codes."""
    result = run_program(script, "--help")
    assert result.returncode == 0
    options = config.COMMON + (config.SENDER if script == SENDER else config.RECEIVER)
    text = " ".join(result.stdout.split())
    for opt in options:
        assert opt.flag in text and f"env {opt.env}" in text
    assert "exit codes:" in text and "guest:guest" not in text


def test_flag_beats_environment_beats_default():
    """A flag overrides its environment variable, which overrides the built-in default."""
    options = config.COMMON + config.SENDER
    args = config.parse("d", options, [], {})
    assert (args.queue, args.rate, args.url) == ("hello", None, defaults.URL)
    args = config.parse("d", options, [], {"RABBITIPC_QUEUE": "from-env", "RABBITIPC_RATE": "5"})
    assert (args.queue, args.rate) == ("from-env", 5.0)
    args = config.parse("d", options, ["--queue", "from-flag"], {"RABBITIPC_QUEUE": "from-env"})
    assert args.queue == "from-flag"


def test_passwords_are_redacted_from_urls():
    """The URL shown in logs and errors never carries the password."""
    assert redact("amqp://user:pa%40ss@host:5672/vh") == "amqp://user:***@host:5672/vh"
    assert redact("amqps://host/") == "amqps://host/"


def test_password_on_the_command_line_draws_a_warning(run, broker):
    """--url with a password works but warns that ps shows it; AMQP_URL does not warn."""
    flagged = run("sender", "--url", broker.url, "--count", "1")
    assert flagged.wait() == 0
    assert "visible to every user of this machine" in flagged.output
    assert "guest:guest" not in flagged.output
    quiet = run("sender", "--count", "1")
    assert quiet.wait() == 0
    assert "visible to every user" not in quiet.output


# -- issue 13 item 9: values only the broker or Python refuse are usage errors too ---------------
TOO_LONG = "k" * 256  # AMQP short strings (names, routing keys) hold 255 bytes

LATE_REFUSALS = [
    pytest.param("receiver", ["--prefetch", "70000"], "", id="prefetch-over-65535"),
    pytest.param("sender", ["--pattern", "direct", "--routing-key", TOO_LONG], "", id="routing-key-over-255-bytes"),
    pytest.param("sender", ["--pattern", "broadcast", "--exchange", TOO_LONG], "", id="exchange-over-255-bytes"),
    pytest.param("receiver", ["--pattern", "direct", "--bind", TOO_LONG], "", id="binding-over-255-bytes"),
    pytest.param("sender", [], "?ssl_options=(", id="url-ssl-options-unparsable"),
    pytest.param("sender", [], "?tcp_options=(", id="url-tcp-options-unparsable"),
    pytest.param("sender", ["--size", "99999999999"], "", id="size-beyond-memory"),
    pytest.param("sender", ["--http", "no-such-host.invalid:8080"], "", id="http-host-unresolvable"),
    pytest.param("sender", [b"--message", b"caf\xe9"], "", id="message-not-utf-8"),
]


@pytest.mark.parametrize("role,args,url_suffix", LATE_REFUSALS)
def test_values_the_broker_or_python_would_refuse_exit_2_with_one_line(run, broker, role, args, url_suffix):
    """A value that passes a type check but not the broker or the OS: exit 2, one line naming it, no traceback."""
    program = run(role, "--count", "1", *args, url=broker.url + url_suffix)
    assert program.wait(30) == 2, program.output[-2000:]
    assert "Traceback" not in program.output
    assert len([line for line in program.lines if ": error: " in line]) == 1, program.output[-2000:]


def test_stdin_that_is_not_utf_8_exits_2_with_one_line(broker, queue):
    """--message - with bytes that are not UTF-8 on stdin: exit 2 and one line, no traceback."""
    result = subprocess.run([sys.executable, str(SENDER), "--queue", queue, "--message", "-", "--rate", "0"],
                            cwd=ROOT, env=program_env(broker.url), input=b"fine\ncaf\xe9\n", capture_output=True,
                            timeout=60)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr
