"""An SMTP server for the mail tests: aiosmtpd on 127.0.0.1:<port>, keeping every message it accepts.

Each message is written to <dir>/<unique>.eml as received, and beside it <unique>.json with the envelope and the
MIME parts as Python's email package (a real mail client's parser) decodes them, so the tests read decoded text,
HTML and calendar parts. Prints "ready" once listening; runs until killed.

Options: --tls-cert/--tls-key offer STARTTLS and require it; --user name:password also requires AUTH.
"""

import argparse
import email
import email.policy
import json
import os
import ssl
import sys
import threading
import uuid

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, directory):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        name = uuid.uuid4().hex
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                parts.append({"content_type": part.get_content_type(), "params": dict(part.get_params() or [])})
                continue
            try:
                content = part.get_content()
            except Exception as e:  # noqa: BLE001 - recorded for the test to see
                content = f"<undecodable: {e}>"
            if isinstance(content, bytes):
                content = content.decode("utf-8", "replace")
            parts.append(
                {
                    "content_type": part.get_content_type(),
                    "params": dict(part.get_params() or []),
                    "filename": part.get_filename(),
                    "disposition": part.get_content_disposition(),
                    "text": content,
                }
            )
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "authenticated": bool(getattr(session, "authenticated", False)),
            "headers": {k: str(v) for k, v in msg.items()},
            "parts": parts,
        }
        for suffix, data in ((".eml", raw), (".json", json.dumps(record).encode())):
            tmp = os.path.join(self.directory, f".{name}{suffix}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            # The .json last, atomically: a test that sees it sees the whole message.
            os.rename(tmp, os.path.join(self.directory, name + suffix))
        return "250 Message accepted"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--user")
    args = ap.parse_args()
    kwargs = {}
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        kwargs.update(tls_context=ctx, require_starttls=True)
    if args.user:
        want_user, want_password = args.user.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == want_user
                and auth_data.password.decode() == want_password
            )
            return AuthResult(success=ok)

        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(args.tls_cert))
    controller = Controller(Sink(args.dir), hostname="127.0.0.1", port=args.port, **kwargs)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
