"""A local Neo4j Community 5.26 LTS server assembled from Maven Central, without Docker.

``neo4j/pom.xml`` names the server (``org.neo4j:neo4j`` and ``org.neo4j.app:neo4j-server``)
and Neo4j Browser; Maven copies every jar into ``HOME/lib`` once. The server then runs as
``java -cp 'HOME/lib/*:HOME/plugins/*' org.neo4j.server.CommunityEntryPoint`` in the
background, bound to 127.0.0.1 only.

Authentication is on, although the server listens on 127.0.0.1 only: any web page open in
the investigator's browser can reach 127.0.0.1 (Bolt over WebSocket is not bound by CORS),
and so can every local user. The first start generates a password for the user ``neo4j``,
stores it in ``HOME/conf/graphinv-password`` (owner-only, mode 0600) and sets it with
``neo4j-admin dbms set-initial-password`` before the server creates its system database;
graphinv reads it from there (:func:`local_auth`), so commands against the local server need
no password. A home made before passwords (auth off, ``neo4j`` still on its default
password) gets one on its next start; a home whose ``neo4j`` password was changed by hand
refuses to start until that password is put into the file. The HTTP API answers CORS
requests for the server's own origin only (``http://127.0.0.1:HTTP_PORT``), where Browser
runs.

With ``gds=True`` (``graphinv neo4j start --with-gds``) ``neo4j/gds-pom.xml`` adds Neo4j Graph
Data Science (open edition): its jars go into ``HOME/plugins`` once, minus the artifacts the
server already has in ``HOME/lib``, and every later start loads them (as Neo4j's own launcher
loads whatever sits in ``plugins/``).

Examples
--------
>>> from graphinv.stores.neo4j.local import LocalNeo4j
>>> LocalNeo4j(bolt_port=7688).bolt_uri
'bolt://127.0.0.1:7688'

Starting and stopping it (Java 17 and Maven needed)::

    server = LocalNeo4j(home=Path(".neo4j"))
    server.start()
    server.status().running     # -> True
    server.stop()
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import string
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from graphinv.errors import LocalNeo4jError

# The poms ship inside the package, so an installed wheel can assemble the server too.
POM = Path(__file__).with_name("pom.xml")
GDS_POM = Path(__file__).with_name("gds-pom.xml")
VERSION_PROBE = Path(__file__).with_name("newest-5.26.pom.xml")
SUPPORTED_JAVA = (17, 21)
ENTRY_POINT = "org.neo4j.server.CommunityEntryPoint"
ADMIN_ENTRY_POINT = "org.neo4j.cli.AdminTool"
USER = "neo4j"  # the initial admin user, the one set-initial-password sets
PASSWORD_FILE = "graphinv-password"  # in HOME/conf, owner-only
# Letters and digits only: the password reaches neo4j-admin through an @-file (never the
# command line, where other users could read it), and picocli splits @-files on blanks and
# quotes and reads a leading "-" as an option. 32 of 62 symbols: about 190 bits.
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
_PASSWORD_LENGTH = 32
_SAFE_PASSWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.~+=-]{7,}")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# A jar that only the GDS open edition ships; its version is the installed GDS version.
GDS_MARKER = re.compile(r"opengds-extension-(\d+\.\d+\.\d+)\.jar")

# The flags of the stock 5.26 neo4j.conf that matter on Java 17: Netty and the page cache
# reach into JDK internals, so these packages must be opened to the unnamed module.
JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.tls.ephemeralDHKeySize=2048",
    "-Djdk.tls.rejectClientInitiatedRenegotiation=true",
    "-Dlog4j2.disable.jmx=true",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
)


def default_home() -> Path:
    """Where the local server lives unless ``GRAPHINV_NEO4J_HOME`` says otherwise.

    A per-user data folder, so an installed wheel never writes into site-packages.
    """
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "graphinv" / "neo4j"


@dataclass(frozen=True)
class Neo4jStatus:
    """What ``status()`` reports about the local server."""

    running: bool
    pid: int | None
    bolt_uri: str
    browser_url: str
    version: str | None
    home: Path
    # Set only by the start that generated the password, so it is shown once.
    new_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class LocalNeo4j:
    """The local server: where it lives, which ports it takes and how much memory it gets.

    Parameters
    ----------
    home
        Folder for jars, configuration, data and logs (git-ignored).
    bolt_port, http_port
        Ports on 127.0.0.1.
    heap, pagecache
        JVM heap and page cache sizes (``"2g"``); together they must fit in RAM beside the
        Python processes that feed the server.
    jars
        Where the jars live; defaults to ``home/lib``. Several homes (say, a throw-away one
        in a test) can share one download.
    gds
        Install Neo4j Graph Data Science into ``home/plugins`` on start when it is not there
        yet. Once installed, every start loads it, whatever this flag says.
    """

    home: Path = Path(".neo4j")
    bolt_port: int = 7687
    http_port: int = 7474
    heap: str = "2g"
    pagecache: str = "2g"
    jars: Path | None = None
    gds: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LocalNeo4j:
        """Build from ``GRAPHINV_NEO4J_HOME``, ``…_BOLT_PORT``, ``…_HTTP_PORT``, ``…_HEAP``,
        ``…_PAGECACHE``, ``…_GDS`` (``1``/``true`` installs GDS on start) in ``env`` (default
        ``os.environ``); unset ones keep their defaults (home: :func:`default_home`)."""
        env = os.environ if env is None else env
        gds = env.get("GRAPHINV_NEO4J_GDS", "").strip().lower()
        if gds not in ("", "0", "false", "no", "1", "true", "yes"):
            raise LocalNeo4jError(f"GRAPHINV_NEO4J_GDS={gds!r}: use 1/true/yes or 0/false/no")
        return cls(
            home=Path(env.get("GRAPHINV_NEO4J_HOME") or default_home()),
            bolt_port=int(env.get("GRAPHINV_NEO4J_BOLT_PORT", 7687)),
            http_port=int(env.get("GRAPHINV_NEO4J_HTTP_PORT", 7474)),
            heap=env.get("GRAPHINV_NEO4J_HEAP", "2g"),
            pagecache=env.get("GRAPHINV_NEO4J_PAGECACHE", "2g"),
            gds=gds in ("1", "true", "yes"),
        )

    # -- paths ---------------------------------------------------------------------------

    @property
    def lib(self) -> Path:
        return self.jars if self.jars is not None else self.home / "lib"

    @property
    def plugins(self) -> Path:
        return self.home / "plugins"

    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / "neo4j.pid"

    @property
    def console_log(self) -> Path:
        return self.home / "logs" / "console.log"

    @property
    def password_file(self) -> Path:
        return self.conf_dir / PASSWORD_FILE

    @property
    def bolt_uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def origin(self) -> str:
        """The web origin Browser runs at: the only one the HTTP API answers CORS for."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def browser_url(self) -> str:
        # Browser reads these query parameters: the Bolt URL with its user name, and user
        # name / password preselected, so the connect form needs just the password.
        return (
            f"{self.origin}/browser/?dbms=bolt://{USER}@127.0.0.1:{self.bolt_port}"
            "&preselectAuthMethod=NATIVE"
        )

    @property
    def auth(self) -> tuple[str, str]:
        """``("neo4j", password)`` from the password file (see :meth:`password`)."""
        return (USER, self.password())

    def password(self) -> str:
        """The stored password of the user ``neo4j``.

        Raises
        ------
        LocalNeo4jError
            No password file (the server was never started by this graphinv), or it is a
            link, not owned by this user, or readable by others: a password others could
            read is refused rather than used.
        """
        path = self.password_file
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise LocalNeo4jError(
                f"no password file {path}: `graphinv neo4j start` creates it (a server "
                "started by a graphinv from before passwords: stop it and start it again)"
            ) from None
        except OSError as error:  # ELOOP: a symbolic link
            raise LocalNeo4jError(f"cannot open {path} (it must not be a link): {error}") from None
        with os.fdopen(fd, encoding="utf-8") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise LocalNeo4jError(f"{path} must be a regular file owned by you")
            if info.st_mode & 0o077:
                raise LocalNeo4jError(
                    f"{path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                    f"`chmod 600 {path}` and consider changing the password"
                )
            password = file.read().strip()
        if not password:
            raise LocalNeo4jError(f"{path} is empty")
        return password

    # -- install -------------------------------------------------------------------------

    def install(self) -> Path:
        """Copy the server jars from Maven Central into ``home/lib`` (once).

        Returns the lib folder. A half-finished copy is never mistaken for a finished one:
        jars land in a temporary folder that is renamed only when Maven succeeds.
        """
        if self.version() is not None:
            return self.lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalNeo4jError("Maven (`mvn`) is not on PATH; it fetches the Neo4j jars")
        env = self._java_env()
        newest = newest_release(mvn, env)
        staging = self.lib.with_name(self.lib.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging.resolve()}",
            *([f"-Dneo4j.version={newest}"] if newest else []),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise LocalNeo4jError(
                "Maven could not fetch the Neo4j jars:\n" + (done.stdout + done.stderr)[-3000:]
            )
        shutil.rmtree(self.lib, ignore_errors=True)
        staging.rename(self.lib)
        return self.lib

    def install_gds(self) -> Path:
        """Copy Neo4j Graph Data Science from Maven Central into ``home/plugins`` (once).

        Jars whose artifact (group and artifact id) the server already has in ``home/lib``
        are left out: two copies of, say, Jackson on one class path break the server. Names
        alone would mislead: ``org.neo4j.gds:annotations`` and ``org.neo4j.gds:neo4j-values``
        share a file-name stem with Neo4j's own jars but hold other classes, so they stay.

        Returns the plugins folder. As with the server jars, a half-finished copy is never
        mistaken for a finished one.

        Raises
        ------
        LocalNeo4jError
            Maven missing or failing, or ``home/plugins`` holding files graphinv did not put
            there (they are not overwritten; move them away first).
        """
        if self.gds_version() is not None:
            return self.plugins
        foreign = sorted(p.name for p in self.plugins.iterdir()) if self.plugins.is_dir() else []
        if foreign:
            raise LocalNeo4jError(
                f"{self.plugins} already holds {', '.join(foreign[:5])}; GDS installs into an "
                "empty plugins folder only, so move those files away first"
            )
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalNeo4jError("Maven (`mvn`) is not on PATH; it fetches the GDS jars")
        self.install()
        env = self._java_env()
        on_server = _resolved_artifacts(mvn, POM, env, f"-Dneo4j.version={self.version()}")
        staging = self.plugins.with_name("plugins.partial")
        download = self.plugins.with_name("plugins.download")
        for folder in (staging, download):
            shutil.rmtree(folder, ignore_errors=True)
        # The repository layout (group/artifact/version/file) tells each jar's artifact exactly.
        done = subprocess.run(
            [mvn, "-q", "-B", "-f", str(GDS_POM), "dependency:copy-dependencies",
             f"-DoutputDirectory={download.resolve()}", "-Dmdep.useRepositoryLayout=true"],
            capture_output=True, text=True, env=env,
        )
        if done.returncode != 0:
            shutil.rmtree(download, ignore_errors=True)
            raise LocalNeo4jError(
                "Maven could not fetch the GDS jars:\n" + (done.stdout + done.stderr)[-3000:]
            )
        staging.mkdir(parents=True)
        for jar in download.rglob("*.jar"):
            parts = jar.relative_to(download).parts
            group, artifact = ".".join(parts[:-3]), parts[-3]
            if (group, artifact) not in on_server:
                jar.rename(staging / jar.name)
        shutil.rmtree(download)
        self.plugins.mkdir(parents=True, exist_ok=True)
        self.plugins.rmdir()
        staging.rename(self.plugins)
        return self.plugins

    def gds_version(self) -> str | None:
        """The GDS version in ``home/plugins``, or None when GDS is not installed."""
        if not self.plugins.is_dir():
            return None
        for jar in self.plugins.glob("opengds-extension-*.jar"):
            match = GDS_MARKER.fullmatch(jar.name)
            if match:
                return match.group(1)
        return None

    def version(self) -> str | None:
        """The Neo4j version in ``home/lib``, or None when not installed."""
        if not self.lib.is_dir():
            return None
        for jar in self.lib.glob("neo4j-kernel-*.jar"):
            match = re.fullmatch(r"neo4j-kernel-(\d+\.\d+\.\d+)\.jar", jar.name)
            if match:
                return match.group(1)
        return None

    # -- configuration -------------------------------------------------------------------

    def write_conf(self) -> Path:
        """Write ``conf/neo4j.conf`` from this object's settings (every start)."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        home = self.home.resolve()
        settings = {
            "server.default_listen_address": "127.0.0.1",
            "server.bolt.listen_address": f"127.0.0.1:{self.bolt_port}",
            "server.bolt.advertised_address": f"127.0.0.1:{self.bolt_port}",
            "server.http.enabled": "true",
            "server.http.listen_address": f"127.0.0.1:{self.http_port}",
            "server.http.advertised_address": f"127.0.0.1:{self.http_port}",
            "server.https.enabled": "false",
            "server.directories.data": str(home / "data"),
            "server.directories.logs": str(home / "logs"),
            "server.directories.plugins": str(home / "plugins"),
            "server.directories.import": str(home / "import"),
            "server.directories.run": str(home / "run"),
            "server.directories.lib": str(self.lib.resolve()),
            "server.directories.licenses": str(home / "licenses"),
            "server.memory.heap.initial_size": self.heap,
            "server.memory.heap.max_size": self.heap,
            "server.memory.pagecache.size": self.pagecache,
            "dbms.security.auth_enabled": "true",
            # Neo4j sends this one value as Access-Control-Allow-Origin to every request, so
            # a page from any other origin cannot read an answer (the default is "*").
            "dbms.security.http_access_control_allow_origin": self.origin,
            "dbms.usage_report.enabled": "false",
            "db.tx_log.rotation.retention_policy": "1 files",
            # GDS reaches into kernel internals; only its own procedures get that, and only
            # when it is installed.
            **(
                {"dbms.security.procedures.unrestricted": "gds.*"}
                if self.gds_version() is not None
                else {}
            ),
            # Style and guide of `graphinv browser-kit`, served from home/web/ by this server.
            # The style itself is applied by the kit's index.html, without a frame.
            "browser.post_connect_cmd": (
                f"play http://localhost:{self.http_port}/browser/graphinv/guide.html"
            ),
        }
        for folder in ("data", "logs", "plugins", "import", "run", "licenses"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        # The graph, the password's hash (data/dbms/auth.ini), the password file and the
        # query log are the owner's alone: other local users get no way around the password.
        for folder in ("data", "conf", "logs"):
            (self.home / folder).chmod(0o700)
        path = self.conf_dir / "neo4j.conf"
        path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        return path

    # -- lifecycle -----------------------------------------------------------------------

    def status(self) -> Neo4jStatus:
        """Whether our server process is alive (and which version is installed)."""
        pid = self._live_pid()
        return Neo4jStatus(
            running=pid is not None,
            pid=pid,
            bolt_uri=self.bolt_uri,
            browser_url=self.browser_url,
            version=self.version(),
            home=self.home,
        )

    def start(
        self,
        *,
        timeout: float = 180.0,
        web_kit: Callable[[Path, Path], object] | None = None,
    ) -> Neo4jStatus:
        """Install if needed, start in the background and wait until Bolt answers ``RETURN 1``.

        ``web_kit(home, lib)`` runs before the JVM starts, so files it puts in ``home/web``
        (the Browser guide and style) are served from the first connect.

        The first start (and the first one of a home made before passwords) generates the
        password of ``neo4j`` and returns it in ``new_password``, once; later starts return
        None there, and the password stays in :attr:`password_file`.

        Raises
        ------
        LocalNeo4jError
            Already running (the message says where), a port is taken by something else,
            Java 17/21 not found, the password could not be set or the server refuses it,
            or the server did not answer in time (the message carries the tail of its log).
        """
        import neo4j

        current = self.status()
        if current.running:
            raise LocalNeo4jError(
                f"the local Neo4j is already running (pid {current.pid}, {self.bolt_uri}, "
                f"home {self.home}); `graphinv neo4j stop` first to restart it"
            )
        for port in (self.bolt_port, self.http_port):
            if _port_in_use(port):
                raise LocalNeo4jError(
                    f"port {port} on 127.0.0.1 is taken by another process; choose other ports "
                    "with GRAPHINV_NEO4J_BOLT_PORT / GRAPHINV_NEO4J_HTTP_PORT"
                )
        self.install()
        if self.gds:
            self.install_gds()
        self.write_conf()
        new_password = self._ensure_password()
        auth = self.auth
        if web_kit is not None:
            web_kit(self.home, self.lib)
        java = find_java()
        home = self.home.resolve()
        heap_flags = (f"-Xms{self.heap}", f"-Xmx{self.heap}")
        cmd = [
            str(java), *heap_flags, *JVM_FLAGS,
            # plugins/* as Neo4j's own launcher has it: GDS registers through the kernel's
            # extension services, which only see jars on the class path.
            "-cp", f"{self.lib.resolve()}/*:{self.plugins.resolve()}/*",
            ENTRY_POINT, f"--home-dir={home}", f"--config-dir={home / 'conf'}", "--console-mode",
        ]
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        with self.console_log.open("ab") as log:
            log.write(f"\n--- graphinv start {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
            log.flush()
            process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=home, start_new_session=True,
            )
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise LocalNeo4jError(
                    f"Neo4j exited with status {process.returncode} while starting. "
                    f"Last lines of {self.console_log}:\n{self.log_tail()}"
                )
            try:
                answers = _bolt_answers(self.bolt_uri, auth)
            except neo4j.exceptions.AuthError as error:
                self.stop()
                raise LocalNeo4jError(
                    f"{self.bolt_uri} refuses the password of {USER} in {self.password_file} "
                    f"({error.message}). Its password was changed outside graphinv: write that "
                    "password into the file (owner-only, chmod 600), or start from a fresh home"
                ) from error
            if answers:
                return dataclasses.replace(self.status(), new_password=new_password)
            time.sleep(0.5)
        self.stop()
        raise LocalNeo4jError(
            f"Neo4j did not answer on {self.bolt_uri} within {timeout:.0f} s. "
            f"Last lines of {self.console_log}:\n{self.log_tail()}"
        )

    def stop(self, *, timeout: float = 60.0) -> bool:
        """Stop the server cleanly (SIGTERM, then SIGKILL after ``timeout``).

        Returns False when it was not running.
        """
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def loaded_gds_version(self) -> str | None:
        """The GDS version the running server answers ``CALL gds.version()`` with.

        None when the server runs without GDS. Unlike :meth:`gds_version` (what is in
        ``home/plugins``), this asks the server itself, so it proves GDS registered.

        Raises
        ------
        LocalNeo4jError
            The server does not answer on its Bolt port.
        """
        import neo4j

        driver = neo4j.GraphDatabase.driver(self.bolt_uri, auth=self.auth, connection_timeout=5)
        try:
            with driver, driver.session() as session:
                return session.run("CALL gds.version()").single(strict=True)["gdsVersion"]
        except neo4j.exceptions.ClientError as error:
            if error.code == "Neo.ClientError.Procedure.ProcedureNotFound":
                return None
            raise LocalNeo4jError(
                f"{self.bolt_uri} refused `CALL gds.version()`: {error}"
            ) from error
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as error:
            raise LocalNeo4jError(f"{self.bolt_uri} does not answer: {error}") from error

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's console log (where start-up errors appear)."""
        candidates = [self.console_log, self.home / "logs" / "neo4j.log"]
        text = ""
        for path in candidates:
            if path.is_file():
                text += "".join(path.read_text(errors="replace").splitlines(True)[-lines:])
        return text or "(no log written)"

    # -- internals -----------------------------------------------------------------------

    def _ensure_password(self) -> str | None:
        """Generate the password file if missing and set it before the system database
        exists; return the password when it was generated now.

        A system database that exists without a password file is a home from before
        passwords: its ``neo4j`` still has the default password, which set-initial-password
        replaces on the next start (Neo4j applies ``data/dbms/auth.ini`` to a ``neo4j``
        user that still has the default password).
        """
        generated = None
        if not os.path.lexists(self.password_file):
            generated = "".join(
                secrets.choice(_PASSWORD_ALPHABET) for _ in range(_PASSWORD_LENGTH)
            )
            self.conf_dir.mkdir(parents=True, exist_ok=True)
            # Created owner-only in one step, never through a planted link or over a file.
            fd = os.open(
                self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
            )
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(generated + "\n")
        system_db = self.home / "data" / "databases" / "system"
        if generated is not None or not system_db.exists():
            try:
                self._set_initial_password()
            except LocalNeo4jError:
                if generated is not None:
                    self.password_file.unlink()  # the next start generates and sets a new one
                raise
        return generated

    def _set_initial_password(self) -> None:
        password = self.password()  # checks the file: ours, owner-only
        if not _SAFE_PASSWORD.fullmatch(password):
            raise LocalNeo4jError(
                f"the password in {self.password_file} must be 8 or more letters, digits or "
                "_.~+=- (starting with a letter or digit) for neo4j-admin to read it"
            )
        home = self.home.resolve()
        command = [
            str(find_java()), "-Xmx256m", *JVM_FLAGS, "-cp", f"{self.lib.resolve()}/*",
            ADMIN_ENTRY_POINT, "dbms", "set-initial-password",
            # picocli reads the argument from the file, so the password stays off every
            # process list.
            f"@{self.password_file.resolve()}",
        ]
        env = {"NEO4J_HOME": str(home), "NEO4J_CONF": str(home / "conf"), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=home)
        if done.returncode != 0:
            raise LocalNeo4jError(
                "neo4j-admin dbms set-initial-password failed:\n"
                + (done.stdout + done.stderr)[-3000:]
            )

    def _live_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) and _is_neo4j(pid) else None

    def _java_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["JAVA_HOME"] = str(find_java().parents[1])
        return env


