"""A real nginx as the fleet's collector, for the tests of --report and bee-report: Debian's nginx on free
ports of 127.0.0.1, running the nginx configuration the README's Fleet section documents."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
TOKEN = "s3cr3t-token-4f9a"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readme_nginx_config() -> str:
    """The nginx `server` block the README's Fleet section documents (the test runs exactly that)."""
    text = README.read_text()
    fleet = text[text.index("\n## Fleet"):]
    return re.search(r"```nginx\n(.*?)```", fleet, re.S).group(1)


class Nginx:
    """A real nginx in the foreground, on free ports of 127.0.0.1, serving the README's server block (its
    `listen` and `root` pointed here) plus the test's variants: a token check, a stalled upstream, TLS
    and a forward proxy."""

    def __init__(self, work: Path):
        self.work = work
        self.root = work / "www"
        self.root.mkdir(parents=True)
        self.port, self.tls_port, self.proxy_port, self.stalled_port = (free_port() for _ in range(4))
        self.maintenance = work / "maintenance"
        self.access_log = work / "access.log"
        self.process: subprocess.Popen | None = None
        self.stalled = socket.socket()  # accepts connections into its backlog and never answers
        self.stalled.bind(("127.0.0.1", self.stalled_port))
        self.stalled.listen(16)

    def config(self, tls: tuple[Path, Path] | None) -> str:
        server = readme_nginx_config()
        server = re.sub(r"listen\s+[^;]+;", f"listen 127.0.0.1:{self.port};", server, count=1)
        server = server.replace("/srv/bee", str(self.root))  # root and the upload folder
        assert "location /fleet/" in server, "the README's nginx block no longer receives under /fleet/"
        # the collector in maintenance: 503 while the flag file exists
        server = server.replace("location /fleet/ {", f"location /fleet/ {{\n if (-f {self.maintenance}) "
                                                      "{ return 503; }", 1)
        extra = f"""
            location /token/ {{
                if ($http_authorization != "Bearer {TOKEN}") {{ return 401 "wrong or no token\\n"; }}
                dav_methods PUT; create_full_put_path on; client_max_body_size 64m;
            }}
            location /slow/ {{ proxy_pass http://127.0.0.1:{self.stalled_port}; proxy_read_timeout 120s; }}
            location /readonly/ {{ }}
            location /once/ {{  # like S3 with If-None-Match: * (nginx's dav alone overwrites)
                if (-f $request_filename) {{ return 412 "exists\n"; }}
                dav_methods PUT; create_full_put_path on; client_max_body_size 64m;
            }}
        """
        server = server.rstrip().removesuffix("}") + extra + "}\n"
        tls_server = ""
        if tls:
            cert, key = tls
            tls_server = server.replace(f"listen 127.0.0.1:{self.port};",
                                        f"listen 127.0.0.1:{self.tls_port} ssl;\n ssl_certificate {cert};\n"
                                        f" ssl_certificate_key {key};")
        temp = self.work / "temp"
        return f"""
            user root;
            worker_processes 1;
            daemon off;
            pid {self.work}/nginx.pid;
            error_log {self.work}/error.log info;
            events {{ worker_connections 64; }}
            http {{
                access_log {self.access_log} combined;
                client_body_temp_path {temp}/body;
                proxy_temp_path {temp}/proxy;
                fastcgi_temp_path {temp}/fastcgi;
                uwsgi_temp_path {temp}/uwsgi;
                scgi_temp_path {temp}/scgi;
                {server}
                {tls_server}
                server {{
                    listen 127.0.0.1:{self.proxy_port};
                    location / {{ proxy_pass http://127.0.0.1:{self.port}; }}
                }}
            }}
        """

    def start(self, tls: tuple[Path, Path] | None = None) -> Nginx:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        assert Path(binary).exists(), "nginx is not installed (apt-get install nginx)"
        (self.work / "temp").mkdir(exist_ok=True)
        conf = self.work / "nginx.conf"
        conf.write_text(self.config(tls))
        check = subprocess.run([binary, "-t", "-p", str(self.work), "-c", str(conf), "-e", "stderr"],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen([binary, "-p", str(self.work), "-c", str(conf), "-e",
                                         str(self.work / "error.log")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"nginx did not start: {(self.work / 'error.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.stalled.close()

    def statuses(self, path_part: str = "") -> list[int]:
        """The status of every PUT nginx logged (to a path containing path_part), in order."""
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        puts = [line for line in lines if '"PUT ' in line and path_part in line]
        return [int(line.split('" ')[1].split()[0]) for line in puts]
