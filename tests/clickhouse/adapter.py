#!/usr/bin/env python3
"""A loopback stand-in for a ClickHouse server's HTTP interface, running the real ClickHouse
engine in-process through chDB (PyPI `chdb`). Test tooling only: it speaks the subset of the
HTTP interface that Tollgate's ClickHouse client uses (see README.md beside this file), so the
client's SQL runs on real ClickHouse without a server install.

    python3 tests/clickhouse/adapter.py --port 0 --path DIR [--user U --password P]

prints `listening on 127.0.0.1:PORT` (flushed) once it accepts connections, then serves until
killed (SIGTERM/SIGINT). Data lives in DIR (a chDB/ClickHouse data directory).
"""

import argparse
import base64
import os
import re
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import chdb

# URL parameters that are part of the protocol, not settings.
PROTOCOL_PARAMS = {
    "query",
    "database",
    "default_format",
    "user",
    "password",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "compress",
    "decompress",
    "buffer_size",
    "wait_end_of_query",
}

# Statements allowed with readonly=1 (first keyword of the normalised query).
READ_ONLY_KEYWORDS = {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"}

# ClickHouse's mapping of some exception codes to HTTP statuses (HTTPHandler.cpp); the rest 500.
HTTP_STATUS = {
    164: 403,  # READONLY
    497: 403,  # ACCESS_DENIED
    516: 401,  # AUTHENTICATION_FAILED
    60: 404,  # UNKNOWN_TABLE
    81: 404,  # UNKNOWN_DATABASE
    47: 404,  # UNKNOWN_IDENTIFIER
    46: 404,  # UNKNOWN_FUNCTION
    62: 400,  # SYNTAX_ERROR
    27: 400,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    6: 400,  # CANNOT_PARSE_TEXT
    26: 400,  # CANNOT_PARSE_QUOTED_STRING
    36: 400,  # BAD_ARGUMENTS
    38: 400,  # CANNOT_PARSE_DATE
    41: 400,  # CANNOT_PARSE_DATETIME
    43: 400,  # ILLEGAL_TYPE_OF_ARGUMENT
    53: 400,  # TYPE_MISMATCH
    115: 400,  # UNKNOWN_SETTING
    117: 400,  # INCORRECT_DATA
    456: 400,  # UNKNOWN_QUERY_PARAMETER
    457: 400,  # BAD_QUERY_PARAMETER
}

CODE_RE = re.compile(r"Code: (\d+)\.")
FORMAT_RE = re.compile(r"\bFORMAT\s+([A-Za-z0-9]+)\s*;?\s*$", re.IGNORECASE)
INSERT_FORMAT_RE = re.compile(r"^\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+([A-Za-z0-9]+)\s*$", re.IGNORECASE | re.DOTALL)
SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClickHouseError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def chdb_error(e):
    text = str(e).strip()
    m = CODE_RE.search(text)
    code = int(m.group(1)) if m else 1000
    if not text.startswith("Code:"):
        text = "Code: %d. DB::Exception: %s" % (code, text)
    return ClickHouseError(code, text)


class Engine:
    """One chDB connection, used by one request at a time (chDB sessions are not concurrent)."""

    def __init__(self, path):
        self.conn = chdb.connect(path)
        self.lock = threading.Lock()

    def _run(self, sql, fmt="TabSeparated", params=None):
        try:
            r = self.conn.query(sql, fmt, params=params or {})
        except Exception as e:  # chDB raises its own error type with ClickHouse's message
            raise chdb_error(e)
        return r.bytes() if r is not None else b""

    def normalised(self, sql):
        """The query as ClickHouse's parser formats it; refuses multi-statements like the server."""
        out = self._run(
            "SELECT formatQuerySingleLine({q:String})", "TabSeparatedRaw", {"q": tsv_escape(sql)}
        )
        return out.decode("utf-8", "replace").strip()

    def execute(self, query, data, database, settings, params, default_format):
        with self.lock:
            is_insert = query.lstrip()[:16].upper().startswith("INSERT")
            fmt = default_format or "TabSeparated"
            m = FORMAT_RE.search(query) if not is_insert else None
            if m:
                fmt = m.group(1)
            applied = []
            try:
                self._run("USE " + (database or "default"))
                for k, v in settings.items():
                    if k == "readonly":
                        continue
                    self._run("SET %s = %s" % (k, quote_setting(v)))
                    applied.append(k)
                # Statement kind and multi-statement check, under this request's settings
                # (max_query_size applies to the parser here as on a server).
                read_only = settings.get("readonly", "0") not in ("0", "")
                # Without a ';' a query cannot hold two statements: parse only when it matters.
                if not is_insert and (read_only or ";" in query):
                    norm = self.normalised(query)
                    first = norm.split(None, 1)[0].upper() if norm else ""
                    if read_only and first not in READ_ONLY_KEYWORDS:
                        raise ClickHouseError(
                            164,
                            "Code: 164. DB::Exception: default: Cannot execute query in readonly mode. (READONLY)",
                        )
                elif is_insert and read_only:
                    raise ClickHouseError(
                        164,
                        "Code: 164. DB::Exception: default: Cannot execute query in readonly mode. (READONLY)",
                    )
                m = INSERT_FORMAT_RE.match(query) if data is not None else None
                if m:
                    # Stream the body into the insert (chDB's inserter), as a server reads
                    # the POST body: no copy of the data into the query text.
                    try:
                        ins = self.conn.send_insert(m.group(1), m.group(2))
                        ins.append(data)
                        ins.finish()
                    except Exception as e:
                        raise chdb_error(e)
                    out = b""
                else:
                    sql = query if data is None else query + "\n" + data.decode("utf-8")
                    out = self._run(sql, fmt, params)
            finally:
                for k in applied:
                    try:
                        self._run("SET %s = DEFAULT" % k)
                    except ClickHouseError:
                        pass
            return out, fmt


def tsv_escape(v):
    """A query parameter value as ClickHouse reads it (escaped like a TabSeparated field)."""
    return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def quote_setting(v):
    if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", v):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


CONTENT_TYPES = {
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONCompactEachRow": "application/x-ndjson; charset=UTF-8",
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tollgate-clickhouse-adapter"

    def log_message(self, fmt, *args):  # quiet: tests read stdout for the port only
        pass

    def _reply(self, status, body, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, err):
        status = HTTP_STATUS.get(err.code, 500)
        body = (err.message + "\n").encode("utf-8")
        self._reply(
            status,
            body,
            {
                "Content-Type": "text/plain; charset=UTF-8",
                "X-ClickHouse-Exception-Code": str(err.code),
            },
        )

    def _auth_ok(self, qs):
        want_user = self.server.user
        want_password = self.server.password
        if want_password is None:
            return True
        user = self.headers.get("X-ClickHouse-User")
        password = self.headers.get("X-ClickHouse-Key")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                u, _, p = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
                user, password = u, p
            except Exception:
                pass
        user = qs.get("user", user)
        password = qs.get("password", password)
        return (user or "default") == want_user and password == want_password

    def _handle(self, body):
        url = urllib.parse.urlsplit(self.path)
        qs = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if url.path == "/ping" or (url.path == "/" and "query" not in qs and not body):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        if url.path != "/":
            self._reply(404, b"There is no handle " + url.path.encode() + b"\n")
            return
        if not self._auth_ok(qs):
            self._error(
                ClickHouseError(
                    516,
                    "Code: 516. DB::Exception: %s: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)"
                    % (self.headers.get("X-ClickHouse-User") or "default"),
                )
            )
            return
        database = qs.get("database") or self.headers.get("X-ClickHouse-Database")
        if database is not None and not IDENT_RE.match(database):
            self._error(ClickHouseError(81, "Code: 81. DB::Exception: Database %s does not exist. (UNKNOWN_DATABASE)" % database))
            return
        params = {k[6:]: v for k, v in qs.items() if k.startswith("param_")}
        settings = {}
        for k, v in qs.items():
            if k in PROTOCOL_PARAMS or k.startswith("param_"):
                continue
            if not SETTING_NAME_RE.match(k):
                self._error(ClickHouseError(115, "Code: 115. DB::Exception: Unknown setting %s. (UNKNOWN_SETTING)" % k))
                return
            settings[k] = v
        if self.command == "GET":
            # ClickHouse runs GET requests read-only.
            settings.setdefault("readonly", "1")
        if "query" in qs:
            query, data = qs["query"], (body if body else None)
        else:
            query, data = body.decode("utf-8"), None
        if not query.strip():
            self._error(ClickHouseError(62, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)"))
            return
        try:
            out, fmt = self.server.engine.execute(
                query, data, database, settings, params, qs.get("default_format")
            )
        except ClickHouseError as e:
            self._error(e)
            return
        self._reply(
            200,
            out,
            {
                "Content-Type": CONTENT_TYPES.get(fmt, "text/tab-separated-values; charset=UTF-8"),
                "X-ClickHouse-Format": fmt,
            },
        )

    def do_GET(self):
        self._handle(b"")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = read_chunked(self.rfile)
        else:
            body = self.rfile.read(n) if n else b""
        self._handle(body)


def read_chunked(f):
    out = bytearray()
    while True:
        line = f.readline().strip()
        size = int(line.split(b";")[0], 16)
        if size == 0:
            while f.readline() not in (b"\r\n", b"\n", b""):
                pass
            return bytes(out)
        out += f.read(size)
        f.readline()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8123, help="TCP port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--path", required=True, help="data directory (created if missing)")
    ap.add_argument("--user", default="default", help="user to accept (with --password)")
    ap.add_argument(
        "--password",
        default=None,
        help="require this password (X-ClickHouse-User/Key headers, basic auth or user/password URL parameters)",
    )
    args = ap.parse_args()
    os.makedirs(args.path, exist_ok=True)
    server = Server(("127.0.0.1", args.port), Handler)
    server.engine = Engine(args.path)
    server.user = args.user
    server.password = args.password

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print("listening on %s:%d" % (host, port), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        server.engine.conn.close()


if __name__ == "__main__":
    sys.exit(main())
