#!/usr/bin/env python3
"""bench/memory.sh's media host: serves files with no Content-Length, chunked.

Usage: chunked_media_server.py DIRECTORY CERT KEY PORT_FILE

Like scripts/demo/media_server.py (127.0.0.1, a free port written to PORT_FILE, TLS with
the given certificate, query strings ignored), but every body goes out with
`Transfer-Encoding: chunked` in 64 KiB chunks, so the worker cannot size anything from a
declared length: what a hostile or merely careless source would send.
"""
import http.server
import os
import ssl
import sys

CHUNK = 64 * 1024


class ChunkedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    directory = "."

    def do_GET(self):
        name = os.path.basename(self.path.split("?", 1)[0])
        path = os.path.join(self.directory, name)
        if not name or not os.path.isfile(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with open(path, "rb") as body:
            while True:
                chunk = body.read(CHUNK)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format, *args):
        pass


def main():
    directory, cert, key, port_file = sys.argv[1:5]
    ChunkedHandler.directory = directory
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ChunkedHandler)
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
