#!/usr/bin/env python3
"""segopsd under its unit's sandbox: the system call filter and umask.

The unit (systemd/segopsd.service) allows @system-service less
@privileged and @resources, and sets UMask=0077. This machine's PID 1
need not be systemd, so the unit cannot be started; instead every
daemon here runs through tests/lib/unitsandbox.py, which reads the
built unit, loads the same filter with libseccomp (native architecture
only, NoNewPrivileges) and the same umask, and execs segopsd: segopsd
starts under them as under ExecStart=, with the same pid, and whatever
it starts (user_context_command, and /bin/kill as ExecReload= runs it)
inherits them.

A forbidden call kills the process with SIGSYS here, even one segopsd
would survive under the unit's SystemCallErrorNumber=EPERM: a call of
any path below that the filter forbids fails its test. Two tests use
the unit's own action (EPERM) to show what an operator sees when a
setting needs a forbidden call.

The paths: sockets bound by segopsd with socket_mode and socket_group,
sockets passed by "systemd" (LISTEN_FDS) with sd_notify and the
watchdog, events over both sockets,
delivery over TLS, the disk spool and its replay after a restart,
SIGHUP reload (sent by /bin/kill under the filter), the pk_ session
mint with a user_context_command, flush and a clean stop.

Environment (set by meson): SEGOPSD, SEGOPSD_SERVICE (the built unit),
SYSTEMD_ANALYZE, SEGOPS_SANITIZE. Skipped, with the reason, without
systemd-analyze or libseccomp.
"""

import ctypes.util
import glob
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
import unitsandbox  # noqa: E402
from harness import (SegopsTestCase, event_id, make_event,  # noqa: E402
                     send_stream)
from loopprobe import WatchdogListener  # noqa: E402

PK_KEY = 'pk_test_0123456789abcdef'


def ids(rng):
    return [event_id(i) for i in rng]


