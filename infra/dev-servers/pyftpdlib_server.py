#!/usr/bin/env python3
"""A pyftpdlib FTPS server for ferry's test bed (tests/src/ftp), one instance per test.

pyftpdlib is the server the test bed can bend: it fakes the network faults the real
servers cannot show on loopback (a PASV address behind NAT, an unreachable passive range)
and runs plain FTP to prove that ferry never sends credentials without TLS. With
`--quirk NAME` (repeatable) it misbehaves the way real partners' servers do; each quirk is
described in QUIRKS below. Every setting comes from the command line; it serves in the
foreground until killed.
"""

import argparse
import logging
import os
import re
import socket
import sys
import threading
import time

from OpenSSL import SSL
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.handlers.ftp.data import DTPHandler
from pyftpdlib.handlers.ftp.producers import BufferedIteratorProducer
from pyftpdlib.servers import FTPServer

QUIRKS = {
    "rnfr-550": "RNFR always answers 550, as if a partner-side hook had taken the file",
    "rnto-no-overwrite": "RNTO answers 553 when the target exists (no rename over a file)",
    "rnto-553": "RNTO always answers 553",
    "reply-during-data-handshake": "data connections go to a socket that never answers TLS; "
    "STOR/RETR/LIST/MLSD answer 150 then 425 on the control connection",
    "mlsd-refused": "FEAT lists MLST, MLSD answers 500",
    "list-trickle": "listings send one line every --trickle-seconds",
    "list-endless": "listings never end (one more line as fast as the client reads)",
    "cut-downloads": "RETR sends half of the file and closes without TLS close_notify, "
    "then answers 226",
    "mdtm-echoes-name": "MDTM answers 213 followed by the file's name, so that a test names "
    "its files after the (hostile) replies it wants",
    "stor-450-once": "the first STOR the server receives answers 450 (a transient refusal); "
    "every later one is served",
    "xsha256-lies": "FEAT lists XSHA256, which answers a SHA-256 of zeros whatever the file",
    "cut-first-upload": "the first STOR is cut after --cut-upload-at bytes: the file keeps "
    "that many, the data connection closes without TLS close_notify, and STOR answers 426",
    "cut-first-download": "the first RETR is cut after --cut-download-at bytes: the data "
    "connection closes without TLS close_notify and RETR answers 426; later ones (REST "
    "included) are served whole",
    "rest-ignored": "REST answers 350 but the next RETR sends the file from its start",
    "listed-sizes-off": "listings (LIST and MLSD) show each file one byte larger than it "
    "is; SIZE tells the truth",
    "stor-reply-counts": "the 226 after STOR names the bytes received, as Serv-U does "
    "('226 Transfer complete. 10,240 bytes transferred.')",
    "stor-reply-counts-off": "the 226 after STOR names one byte more than it received",
    "latin1-names": "names are the bytes on the server's disk, sent and taken as they are "
    "(an old server on a Latin-1 disk): no UTF-8 on the wire for a name that is not UTF-8",
}


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
    p.add_argument("--quirk", action="append", default=[], choices=sorted(QUIRKS))
    p.add_argument("--trickle-seconds", type=float, default=100.0)
    p.add_argument("--cut-upload-at", type=int, default=120 * 1024 * 1024)
    p.add_argument("--cut-download-at", type=int, default=120 * 1024 * 1024)
    return p.parse_args()


def black_hole():
    """A listener on 127.0.0.1 that accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []

    def accept():
        while True:
            conn, _ = listener.accept()
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def trickle(lines, seconds):
    """Yields the listing's lines with a pause before each but the first."""
    for i, line in enumerate(lines):
        if i:
            time.sleep(seconds)
        yield line


