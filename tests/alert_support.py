"""Receivers for alerts, on 127.0.0.1 in a thread of the test: a chat webhook and an SMTP server."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socketserver
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """A chat incoming webhook: records every JSON body posted to it and answers `status` (200 "ok")."""

    def __init__(self):
        self.posts: list[dict] = []
        self.paths: list[str] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append(json.loads(body))
                receiver.paths.append(self.path)
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status == 200 else b"invalid_token")

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def texts(self) -> list[str]:
        """The `text` of every post so far."""
        return [post["text"] for post in self.posts]

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A minimal SMTP server (EHLO, STARTTLS when given a TLS context, AUTH PLAIN, MAIL, RCPT, DATA,
    QUIT): records each message with its envelope, the credentials it was sent with and whether
    the session was upgraded to TLS first."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.messages: list[dict] = []
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                envelope = {"from": None, "to": [], "auth": None, "tls": False}
                self.say("220 localhost ESMTP test")
                while True:
                    line = self.rfile.readline().decode("utf-8", "replace").rstrip("\r\n")
                    if not line:
                        return
                    verb = line.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        starttls = "250-STARTTLS\r\n" if tls and not envelope["tls"] else ""
                        self.say(f"250-localhost\r\n{starttls}250-8BITMIME\r\n250 AUTH PLAIN")
                    elif verb == "STARTTLS" and tls:
                        self.say("220 ready")
                        try:
                            self.connection = tls.wrap_socket(self.connection, server_side=True)
                        except (ssl.SSLError, OSError):
                            return  # the client refused our certificate
                        self.rfile, self.wfile = self.connection.makefile("rb"), self.connection.makefile("wb", 0)
                        envelope["tls"] = True
                    elif verb == "AUTH":
                        _, user, password = base64.b64decode(line.split()[2]).decode().split("\0")
                        envelope["auth"], envelope["auth_over_tls"] = (user, password), envelope["tls"]
                        self.say("235 2.7.0 accepted")
                    elif verb == "MAIL":
                        envelope["from"] = line.split(":", 1)[1].split()[0].strip("<>")
                        self.say("250 ok")
                    elif verb == "RCPT":
                        envelope["to"].append(line.split(":", 1)[1].strip().strip("<>"))
                        self.say("250 ok")
                    elif verb == "DATA":
                        self.say("354 go ahead")
                        data = []
                        while (raw := self.rfile.readline()) not in (b".\r\n", b""):
                            data.append(raw[1:] if raw.startswith(b"..") else raw)
                        parsed = email.message_from_bytes(b"".join(data), policy=email.policy.default)
                        receiver.messages.append({**envelope, "message": parsed})
                        self.say("250 queued")
                    elif verb == "QUIT":
                        self.say("221 bye")
                        return
                    else:
                        self.say("250 ok")

            def say(self, reply: str) -> None:
                self.wfile.write(reply.encode() + b"\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def self_signed_tls(directory) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a fresh self-signed certificate for localhost and 127.0.0.1, and
    the certificate's path (for a client to trust)."""
    cert, key = f"{directory}/cert.pem", f"{directory}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert
