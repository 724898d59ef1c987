"""Configuration: flags beat environment beat defaults; bad values exit 2 with one line."""

import re
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
    (RECEIVER, ["--max-attempts", "0"], {}, "--max-attempts: '0' is not a whole number of at least 1"),
    (RECEIVER, [], {"RABBITIPC_MAX_ATTEMPTS": "-2"}, "RABBITIPC_MAX_ATTEMPTS: '-2' is not a whole number"),
    (RECEIVER, ["--min-backoff", "-1"], {}, "--min-backoff: '-1' is not a number of at least 0"),
    (RECEIVER, ["--min-backoff", "5", "--max-backoff", "1"], {}, "--min-backoff 5 is larger than --max-backoff 1"),
    (RECEIVER, ["--min-backoff", "45"], {}, "--min-backoff 45 is larger than --max-backoff 30"),
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


def test_every_password_of_a_node_list_is_redacted():
    """A ';'-separated node list shows each node without its password."""
    text = redact("amqp://u:pw1@h1:5672/vh;amqps://u:pw2@h2:5671/vh;amqp://h3/vh")
    assert text == "amqp://u:***@h1:5672/vh;amqps://u:***@h2:5671/vh;amqp://h3/vh"


NODE_LIST_ERRORS = [
    pytest.param("amqp://u:pw1@h1/%2F;;amqp://u:pw2@h3/%2F", "node 2 of 3 is empty", id="empty-element"),
    pytest.param("amqp://u:pw1@h1/%2F;amqp://u:pw2@h2/%2F;", "node 3 of 3 is empty", id="trailing-separator"),
    pytest.param("amqp://u:pw1@h1/%2F;http://u:pw2@h2/", "node 2 (http://u:***@h2/) must start with amqp://",
                 id="not-amqp"),
    pytest.param("amqp://u:pw1@h1/one;amqp://u:pw2@h2/two", "the nodes name different vhosts", id="mixed-vhosts"),
]


@pytest.mark.parametrize("url,needle", NODE_LIST_ERRORS)
@pytest.mark.parametrize("script", [SENDER, RECEIVER])
def test_bad_node_lists_exit_2_with_one_line_and_no_password(script, url, needle):
    """A node list with an empty element, a URL that is not amqp(s) or mixed vhosts: exit 2, one line
    naming the element, no password shown (before: the rest was read as the vhost, passwords logged)."""
    result = run_program(script, env={"AMQP_URL": url})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "pw1" not in result.stderr + result.stdout and "pw2" not in result.stderr + result.stdout


def test_library_refuses_a_bad_node_list_with_a_clear_error():
    """MessageQueue and the other library entries (through Broker) refuse a bad node list at once."""
    from rabbitipc import MessageQueue

    with pytest.raises(ValueError, match="node 2 of 2 is empty") as caught:
        MessageQueue("q", "amqp://u:secret@h1/%2F;")
    assert "secret" not in str(caught.value)


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
    pytest.param("sender", ["--http", "127.0.0.1:0", "--transient"], "", id="transient-with-http"),
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


def test_help_shows_defaults_as_they_are_typed_under_the_installed_name():
    """--help: usage names rabbitipc-send; defaults read true/off/300, never Python's True or 300.0."""
    text = " ".join(run_program(SENDER, "--help").stdout.split())
    assert text.startswith("usage: rabbitipc-send ")
    assert "default: True" not in text and "default: False" not in text and ".0)" not in text
    assert "(env RABBITIPC_RETRY_TIMEOUT; default: 300)" in text
    assert "(env RABBITIPC_QUEUE_DURABLE; default: true)" in text
    assert "(env RABBITIPC_TRANSIENT; default: off)" in text
    assert "(env RABBITIPC_MIN_INTERVAL; default: 0.5)" in text
    assert "urls.env" in text  # where the URL comes from without --url and AMQP_URL


def test_a_python_without_pika_says_so_in_one_line_with_exit_8():
    """A Python without the runtime dependencies (pika, ...): one line naming the first missing and the virtualenv's
    Python, exit 8, no traceback."""
    for script, shown in ((SENDER, "sender/send.py"), (RECEIVER, "receiver/receive.py")):
        result = subprocess.run([sys.executable, "-S", str(script), "--count", "1"], cwd=ROOT, env=program_env(""),
                                capture_output=True, text=True, timeout=30)  # -S: no site-packages, no pika
        assert result.returncode == 8, result.stderr
        fix = (f"use .venv/bin/python {shown}" if (ROOT / ".venv/bin/python").exists()
               else f"run ./run-local.sh once (it makes .venv/), then use .venv/bin/python {shown}")
        lines = result.stderr.strip().splitlines()  # names the first runtime dependency missing (pika, ...)
        assert len(lines) == 1 and re.fullmatch(
            rf"{script.name}: error: \w+ is not installed for {re.escape(sys.executable)}: {re.escape(fix)}",
            lines[0]), result.stderr


def test_the_local_brokers_url_file_comes_after_flag_and_amqp_url(tmp_path):
    """Without --url and AMQP_URL a program takes its user's URL from ./.rabbitmq/urls.env and says so;
    AMQP_URL and --url beat the file."""
    (tmp_path / ".rabbitmq").mkdir()
    urls = tmp_path / ".rabbitmq" / "urls.env"
    urls.write_text("SENDER_AMQP_URL=amqp://rabbitipc-sender:pw1@127.0.0.1:1/%2F\n"
                    "RECEIVER_AMQP_URL=amqp://rabbitipc-receiver:pw2@127.0.0.1:1/%2F\n")

    def run_in(script, *args, **env):
        environment = {k: v for k, v in program_env("").items() if k != "AMQP_URL"} | env
        return subprocess.run([sys.executable, str(script), "--retry-timeout", "0.5", *args], cwd=tmp_path,
                              env=environment, capture_output=True, text=True, timeout=30)

    for script, user in ((SENDER, "rabbitipc-sender"), (RECEIVER, "rabbitipc-receiver")):
        result = run_in(script)
        assert result.returncode == 4, result.stderr
        assert f"broker amqp://{user}:***@127.0.0.1:1/%2F (from {urls})" in result.stderr
        assert "pw1" not in result.stderr and "pw2" not in result.stderr
    from_env = run_in(SENDER, AMQP_URL="amqp://u:p@127.0.0.1:2/%2F")
    assert "broker amqp://u:***@127.0.0.1:2/%2F, queue" in from_env.stderr, from_env.stderr
    from_flag = run_in(SENDER, "--url", "amqp://127.0.0.1:3/%2F", AMQP_URL="amqp://u:p@127.0.0.1:2/%2F")
    assert "broker amqp://127.0.0.1:3/%2F, queue" in from_flag.stderr, from_flag.stderr
    urls.write_text("SENDER_AMQP_URL=http://nope\n")
    bad = run_in(SENDER)
    assert bad.returncode == 2 and f"SENDER_AMQP_URL in {urls}: must start with amqp://" in bad.stderr, bad.stderr