def newest_release(mvn: str, env: dict[str, str]) -> str | None:
    """The newest 5.26.x on Maven Central, or None when Maven cannot tell (then the pom's
    pinned fallback is used)."""
    done = subprocess.run(
        [mvn, "-B", "-f", str(VERSION_PROBE), "dependency:list"],
        capture_output=True, text=True, env=env,
    )
    match = re.search(r"org\.neo4j:neo4j:jar:(5\.26\.\d+)", done.stdout)
    return match.group(1) if match else None


def _resolved_artifacts(
    mvn: str, pom: Path, env: dict[str, str], *args: str
) -> set[tuple[str, str]]:
    """(group, artifact) of every dependency Maven resolves for ``pom``."""
    with tempfile.TemporaryDirectory() as folder:
        listing = Path(folder) / "dependencies.txt"
        done = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:list", f"-DoutputFile={listing}", *args],
            capture_output=True, text=True, env=env,
        )
        if done.returncode != 0 or not listing.is_file():
            raise LocalNeo4jError(
                f"Maven could not list the dependencies of {pom.name}:\n"
                + (done.stdout + done.stderr)[-3000:]
            )
        text = listing.read_text()
    # Lines read "   group:artifact:jar[:classifier]:version:scope[ -- module …]".
    found = re.findall(r"^\s+([\w.\-]+):([\w.\-]+):jar:\S+", text, re.MULTILINE)
    if not found:
        raise LocalNeo4jError(f"Maven listed no dependencies for {pom.name}:\n{text[-2000:]}")
    return set(found)


