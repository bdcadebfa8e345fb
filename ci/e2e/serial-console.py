#!/usr/bin/env python3
"""ci/e2e/serial-console.py: the interactive serial console, used as a person uses it.

    serial-console.py --transcript FILE --marker WORD -- KUBECTL_ATTACH_COMMAND...

runs the `kubectl attach -it ...` command on a pseudo-terminal of its own (kubectl sees a real
terminal, as in a person's shell), presses Enter until the guest's login prompt shows, logs in
as $CONSOLE_USER with $CONSOLE_PASSWORD (retrying while cloud-init has not set the password yet),
types `echo WORD-$((6*7))` and waits for WORD-42 (the shell's answer, not the typed text), logs
out, then detaches with Ctrl-P Ctrl-Q (kubectl's detach keys) and checks kubectl ends by itself.
Everything kubectl showed goes to the transcript. Exit 0 on success, 1 with the reason on stderr.
Every wait is bounded.
"""
import argparse
import os
import pty
import re
import select
import signal
import sys
import time


class Session:
    def __init__(self, argv, transcript):
        self.transcript = open(transcript, "wb")
        self.buf = b""
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)

    def read(self, timeout):
        """Reads what is there within timeout; False once kubectl's side is closed."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: kubectl is gone
            return False
        if not data:
            return False
        self.buf += data
        self.transcript.write(data)
        self.transcript.flush()
        return True

    def type(self, text):
        os.write(self.fd, text.encode())

    def expect(self, what, patterns, bound, nudge=None):
        """Waits until the output after the last match holds one of patterns (regexes on bytes);
        returns the index of the first. nudge: text typed every 5 s while waiting."""
        deadline = time.monotonic() + bound
        last_nudge = time.monotonic()
        while True:
            for i, p in enumerate(patterns):
                m = re.search(p, self.buf)
                if m:
                    self.buf = self.buf[m.end():]
                    return i
            now = time.monotonic()
            if now >= deadline:
                fail(f"{what}: none of {patterns} within {bound}s; the last output: {self.buf[-400:]!r}")
            if nudge is not None and now - last_nudge >= 5:
                self.type(nudge)
                last_nudge = now
            if not self.read(min(1.0, deadline - now)):
                fail(f"{what}: kubectl attach ended; the last output: {self.buf[-400:]!r}")

    def wait_exit(self, bound):
        """kubectl's exit status if it ends within bound, else None."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            self.read(0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        return None

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def fail(msg):
    print(f"serial-console: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--transcript", required=True)
    ap.add_argument("--marker", required=True)
    ap.add_argument("--login-tries", type=int, default=12)
    ap.add_argument("argv", nargs="+")
    a = ap.parse_args()
    user = os.environ.get("CONSOLE_USER", "debian")
    password = os.environ["CONSOLE_PASSWORD"]

    s = Session(a.argv, a.transcript)
    try:
        start = time.monotonic()
        for attempt in range(1, a.login_tries + 1):
            # Enter until the prompt shows: an attach joins a console that is already quiet.
            s.expect("login prompt", [rb"login: ?$", rb"login: "], 60, nudge="\r")
            s.type(user + "\r")
            s.expect("password prompt", [rb"[Pp]assword: ?"], 30)
            s.type(password + "\r")
            got = s.expect("shell prompt", [rb"%s@[^:\s]+:" % user.encode(), rb"Login incorrect"], 60)
            if got == 0:
                break
            if attempt == a.login_tries:
                fail(f"'Login incorrect' {attempt} times: the guest's password is not {password!r}")
            time.sleep(5)  # cloud-init sets the password in its config stage
        s.type(f"echo {a.marker}-$((6*7))\r")
        s.expect("the shell's answer", [re.escape(f"{a.marker}-42").encode()], 30)
        s.type("exit\r")
        s.expect("login prompt after logout", [rb"login: "], 60)
        print(f"serial-console: logged in and answered in {time.monotonic() - start:.1f}s", file=sys.stderr)
        s.type("\x10\x11")  # Ctrl-P Ctrl-Q: kubectl's detach keys
        code = s.wait_exit(15)
        if code is None:
            fail("kubectl attach did not end after Ctrl-P Ctrl-Q")
        if code != 0:
            fail(f"kubectl attach exited {code} after Ctrl-P Ctrl-Q")
        print("serial-console: detached with Ctrl-P Ctrl-Q", file=sys.stderr)
    finally:
        s.kill()


if __name__ == "__main__":
    main()