def one_byte_more(line):
    """A listing line with its file's size one byte larger (quirk listed-sizes-off)."""
    more = lambda m: m.group(1) + str(int(m.group(2)) + 1).encode()
    if line.startswith(b"type=file;") or b";type=file;" in line:
        return re.sub(rb"((?:^|;)size=)(\d+)", more, line, count=1)
    if line.startswith(b"-"):
        return re.sub(rb"^(\S+\s+\S+\s+\S+\s+\S+\s+)(\d+)", more, line, count=1)
    return line


def endless():
    i = 0
    while True:
        i += 1
        yield f"type=file;size=1;modify=20260101000000; endless-{i:09d}.txt\r\n".encode()


class CutDTPHandler(TLS_DTPHandler):
    """Closes the data connection without TLS close_notify (a cut connection)."""

    def close(self):
        DTPHandler.close(self)


class CountingDTPHandler(TLS_DTPHandler):
    """Names the bytes received in an upload's 226 (quirks stor-reply-counts[-off])."""

    extra = 0

    def close(self):
        if self.receive and self.transfer_finished and self._resp and self._resp[0][:3] == "226":
            n = self.tot_bytes_received + type(self).extra
            self._resp = (f"226 Transfer complete. {n:,} bytes transferred.", self._resp[1])
        super().close()


class CutUploadDTPHandler(TLS_DTPHandler):
    """Cuts the first upload after `cut_at` bytes (quirk cut-first-upload)."""

    cut_at = None

    # DTPHandler binds handle_read_event to its own handle_read: check after each event.
    def handle_read_event(self):
        super().handle_read_event()
        limit = type(self).cut_at
        if limit is None or not self.receive or self._closed:
            return
        if self.tot_bytes_received >= limit:
            type(self).cut_at = None
            self.file_obj.flush()
            self.file_obj.truncate(limit)
            self.transfer_finished = False
            self._resp = ("426 Connection closed; transfer aborted.", logging.warning)
            DTPHandler.close(self)


