#!/usr/bin/env python3
"""A hostile host (issue 10), the socket items: what a process that can
write to the sockets, or to their directory, can make segopsd believe or
do.

- Socket files: their permissions are never set by path (a symlink
  swapped in right after bind() is not followed), the socket never
  appears with more than socket_mode nor with group bits for a group not
  yet socket_group, and socket_group gives them a group of their own.
  tests/lib/bindhook.c (LD_PRELOAD) plays the process racing the daemon
  in the directory, at the moment the file appears.
- client_dropped reports: the sender's identity is the kernel's
  (SO_PASSCRED on the datagram socket, SO_PEERCRED on the stream), never
  the pid a message declares, and one report adds at most
  max_client_dropped_report (counted in client_dropped_clamped).
"""

import grp
import json
import os
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from harness import SegopsTestCase, segopsd_path  # noqa: E402

BINDHOOK = os.environ.get('SEGOPS_BINDHOOK', '')
needs_hook = unittest.skipUnless(os.path.exists(BINDHOOK),
                                 'SEGOPS_BINDHOOK (tests/lib/bindhook.c) not built')


def other_group():
    """A group this process may give its files that is not its own:
    nogroup (Debian), nobody, or any group of ours but the primary."""
    for name in ('nogroup', 'nobody'):
        try:
            gid = grp.getgrnam(name).gr_gid
        except KeyError:
            continue
        if gid != os.getegid() and (os.geteuid() == 0 or gid in os.getgroups()):
            return name, gid
    for gid in os.getgroups():
        if gid != os.getegid():
            return str(gid), gid
    return None, None


def hook_env(tmpdir, log=None):
    """The environment for a daemon run under bindhook. Under ASan the
    preloaded module comes before the sanitizer's runtime in the library
    list, which ASan refuses unless told not to check."""
    env = {'LD_PRELOAD': BINDHOOK, 'SEGOPS_BINDHOOK_DIR': tmpdir}
    if log:
        env['SEGOPS_BINDHOOK_LOG'] = log
    asan = os.environ.get('ASAN_OPTIONS', '')
    env['ASAN_OPTIONS'] = (asan + ':' if asan else '') + 'verify_asan_link_order=0'
    return env


