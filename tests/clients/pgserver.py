"""`eddy standalone` on free loopback ports for the client suites (PostgreSQL and Flight SQL)."""
import json
import os
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def eddy_bin():
    path = os.environ.get("EDDY_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
        path = os.path.join(target, "debug", "eddy")
    assert os.path.exists(path), f"no eddy binary at {path}; build it or set EDDY_BIN"
    return path


class Eddy:
    """A running eddy; `port` is its PostgreSQL port."""

    def __init__(self, config=None):
        self.dir = tempfile.TemporaryDirectory(prefix="eddy-pg-")
        data = os.path.join(self.dir.name, "data")
        args = [eddy_bin(), "standalone", "--data-dir", data, "--pg-listen", "127.0.0.1:0",
                "--http-listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0"]
        if config:
            path = os.path.join(self.dir.name, "eddy.toml")
            with open(path, "w") as f:
                f.write(config)
            args += ["--config", path]
        self.log = open(os.path.join(self.dir.name, "eddy.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        endpoints = os.path.join(data, "endpoints.json")
        deadline = time.time() + 60
        while not os.path.exists(endpoints):
            assert self.proc.poll() is None, open(self.log.name).read()
            assert time.time() < deadline, "eddy did not start within 60 s"
            time.sleep(0.02)
        with open(endpoints) as f:
            ep = json.load(f)
        self.endpoints = ep
        self.port = int(ep["pg"].rsplit(":", 1)[1])

    def dsn(self, user="eddy", password=None):
        pw = f" password={password}" if password else ""
        return f"host=127.0.0.1 port={self.port} user={user} dbname=eddy{pw}"

    def psql(self, *args, sql=None):
        """Runs psql (e.g. `-c '\\dt'`); returns (returncode, stdout, stderr)."""
        cmd = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "eddy", "-d", "eddy", "-X"]
        cmd += list(args)
        out = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=60)
        return out.returncode, out.stdout, out.stderr

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        self.dir.cleanup()
