#!/usr/bin/env python3
"""A tiny HTTPS file server for the demo: stands in for the vendor's media host.

Usage: media_server.py DIRECTORY CERT KEY PORT_FILE

Serves DIRECTORY on 127.0.0.1 at a free port, with the given TLS certificate, and writes
the port to PORT_FILE once it listens. Query strings (the vendor's signatures) are
ignored; a missing file answers 404, which the archiver treats as a permanent failure.
"""
import functools
import http.server
import os
import ssl
import sys


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        # The demo prints outcomes; request lines would only add noise.
        pass


def main():
    directory, cert, key, port_file = sys.argv[1:5]
    handler = functools.partial(QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as out:
        out.write(str(server.server_address[1]))
    os.replace(tmp, port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