class CutDownloadDTPHandler(TLS_DTPHandler):
    """Cuts the first download after `cut_at` bytes (quirk cut-first-download)."""

    cut_at = None

    def send(self, data):
        limit = type(self).cut_at
        if limit is None or self.receive:
            return super().send(data)
        data = bytes(data)[: max(0, limit - self.tot_bytes_sent)]
        sent = super().send(data) if data else 0
        if self.tot_bytes_sent >= limit:
            type(self).cut_at = None
            self.transfer_finished = False
            self._resp = ("426 Connection closed; transfer aborted.", logging.warning)
            DTPHandler.close(self)
        return sent


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
    # A name that is not UTF-8 (quirk latin1-names) is logged with backslash escapes.
    commands = open(
        args.commands_log, "a", buffering=1, encoding="utf-8", errors="backslashreplace"
    )

    # Outside the class body: methods cannot see names bound in it.
    quirks = set(args.quirk)
    hole = black_hole() if "reply-during-data-handshake" in quirks else None
    stor_refusals = [1 if "stor-450-once" in quirks else 0]

    def listing(self, path, mlsd):
        """A listing that trickles, never ends or shows wrong sizes, as the quirks say."""
        if not self.fs.isdir(path):
            self.respond("550 No such directory.")
            return
        if "list-endless" in quirks:
            lines = endless()
        else:
            names = sorted(self.run_as_current_user(self.fs.listdir, path))
            if mlsd:
                perms = self.authorizer.get_perms(self.username)
                lines = self.fs.format_mlsx(path, names, perms, self._current_facts)
            else:
                lines = self.fs.format_list(path, names)
            if "listed-sizes-off" in quirks:
                lines = [one_byte_more(line) for line in lines]
            lines = trickle(list(lines), args.trickle_seconds if "list-trickle" in quirks else 0)
        producer = BufferedIteratorProducer(lines)
        producer.loops = 1
        self.push_dtp_data(producer, isproducer=True, cmd="MLSD" if mlsd else "LIST")
        return path

    class Handler(base):
        def pre_process_command(self, line, cmd, arg):
            # Recorded before any check, so a test sees what a client sent, even a USER
            # it should never have sent in clear text.
            commands.write(line + "\n")
            super().pre_process_command(line, cmd, arg)

        if "rnfr-550" in quirks:

            def ftp_RNFR(self, path):
                self.respond("550 No such file or directory.")

        if "rnto-no-overwrite" in quirks or "rnto-553" in quirks:

            def ftp_RNTO(self, path):
                if "rnto-553" in quirks or self.fs.lexists(path):
                    self._rnfr = None
                    self.respond("553 Requested action not taken: file exists.")
                    return
                return base.ftp_RNTO(self, path)

        if "reply-during-data-handshake" in quirks:

            def ftp_EPSV(self, line):
                self.respond(f"229 Entering extended passive mode (|||{hole}|).")

            def ftp_PASV(self, line):
                self.respond(f"227 Entering passive mode (127,0,0,1,{hole >> 8},{hole & 255}).")

            def refuse_on_control(self, path, *rest):
                self.respond("150 File status okay. About to open data connection.")
                self.respond("425 TLS negotiation on the data connection failed: bad record mac.")

            ftp_STOR = ftp_RETR = ftp_LIST = ftp_MLSD = refuse_on_control

        if "stor-450-once" in quirks:

            def ftp_STOR(self, file, mode="w"):
                if stor_refusals[0] > 0:
                    stor_refusals[0] -= 1
                    self.respond("450 Requested file action not taken: file busy, try again.")
                    return
                return base.ftp_STOR(self, file, mode)

        if "xsha256-lies" in quirks:
            proto_cmds = {
                **base.proto_cmds,
                "XSHA256": dict(
                    perm="r", auth=True, arg=True, help="Syntax: XSHA256 <SP> file-name."
                ),
            }

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._extra_feats.append("XSHA256")

            def ftp_XSHA256(self, path):
                self.respond("250 " + "0" * 64)

        if "cut-first-download" in quirks:
            CutDownloadDTPHandler.cut_at = args.cut_download_at
            dtp_handler = CutDownloadDTPHandler

        if "rest-ignored" in quirks:

            def ftp_REST(self, line):
                self.respond(f"350 Restarting at position {line}.")

        if "cut-first-upload" in quirks:
            CutUploadDTPHandler.cut_at = args.cut_upload_at
            dtp_handler = CutUploadDTPHandler

        if "stor-reply-counts" in quirks or "stor-reply-counts-off" in quirks:
            CountingDTPHandler.extra = 1 if "stor-reply-counts-off" in quirks else 0
            dtp_handler = CountingDTPHandler

        if "mlsd-refused" in quirks:

            def ftp_MLSD(self, path):
                self.respond('500 Command "MLSD" not understood.')

        if "list-trickle" in quirks or "list-endless" in quirks or "listed-sizes-off" in quirks:

            def ftp_MLSD(self, path):
                return listing(self, path, True)

            def ftp_LIST(self, path):
                return listing(self, path, False)

        if "mdtm-echoes-name" in quirks:

            def ftp_MDTM(self, path):
                self.respond("213 " + os.path.basename(path))

        if "cut-downloads" in quirks:
            dtp_handler = CutDTPHandler

            def ftp_RETR(self, file):
                try:
                    with open(file, "rb") as f:
                        data = f.read()
                except OSError as err:
                    self.respond(f"550 {err.strerror}.")
                    return
                self.push_dtp_data(data[: len(data) // 2], cmd="RETR")
                return file

        if args.unreachable_port:

            def ftp_PASV(self, line):
                p = args.unreachable_port
                self.respond(f"227 Entering passive mode (127,0,0,1,{p >> 8},{p & 255}).")

            def ftp_EPSV(self, line):
                self.respond(f"229 Entering extended passive mode (|||{args.unreachable_port}|).")

    if "latin1-names" in quirks:
        # Bytes that are not UTF-8 become lone surrogates on the way in (the file system
        # takes them back as the same bytes) and bytes again on the way out.
        Handler.unicode_errors = "surrogateescape"
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