def find_java() -> Path:
    """The ``java`` binary of a JDK that Neo4j 5.26 supports (17 preferred, then 21).

    ``JAVA_HOME`` wins when it points at a supported version; otherwise the usual Debian
    and Temurin locations are tried, then ``java`` on PATH.
    """
    candidates: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    jvm_root = Path("/usr/lib/jvm")
    if jvm_root.is_dir():
        for major in SUPPORTED_JAVA:
            candidates.extend(sorted(jvm_root.glob(f"*{major}*/bin/java")))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path).resolve())
    for java in candidates:
        if java.is_file() and _java_major(java) in SUPPORTED_JAVA:
            return java
    raise LocalNeo4jError(
        "no Java 17 or 21 found (Neo4j 5.26 runs on those only); install openjdk-17-jre-headless "
        "or set JAVA_HOME"
    )


def _java_major(java: Path) -> int | None:
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    # A zombie (exited, not yet reaped by its parent) no longer serves anything.
    return not (stat.is_file() and stat.read_text().split(") ", 1)[-1].startswith("Z"))


def _is_neo4j(pid: int) -> bool:
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.is_file():
        return True
    return ENTRY_POINT in cmdline.read_bytes().decode(errors="replace")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def local_auth(
    uri: str, *, env: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """The stored credentials of the local server when ``uri`` is its Bolt address.

    The local server is the one ``GRAPHINV_NEO4J_*`` in ``env`` (default ``os.environ``)
    describe; ``bolt://`` or ``neo4j://`` on 127.0.0.1, localhost or ::1 at its Bolt port
    is it. Any other URI, or a home without a password file, gives None.

    Raises
    ------
    LocalNeo4jError
        The password file exists but is unsafe (a link, someone else's, readable by others).

    Examples
    --------
    >>> local_auth("bolt://db.example.org:7687", env={}) is None
    True
    """
    parsed = urlsplit(uri)
    if parsed.scheme not in ("bolt", "neo4j") or parsed.hostname not in LOCAL_HOSTS:
        return None
    server = LocalNeo4j.from_env(env)
    if (parsed.port or 7687) != server.bolt_port or not os.path.lexists(server.password_file):
        return None
    return server.auth


def _bolt_answers(uri: str, auth: tuple[str, str]) -> bool:
    """Whether the server answers ``RETURN 1``; a refused password raises at once."""
    import neo4j

    try:
        # A plain session, not execute_query: the latter retries for half a minute itself.
        with (
            neo4j.GraphDatabase.driver(uri, auth=auth, connection_timeout=2) as driver,
            driver.session() as session,
        ):
            return session.run("RETURN 1 AS one").single(strict=True)["one"] == 1
    except neo4j.exceptions.AuthError:
        raise
    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError):
        return False