class SandboxCase(SegopsTestCase):
    """Each daemon runs through the unit's sandbox (see the module)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        unit = os.environ.get('SEGOPSD_SERVICE')
        analyze = (os.environ.get('SYSTEMD_ANALYZE') or
                   shutil.which('systemd-analyze'))
        if not unit:
            raise unittest.SkipTest('SEGOPSD_SERVICE is not set (run through '
                                    'meson test)')
        if not analyze:
            raise unittest.SkipTest('systemd-analyze is not installed '
                                    '(package systemd): no filter to apply')
        if not ctypes.util.find_library('seccomp'):
            raise unittest.SkipTest('libseccomp is not installed (package '
                                    'libseccomp2)')
        cls.sandbox = unitsandbox.UnitSandbox(unit, analyze)
        real = harness.segopsd_path()
        cls.wrapdir = tempfile.mkdtemp(prefix='segops-sandbox-')
        cls.addClassCleanup(shutil.rmtree, cls.wrapdir, True)
        cls.wrapper = os.path.join(cls.wrapdir, 'sandboxed')
        with open(cls.wrapper, 'w', encoding='utf-8') as f:
            f.write('#!/bin/sh\nexec %s %s "$@"\n' % (
                shlex.quote(sys.executable),
                shlex.quote(os.path.abspath(unitsandbox.__file__))))
        os.chmod(cls.wrapper, stat.S_IRWXU)
        segopsd = os.path.join(cls.wrapdir, 'segopsd')
        with open(segopsd, 'w', encoding='utf-8') as f:
            f.write('#!/bin/sh\nexec %s %s "$@"\n' % (
                shlex.quote(cls.wrapper), shlex.quote(real)))
        os.chmod(segopsd, stat.S_IRWXU)
        cls.addClassCleanup(os.environ.__setitem__, 'SEGOPSD',
                            os.environ['SEGOPSD'])
        os.environ['SEGOPSD'] = segopsd

    def sandbox_env(self, action='kill'):
        env = self.sandbox.env(action)
        if os.environ.get('SEGOPS_SANITIZE', 'none') != 'none':
            # LeakSanitizer stops the process's threads with ptrace
            # (@debug), which the filter refuses: segopsd hangs at exit.
            # The unit never runs a sanitized build.
            env['ASAN_OPTIONS'] = (os.environ.get('ASAN_OPTIONS', '') +
                                   ':detect_leaks=0')
        return env

    def sandboxed_daemon(self, action='kill', key=None, env=None,
                         **overrides):
        e = self.sandbox_env(action)
        e.update(env or {})
        return self.make_daemon(key, env=e, **overrides)

    def assertFiltered(self, d):
        """The daemon itself runs under a seccomp filter (mode 2)."""
        with open('/proc/%d/status' % d.pid, encoding='ascii') as f:
            fields = dict(line.split(':', 1) for line in f if ':' in line)
        self.assertEqual(fields['Seccomp'].strip(), '2', 'segopsd is not '
                         'under a seccomp filter')

    def assertStopsCleanly(self, d):
        code = d.stop()
        self.assertNotEqual(code, -signal.SIGSYS, 'a forbidden system call '
                            'killed segopsd:\n' + d.stderr_tail())
        self.assertEqual(code, 0, d.stderr_tail())

    def run_sandboxed(self, argv, action='kill'):
        env = dict(os.environ, **self.sandbox.env(action))
        return subprocess.run([self.wrapper] + argv, env=env, timeout=30,
                              capture_output=True, text=True)


class FilterTests(SandboxCase):

    def test_the_filter_is_the_units(self):
        # What segopsd needs, and what the unit takes away.
        for name in ('bind', 'fchmod', 'chmod', 'clone3', 'execve', 'setsid',
                     'close_range', 'fdatasync', 'getrandom', 'recvmmsg'):
            self.assertTrue(self.sandbox.allows(name), name)
        for name in ('fchownat', 'fchown', 'setuid', 'setgroups', 'chroot',
                     'setrlimit', 'setpriority', 'sched_setscheduler',
                     'ptrace', 'mount', 'init_module'):
            self.assertFalse(self.sandbox.allows(name), name)
        self.assertEqual(self.sandbox.umask, 0o077)
        self.assertEqual(self.sandbox.errno, 1)    # EPERM

    def test_a_forbidden_call_kills_here_and_fails_under_the_unit(self):
        prog = ['/bin/sh', '-c', 'exec renice -n 1 -p $$']
        r = self.run_sandboxed(prog)
        self.assertEqual(r.returncode, -signal.SIGSYS, r)
        r = self.run_sandboxed(prog, action='unit')
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn('Operation not permitted', r.stderr)


class DaemonTests(SandboxCase):

    tls = True

    def test_own_sockets_tls_spool_reload_stop(self):
        # Our own group, as the unit's Group=segops is segopsd's: no
        # fchown needed.
        spool = os.path.join(self.tmpdir, 'spool')
        d = self.sandboxed_daemon(listen__socket_mode='0660',
                                  listen__socket_group=str(os.getegid()),
                                  buffer__spool_dir=spool).start()
        self.assertFiltered(d)
        d.send_events_dgram([make_event(i) for i in range(5)])
        send_stream(d, [make_event(i) for i in range(5, 10)])
        self.assertEqual(d.flush()['ok'], True)
        self.assertEventsDelivered(ids(range(10)))
        # UMask=0077 takes nothing from socket_mode, and what the spool
        # holds is the daemon's alone.
        for p in (d.events_socket, d.control_socket):
            st = os.stat(p)
            self.assertEqual((stat.S_IMODE(st.st_mode), st.st_gid),
                             (0o660, os.getegid()), p)
        self.assertEqual(stat.S_IMODE(os.stat(spool).st_mode), 0o700)
        files = glob.glob(os.path.join(spool, '*'))
        self.assertTrue(files)
        for p in files:
            self.assertEqual(stat.S_IMODE(os.stat(p).st_mode) & 0o077, 0, p)

        # ExecReload= runs /bin/kill under the same filter.
        before = len(d.stderr_text())
        r = self.run_sandboxed(['/bin/kill', '-HUP', str(d.pid)])
        self.assertEqual(r.returncode, 0, r)
        self.assertTrue(d.wait_for_log(r'reloaded '), d.stderr_tail())
        self.assertIn('reloaded ', d.stderr_text()[before:])
        send_stream(d, [make_event(10)])
        self.assertEqual(d.flush()['ok'], True)
        self.assertEventsDelivered([event_id(10)])
        self.assertStopsCleanly(d)
        self.assertNoViolations()

    def unit_sockets(self, d):
        """The two sockets as segopsd.socket has systemd make them (at
        d's paths): its SocketMode= and PassCredentials=."""
        s = unitsandbox.unit_settings(os.environ['SEGOPSD_SOCKET'], 'Socket')
        socks = []
        for kind, path in ((socket.SOCK_DGRAM, d.events_socket),
                           (socket.SOCK_STREAM, d.control_socket)):
            sock = socket.socket(socket.AF_UNIX, kind)
            self.addCleanup(sock.close)
            if s.get('PassCredentials', ['no'])[-1] == 'yes':
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.bind(path)
            os.chmod(path, int(s.get('SocketMode', ['0666'])[-1], 8))
            if kind == socket.SOCK_STREAM:
                sock.listen(16)
            socks.append(sock)
        return socks

    def test_passed_sockets_notify_watchdog(self):
        # As the units start it: sockets passed, sd_notify, a watchdog.
        wd = WatchdogListener(os.path.join(self.tmpdir, 'notify.sock'), 0.2)
        wd.start()
        self.addCleanup(wd.stop)
        d = self.sandboxed_daemon(env=wd.env())
        socks = self.unit_sockets(d)
        # Sent before segopsd runs: the kernel adds the sender's
        # credentials only if the socket asked for them already.
        d.send_dgram('{"op":"client_dropped","count":3}\n')
        d.start(listen_fds=socks)
        self.assertFiltered(d)
        st = d.wait_for_stats(lambda s: s['client_dropped'] == 3)
        self.assertEqual([(c['pid'], c['uid'], c['identity'], c['dropped'])
                          for c in st['clients']],
                         [(os.getpid(), os.getuid(), 'verified', 3)])
        d.send_dgram(json.dumps(make_event(0)) + '\n')
        send_stream(d, [make_event(1)])
        self.assertEqual(d.flush()['ok'], True)
        self.assertEventsDelivered(ids(range(2)))
        self.assertRegex(d.stderr_text(), r'adopted from systemd')
        self.assertTrue(self.upstream.wait_until(lambda: wd.arrivals),
                        'no WATCHDOG=1')
        self.assertStopsCleanly(d)

    def test_spool_replays_after_a_restart(self):
        spool = os.path.join(self.tmpdir, 'spool')
        d = self.sandboxed_daemon(buffer__spool_dir=spool).start()
        self.upstream.stop()
        send_stream(d, [make_event(i) for i in range(20)])
        self.assertEqual(d.stats()['spool']['pending_events'], 20)
        self.assertStopsCleanly(d)
        self.upstream.start()
        d.start()
        self.assertEventsDelivered(ids(range(20)))
        st = d.wait_for_stats(lambda s: s['spool']['pending_events'] == 0)
        self.assertEqual(st['spool']['replayed'], 20)
        self.assertStopsCleanly(d)
        self.assertNoViolations()


class SessionTests(SandboxCase):

    api_key = PK_KEY

    def command(self, body):
        path = os.path.join(self.tmpdir, 'identity.sh')
        with open(path, 'w', encoding='utf-8') as f:
            f.write('#!/bin/sh\n' + body + '\n')
        os.chmod(path, stat.S_IRWXU)
        return path

    def test_user_context_command(self):
        d = self.sandboxed_daemon(
            batch__batch_size='3',
            upstream__user_context_command=self.command(
                'echo \'{"user_id": "cmd-user", "user_id_sig": "c0ffee"}\''))
        d.start()
        send_stream(d, [make_event(i) for i in range(3)])
        self.assertEventsDelivered(ids(range(3)))
        self.assertEqual([m['user_id'] for m in self.upstream.mints],
                         ['cmd-user'])
        self.assertStopsCleanly(d)
        self.assertNoViolations()

    def test_the_command_inherits_the_filter(self):
        # Under the unit, renice fails with EPERM in the command too.
        d = self.sandboxed_daemon(
            action='unit', batch__batch_size='3',
            upstream__user_context_command=self.command(
                'if renice -n 1 -p $$ >/dev/null 2>&1; then u=reniced; '
                'else u=refused; fi; echo "{\\"user_id\\": \\"$u\\"}"'))
        d.start()
        send_stream(d, [make_event(i) for i in range(3)])
        self.assertEventsDelivered(ids(range(3)))
        self.assertEqual([m['user_id'] for m in self.upstream.mints],
                         ['refused'])
        self.assertStopsCleanly(d)


class RefusedTests(SandboxCase):

    def test_another_socket_group_fails_with_a_reason(self):
        # Root could give the socket any group; the unit's filter takes
        # fchown away (@privileged): segopsd stops at start and says why,
        # instead of dying of SIGSYS.
        other = 4242 if os.getegid() != 4242 else 4243
        d = self.sandboxed_daemon(action='unit', listen__socket_mode='0660',
                                  listen__socket_group=str(other))
        d.start(wait=False)
        code = d.proc.wait(timeout=30)
        self.assertNotEqual(code, -signal.SIGSYS)
        self.assertNotEqual(code, 0)
        self.assertRegex(d.stderr_text(), r'cannot give it socket_group %d: '
                         r'Operation not permitted' % other)


if __name__ == '__main__':
    harness.main()
