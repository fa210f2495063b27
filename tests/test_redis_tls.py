"""TLS to Redis: certificates verified by default, skipped only on request or for Heroku Redis.

A TLS-terminating proxy with a certificate made here (a throwaway CA and a server
certificate for 127.0.0.1; no key is committed) stands in front of the test Redis.
"""

import logging
import socket
import ssl
import subprocess
import sys
import threading
from urllib.parse import urlparse

import pytest
import redis

import bridge.storage.redis as bridge_redis
from bridge.config import load_settings
from bridge.storage.redis import connect
from tests.support import ROOT


def _tls_proxy(cert, key, target_port):
    """A TLS-terminating proxy in front of the test Redis, with a self-signed certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    def serve():
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                client = context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A throwaway CA and a server certificate it signed for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    where = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=bridge test CA", "-days", "1",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=where)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "key.pem",
             "-out", "server.csr", cwd=where)
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "1", "-extfile", "san.ext", "-out", "cert.pem", cwd=where)
    return where / "ca.pem", where / "cert.pem", where / "key.pem"


@pytest.fixture(scope="module")
def tls_url(certificates, redis_url):
    """rediss:// URL of a TLS proxy in front of the test Redis, its certificate from an unknown CA."""
    _, cert, key = certificates
    target_port = urlparse(redis_url).port
    if target_port is None:
        pytest.skip("the TLS proxy needs a TCP Redis")  # TEST_REDIS_URL given as a unix socket
    listener = _tls_proxy(str(cert), str(key), target_port)
    yield f"rediss://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


@pytest.fixture
def clean_env(monkeypatch):
    """No Heroku marker and no opt-in in this process's environment; the once-per-process warning re-armed."""
    for name in ("DYNO", "REDIS_TLS_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(bridge_redis, "_warned_pid", None)
    return monkeypatch


def _skip_warnings(caplog):
    return [r for r in caplog.records if r.name == "bridge.storage.redis" and r.levelno == logging.WARNING]


def test_certificates_are_verified_by_default(tls_url, clean_env, caplog):
    conn = connect(tls_url)
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        conn.ping()
    assert not _skip_warnings(caplog)


def test_settings_verify_by_default(tls_url, clean_env):
    settings = load_settings({"REDIS_URL": tls_url})
    assert settings.redis_tls_verify is True
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        connect(settings.redis_url, verify=settings.redis_tls_verify).ping()


def test_insecure_opt_in_connects_and_says_so_once(tls_url, clean_env, caplog):
    clean_env.setenv("REDIS_TLS_INSECURE", "1")
    caplog.set_level(logging.WARNING, logger="bridge.storage.redis")
    for _ in range(3):
        conn = connect(tls_url)
        assert conn.ping() is True
        conn.close()
    settings = load_settings({"REDIS_URL": tls_url, "REDIS_TLS_INSECURE": "1"})
    assert settings.redis_tls_verify is False and settings.redis_tls_skip_reason == "REDIS_TLS_INSECURE=1"
    assert connect(settings.redis_url, verify=settings.redis_tls_verify).ping() is True
    [warning] = _skip_warnings(caplog)
    assert "TLS certificate verification to Redis at " in warning.getMessage() and " is OFF " in warning.getMessage()
    assert "REDIS_TLS_INSECURE=1" in warning.getMessage()


def test_explicit_verify_wins_over_the_environment(tls_url, clean_env):
    clean_env.setenv("REDIS_TLS_INSECURE", "1")
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        connect(tls_url, verify=True).ping()
    clean_env.delenv("REDIS_TLS_INSECURE")
    assert connect(tls_url, verify=False).ping() is True


def test_a_trusted_ca_bundle_verifies(tls_url, certificates, clean_env, caplog):
    ca, _, _ = certificates
    conn = connect(f"{tls_url}?ssl_ca_certs={ca}")
    assert conn.ping() is True
    conn.close()
    assert not _skip_warnings(caplog)


def _check_config(env):
    return subprocess.run([sys.executable, "-m", "bridge.cli", "check-config"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **env})


def test_check_config_refuses_an_unverifiable_certificate_and_says_what_to_do(tls_url):
    result = _check_config({"REDIS_URL": tls_url})
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert line.startswith("bridge: configuration error: REDIS_URL: Redis did not answer a PING")
    assert "CERTIFICATE_VERIFY_FAILED" in line and "REDIS_TLS_INSECURE=1" in line and "ssl_ca_certs" in line


def test_check_config_passes_with_the_opt_in(tls_url):
    result = _check_config({"REDIS_URL": tls_url, "REDIS_TLS_INSECURE": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration ok: redis=REDIS_URL")
    assert result.stderr.count("TLS certificate verification to Redis at 127.0.0.1") == 1
