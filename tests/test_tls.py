"""amqps://: the programs verify the broker's certificate (and host name) against --ca-file."""

import shutil
import subprocess

import pytest

from devtools.localbroker import LocalBroker, free_port
from support import RECEIVED, SENT

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test CA")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    """A node with a TLS listener whose certificate (for DNS name localhost only) a throwaway CA signed."""
    pki = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=rabbitipc test CA", cwd=pki)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=pki)
    (pki / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=pki)
    port = free_port()
    node = LocalBroker(tmp_path_factory.mktemp("tls-node"), extra_config="\n".join([
        f"listeners.ssl.default = 127.0.0.1:{port}",
        f"ssl_options.cacertfile = {pki / 'ca.pem'}",
        f"ssl_options.certfile = {pki / 'server.pem'}",
        f"ssl_options.keyfile = {pki / 'server.key'}",
        "ssl_options.verify = verify_none",
        "ssl_options.fail_if_no_peer_cert = false",
    ]))
    node.start()
    yield node, port, pki / "ca.pem"
    node.stop()


def test_messages_flow_over_tls_with_the_ca(run, tls_broker):
    """Sender and receiver connect with amqps:// and --ca-file; messages flow."""
    _, port, ca = tls_broker
    url = f"amqps://guest:guest@localhost:{port}/%2F"
    receiver = run("receiver", "--ca-file", str(ca), url=url)
    sender = run("sender", "--ca-file", str(ca), "--count", "5", "--rate", "0", url=url)
    assert sender.wait() == 0, sender.output
    receiver.wait_count(RECEIVED, 5)
    assert sorted(receiver.ids(RECEIVED)) == sorted(sender.ids(SENT))


def test_untrusted_certificate_exits_7_at_once(run, tls_broker):
    """Without the CA the certificate is not trusted: exit 7, one line, no retrying."""
    _, port, _ = tls_broker
    sender = run("sender", "--count", "1", url=f"amqps://guest:guest@localhost:{port}/%2F")
    assert sender.wait(30) == 7, sender.output
    errors = [line for line in sender.lines if ": error: " in line]
    assert len(errors) == 1 and "is not trusted" in errors[0] and "--ca-file" in errors[0]
    assert "retrying" not in sender.output


def test_host_name_must_match_the_certificate(run, tls_broker):
    """The certificate names localhost; connecting by IP address fails verification."""
    _, port, ca = tls_broker
    receiver = run("receiver", "--ca-file", str(ca), url=f"amqps://guest:guest@127.0.0.1:{port}/%2F")
    assert receiver.wait(30) == 7, receiver.output
    assert "mismatch" in receiver.output.lower()


def test_library_api_over_tls(tls_broker, queue):
    """MessageQueue(ca_file=...) publishes and consumes over amqps like the programs."""
    import threading

    from rabbitipc import MessageQueue
    from support import wait_until

    _, port, ca = tls_broker
    url = f"amqps://guest:guest@localhost:{port}/%2F"
    mq = MessageQueue(queue, url, ca_file=str(ca))
    sent = mq.publish("over tls")
    got = []
    mq.register(lambda delivery: got.append(delivery.id))
    thread = threading.Thread(target=mq.start)
    thread.start()
    wait_until(lambda: got, 30, "the message over TLS")
    mq.stop()
    thread.join(10)
    mq.close()
    assert got == [sent]


def poke(port) -> None:
    """One POST, whatever comes of it: a server that connects lazily learns of the broker's refusal."""
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/messages", data=b"{}",
                                                      method="POST"), timeout=10).close()
    except OSError:
        pass


def test_ctl_with_an_untrusted_certificate_exits_7(tls_broker):
    """rabbitipc-ctl against a broker whose certificate it cannot verify: exit 7, like the programs."""
    import sys

    from support import ROOT, program_env

    _, port, _ = tls_broker
    result = subprocess.run([sys.executable, "-m", "rabbitipc.programs.ctl", "stop", "--queue", "hello"], cwd=ROOT,
                            env=program_env(f"amqps://guest:guest@localhost:{port}/%2F"), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 7, result.stderr
    assert "not trusted" in result.stderr


def test_http_sender_with_an_untrusted_certificate_exits_7(run, tls_broker):
    """sender --http against a broker whose certificate it cannot verify: exit 7, not 503 for ever."""
    from devtools.localbroker import free_port
    from support import wait_until

    _, port, _ = tls_broker
    http_port = free_port()
    sender = run("sender", "--http", f"127.0.0.1:{http_port}", url=f"amqps://guest:guest@localhost:{port}/%2F")
    wait_until(lambda: poke(http_port) or sender.proc.poll() is not None, 20, "the sender to exit",
               lambda: sender.output[-2000:])
    assert sender.wait() == 7, sender.output[-2000:]
