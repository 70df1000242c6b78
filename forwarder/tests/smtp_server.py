#!/usr/bin/env python3
"""A real SMTP server on loopback for the statement tests and benchmark (aiosmtpd).

Writes every accepted message to OUT/NNNNNN.eml (and its envelope recipients to
OUT/NNNNNN.rcpt), prints "READY <port>" once listening, and runs until killed.

  --port P            listen on P (default: any free port)
  --tls CERT KEY      offer STARTTLS with this certificate and require it
  --implicit          TLS from the first byte (SMTPS) instead of STARTTLS
  --auth USER PASS    require AUTH (PLAIN/LOGIN) with these credentials
  --refuse N          answer the first N messages with 451 (temporary failure)
  --stall             accept connections and never answer (a hung server)
  --count-only        count messages (OUT/count) instead of writing them
"""
import argparse
import asyncio
import os
import socket
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tls", nargs=2)
    p.add_argument("--implicit", action="store_true")
    p.add_argument("--auth", nargs=2)
    p.add_argument("--refuse", type=int, default=0)
    p.add_argument("--stall", action="store_true")
    p.add_argument("--count-only", action="store_true")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)

    state = {"n": 0, "refused": 0}

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            if state["refused"] < a.refuse:
                state["refused"] += 1
                return "451 4.3.0 try again later"
            state["n"] += 1
            n = state["n"]
            if a.count_only:
                if n % 100 == 0:
                    with open(os.path.join(a.out, "count"), "w") as f:
                        f.write(str(n))
                return "250 2.0.0 OK"
            base = os.path.join(a.out, "%06d" % n)
            with open(base + ".tmp", "wb") as f:
                f.write(envelope.original_content or envelope.content)
            with open(base + ".rcpt", "w") as f:
                f.write("\n".join(envelope.rcpt_tos))
            os.rename(base + ".tmp", base + ".eml")
            return "250 2.0.0 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and a.auth is not None
            and auth_data.login.decode() == a.auth[0]
            and auth_data.password.decode() == a.auth[1]
        )
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=ok, handled=False)

    ctx = None
    if a.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls[0], a.tls[1])

    def factory():
        kw = dict(hostname="smtp.test", decode_data=False)
        if ctx is not None and not a.implicit:
            kw.update(tls_context=ctx, require_starttls=True)
        if a.auth:
            kw.update(authenticator=authenticator, auth_required=True)
            if a.implicit:
                # The connection is TLS already; aiosmtpd only knows STARTTLS.
                kw.update(auth_require_tls=False)
        return SMTP(Handler(), **kw)

    async def stall(reader, writer):
        await asyncio.sleep(3600)

    async def serve():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", a.port))
        sock.listen(128)
        loop = asyncio.get_running_loop()
        if a.stall:
            server = await asyncio.start_server(stall, sock=sock)
        else:
            server = await loop.create_server(
                factory, sock=sock, ssl=ctx if a.implicit else None
            )
        print("READY %d" % sock.getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