def wait_exit_or_ready(d, timeout=harness.START_TIMEOUT):
    """'exited' once the daemon has exited, 'ready' once it answers a
    ping; whichever comes first, within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            return 'exited'
        try:
            if d.control({'op': 'ping'}, timeout=1.0)[0].get('ok'):
                return 'ready'
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.02)
    return 'neither'


class SocketFiles(SegopsTestCase):

    def victim(self, mode=0o600):
        """A file of ours that a followed symlink would change."""
        path = os.path.join(self.tmpdir, 'victim')
        with open(path, 'w', encoding='utf-8') as f:
            f.write('not a socket\n')
        os.chmod(path, mode)
        return path

    @needs_hook
    def test_symlink_swapped_in_after_bind_is_not_followed(self):
        """The race of issue 10 item 8, won by the attacker every time:
        right after bind(), the events socket's name is renamed to a
        symlink to a file of ours. A chmod by path (the old code) made
        that file socket_mode; now the daemon sees the swap and refuses
        to start, and the file keeps its mode."""
        victim = self.victim(0o600)
        d = self.make_daemon(listen__socket_mode='0666',
                             env=hook_env(self.tmpdir))
        os.symlink(victim, d.events_socket + '.swap')
        d.start(wait=False)
        state = wait_exit_or_ready(d)
        self.assertEqual(stat.S_IMODE(os.stat(victim).st_mode), 0o600,
                         'the symlink was followed')
        self.assertEqual(state, 'exited', d.stderr_tail())
        self.assertNotEqual(d.proc.returncode, 0)
        self.assertIn('replaced by another file', d.stderr_text())
        self.assertTrue(os.path.islink(d.events_socket))

    def test_symlink_placed_before_start_is_not_followed(self):
        victim = self.victim(0o600)
        d = self.make_daemon(listen__socket_mode='0666')
        os.symlink(victim, d.events_socket)
        d.start(wait=False)
        self.assertEqual(wait_exit_or_ready(d), 'exited', d.stderr_tail())
        self.assertNotEqual(d.proc.returncode, 0)
        self.assertIn('not a socket', d.stderr_text())
        self.assertEqual(stat.S_IMODE(os.stat(victim).st_mode), 0o600)
        self.assertTrue(os.path.islink(d.events_socket))

    @needs_hook
    def test_socket_group_from_the_first_moment(self):
        """With socket_group, both sockets end with that group and
        socket_mode; at the moment each appeared (seen from inside the
        bind() call) it had no bits for its group then, nor for others."""
        name, gid = other_group()
        if name is None:
            self.skipTest('no group to give the sockets')
        log = os.path.join(self.tmpdir, 'bind.log')
        d = self.make_daemon(listen__socket_mode='0660',
                             listen__socket_group=name,
                             env=hook_env(self.tmpdir, log))
        d.start()
        for path in (d.events_socket, d.control_socket):
            st = os.lstat(path)
            self.assertTrue(stat.S_ISSOCK(st.st_mode), path)
            self.assertEqual(st.st_gid, gid, path)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o660, path)
        with open(log, encoding='utf-8') as f:
            seen = [line.split() for line in f]
        self.assertEqual(sorted(p for p, _, _ in seen),
                         sorted([d.events_socket, d.control_socket]))
        for path, mode, _ in seen:
            self.assertEqual(int(mode, 8) & 0o077, 0,
                             '%s appeared with mode %s' % (path, mode))

    @needs_hook
    def test_socket_mode_at_the_first_moment(self):
        """Without socket_group: at most socket_mode from the start,
        whatever the umask the daemon inherited, and exactly it after."""
        log = os.path.join(self.tmpdir, 'bind.log')
        d = self.make_daemon(listen__socket_mode='0620',
                             env=hook_env(self.tmpdir, log))
        old = os.umask(0)
        try:
            d.start()
        finally:
            os.umask(old)
        with open(log, encoding='utf-8') as f:
            seen = [line.split() for line in f]
        self.assertEqual(len(seen), 2, seen)
        for path, mode, _ in seen:
            self.assertEqual(int(mode, 8) & ~0o620, 0,
                             '%s appeared with mode %s' % (path, mode))
        for path in (d.events_socket, d.control_socket):
            self.assertEqual(stat.S_IMODE(os.lstat(path).st_mode), 0o620)

    def test_socket_group_is_checked_with_the_config(self):
        d = self.make_daemon(listen__socket_group='no-such-group-segops')
        p = subprocess.run([segopsd_path(), '--config', d.config_path,
                            '--check-config'], capture_output=True,
                           text=True, timeout=30, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('socket_group', p.stderr)
        self.assertIn('no-such-group-segops', p.stderr)
        self.assertFalse(os.path.exists(d.events_socket))
        d.config['listen']['socket_group'] = str(os.getegid())
        d.write_config()
        p = subprocess.run([segopsd_path(), '--config', d.config_path,
                            '--check-config'], capture_output=True,
                           text=True, timeout=30, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)


class ForgedDropReports(SegopsTestCase):

    def test_forged_pid_and_absurd_count_on_datagram(self):
        """Issue 10 item 7: a sender claims pid 1 and 2^53-1 dropped
        events. The report is put on the sender's real pid and uid (the
        kernel's word), labelled verified, and counts at most
        max_client_dropped_report, the clamp counted."""
        d = self.start_daemon()
        d.send_dgram('{"op":"client_dropped","count":9007199254740991,"pid":1}\n')
        d.send_dgram('{"op":"client_dropped","count":7,"pid":1}\n')
        want = 10**9 + 7            # max_client_dropped_report's default, + 7
        st = d.wait_for_stats(lambda s: s['client_dropped'] >= want, 10)
        with open('/proc/self/comm', encoding='utf-8') as f:
            comm = f.read().strip()
        self.assertEqual(st['client_dropped'], want)
        self.assertEqual(st['client_dropped_clamped'], 1)
        self.assertEqual(st['clients'], [{
            'pid': os.getpid(), 'uid': os.geteuid(), 'identity': 'verified',
            'comm': comm,
            'dropped': want}])
        self.assertRegex(d.stderr_text(), r'reports 9007199254740991 dropped '
                         r'events in one report; counting '
                         r'max_client_dropped_report \(1000000000\)')

    def test_forged_pid_on_stream(self):
        d = self.start_daemon()
        replies = d.control([{'op': 'client_dropped',
                              'count': 9007199254740991, 'pid': 1}])
        self.assertEqual(replies, [{'ok': True}])
        st = d.stats()
        self.assertEqual(st['client_dropped'], 1000000000)   # the default
        self.assertEqual(st['client_dropped_clamped'], 1)
        self.assertEqual([(c['pid'], c['identity'], c['uid'])
                          for c in st['clients']],
                         [(os.getpid(), 'verified', os.geteuid())])


if __name__ == '__main__':
    harness.main()
