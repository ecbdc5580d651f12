#!/usr/bin/env python3
"""A pyftpdlib FTPS server for ferry's test bed (tests/src/ftp), one instance per test.

pyftpdlib is the server the test bed can bend: it fakes the network faults the real
servers cannot show on loopback (a PASV address behind NAT, an unreachable passive range)
and runs plain FTP to prove that ferry never sends credentials without TLS. Every setting
comes from the command line; it serves in the foreground until killed.
"""

import argparse
import logging
import sys

from OpenSSL import SSL
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True, help="folder that is the user's '/'")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--passive-ports", required=True, help="FIRST-LAST")
    p.add_argument("--cert", help="server certificate chain (PEM)")
    p.add_argument("--key", help="server private key (PEM)")
    p.add_argument("--client-ca", help="require client certificates signed by this CA")
    p.add_argument("--tls-max-1-2", action="store_true", help="refuse TLS 1.3")
    p.add_argument("--masquerade", help="address that PASV advertises (a NAT test)")
    p.add_argument(
        "--unreachable-port",
        type=int,
        help="PASV/EPSV advertise this port, where nothing listens",
    )
    p.add_argument("--plaintext", action="store_true", help="plain FTP: no AUTH TLS")
    p.add_argument("--commands-log", required=True, help="every command line received")
    return p.parse_args()


def tls_context(args):
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_options(SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_COMPRESSION)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    if args.tls_max_1_2:
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.use_certificate_chain_file(args.cert)
    ctx.use_privatekey_file(args.key)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
            lambda _conn, _cert, _errno, _depth, ok: bool(ok),
        )
        # OpenSSL refuses to resume a session on a context that verifies peers unless
        # the context has a session id: without it every data channel fails its
        # session reuse and the client gets 522.
        ctx.set_session_id(b"ferry-testbed")
    return ctx


def handler_class(args):
    base = FTPHandler if args.plaintext else TLS_FTPHandler
    commands = open(args.commands_log, "a", buffering=1, encoding="utf-8")

    class Handler(base):
        def pre_process_command(self, line, cmd, arg):
            # Recorded before any check, so a test sees what a client sent, even a USER
            # it should never have sent in clear text.
            commands.write(line + "\n")
            super().pre_process_command(line, cmd, arg)

        if args.unreachable_port:

            def ftp_PASV(self, line):
                p = args.unreachable_port
                self.respond(f"227 Entering passive mode (127,0,0,1,{p >> 8},{p & 255}).")

            def ftp_EPSV(self, line):
                self.respond(f"229 Entering extended passive mode (|||{args.unreachable_port}|).")

    if not args.plaintext:
        Handler.tls_control_required = True
        Handler.tls_data_required = True
        Handler.ssl_context = tls_context(args)
    return Handler


def main():
    args = parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")
    handler = handler_class(args)
    handler.authorizer = authorizer
    first, last = (int(x) for x in args.passive_ports.split("-"))
    handler.passive_ports = list(range(first, last + 1))
    if args.masquerade:
        handler.masquerade_address = args.masquerade
    server = FTPServer(("127.0.0.1", args.port), handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
