"""Runs the JVM scenarios of tests/java (kafka-clients + Kafka Streams 4.x) from pytest.

The Maven build goes to $SLUICE_JAVA_OUT (default ~/.cache/sluice-java, outside the checkout):
<out>/classes + <out>/libs/*.jar. scripts/test builds it before pytest; `java_classpath()` rebuilds
when tests/java changed (a stamp of pom.xml and the sources), so a lone pytest run works too.
Without java or mvn on PATH the JVM tests skip, saying so.
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JAVA_DIR = REPO / "tests" / "java"
BUILD_TIMEOUT_S = 600
JVM_OPTS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-Dorg.slf4j.simpleLogger.showDateTime=true"]


def out_dir() -> Path:
    env = os.environ.get("SLUICE_JAVA_OUT")
    return Path(env) if env else Path(os.environ.get("HOME", "/root")) / ".cache" / "sluice-java"


def _sources_hash() -> str:
    h = hashlib.sha256()
    files = [JAVA_DIR / "pom.xml", *sorted((JAVA_DIR / "src").rglob("*.java"))]
    for f in files:
        h.update(str(f.relative_to(JAVA_DIR)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def build(quiet: bool = True) -> Path:
    """Builds tests/java into out_dir() unless the stamp says it is up to date. Returns out_dir()."""
    out = out_dir()
    stamp = out / ".sluice-sources.sha256"
    want = _sources_hash()
    if stamp.exists() and stamp.read_text() == want and (out / "classes").is_dir():
        return out
    cmd = ["mvn", "-B", "-f", str(JAVA_DIR / "pom.xml"), "package", f"-Dsluice.java.out={out}"]
    if quiet:
        cmd.insert(1, "-q")
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=quiet, text=True, timeout=BUILD_TIMEOUT_S)
    if r.returncode != 0:
        raise AssertionError(f"mvn package of tests/java failed ({r.returncode}):\n"
                             f"{(r.stdout or '')[-6000:]}\n{(r.stderr or '')[-3000:]}")
    stamp.write_text(want)
    return out


def java_classpath() -> str:
    missing = [t for t in ("java", "mvn") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"JVM tests need {' and '.join(missing)} on PATH (Java 17+, Maven); not found")
    out = build()
    return f"{out / 'classes'}:{out / 'libs'}/*"


def java_cmd(cp: str, scenario: str, bootstrap: str, *args) -> list:
    return ["java", *JVM_OPTS, "-cp", cp, "sluice.tests.Main", scenario, bootstrap, *map(str, args)]


def run(cp: str, scenario: str, bootstrap: str, *args, timeout=90) -> subprocess.CompletedProcess:
    """Runs one scenario to completion (bounded). Output is stdout + stderr together."""
    return subprocess.run(java_cmd(cp, scenario, bootstrap, *args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


class JavaProc:
    """A long-running scenario (a Streams instance, a generator) with its output in a file."""

    def __init__(self, cp, log_path: Path, scenario, bootstrap, *args):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(java_cmd(cp, scenario, bootstrap, *args), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines=60) -> str:
        return f"----- {self.log_path.name} -----\n" + "\n".join(self.text().splitlines()[-lines:])

    def digest(self, top=12) -> str:
        """The WARN/ERROR lines counted by kind (thread names and ids stripped), most frequent
        first: a failure's cause in a few lines, before the long tails."""
        counts = {}
        for line in self.text().splitlines():
            m = re.search(r"\b(WARN|ERROR)\b (\S+) - (.*)", line)
            if not m:
                continue
            msg = re.sub(r"\[[^\]]*\]", "", m.group(3))
            msg = re.sub(r"\S*(test|app)-\S*", "<name>", msg)
            msg = re.sub(r"\d+", "N", msg)[:200]
            key = f"{m.group(1)} {m.group(2).rsplit('.', 1)[-1]}: {msg}"
            counts[key] = counts.get(key, 0) + 1
        rows = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return f"----- {self.log_path.name} digest -----\n" + "\n".join(f"{n:6d} {k}" for k, n in rows)

    def last_int(self, key: str) -> int:
        """The last `key=N` the process printed (0 if none)."""
        n = 0
        for line in self.text().splitlines():
            if line.startswith(key + "="):
                try:
                    n = int(line[len(key) + 1:].split()[0])
                except ValueError:
                    pass
        return n

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self, timeout=40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise AssertionError(f"{self.log_path.name} ignored SIGTERM for {timeout}s\n{self.tail()}")
        self.log.close()
        return self.proc.returncode

    def wait(self, timeout) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()
