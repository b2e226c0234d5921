"""A service unit's sandbox, applied without systemd.

This machine's PID 1 may not be systemd (a container), so the unit
cannot be started for real; what its [Service] section asks of the
kernel for the process itself can be: the system call filter
(SystemCallFilter=, SystemCallArchitectures=native, with
NoNewPrivileges) and UMask=. UnitSandbox reads those from a unit file,
resolves the filter the way systemd 252 does (the first assignment
decides allow- or deny-list; an allow list starts from @default; each
later assignment adds, or with "~" removes, names; groups are expanded
with `systemd-analyze syscall-filter`) and loads it with libseccomp
(through ctypes: only the libseccomp2 library, which systemd itself
needs, not its -dev package).

Run as a program, this file is the exec wrapper that applies them:

    python3 unitsandbox.py PROGRAM [ARG...]

with the environment from UnitSandbox.env(). It loads the filter in its
own process and then execs PROGRAM, so PROGRAM keeps the wrapper's pid
(a LISTEN_PID set before still names it) and starts under the filter,
as a unit's ExecStart= does; everything PROGRAM starts inherits it.

What a forbidden call does is the action: "kill" (default) kills the
process with SIGSYS at the first forbidden call, even one the program
would survive, so a test sees every call the unit forbids; "unit" does
what the unit says (SystemCallErrorNumber=, or SIGSYS without it).
"""

import ctypes
import ctypes.util
import errno
import os
import subprocess
import sys

ENV_SYSCALLS = 'SEGOPS_SANDBOX_SYSCALLS'
ENV_ERRNO = 'SEGOPS_SANDBOX_ERRNO'
ENV_UMASK = 'SEGOPS_SANDBOX_UMASK'

# libseccomp's seccomp.h
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7fff0000


def scmp_act_errno(n):
    return 0x00050000 | (n & 0x0000ffff)


def unit_settings(path, section_name='Service'):
    """Every assignment of the unit's [Service] section (or another), in
    order: {key: [value, ...]} (line continuations joined, comments
    skipped)."""
    out = {}
    section = None
    pending = ''
    with open(path, encoding='utf-8') as f:
        for raw in f:
            line = pending + raw.rstrip('\n')
            pending = ''
            if line.endswith('\\'):
                pending = line[:-1] + ' '
                continue
            line = line.strip()
            if not line or line[0] in '#;':
                continue
            if line.startswith('[') and line.endswith(']'):
                section = line[1:-1]
                continue
            if section != section_name or '=' not in line:
                continue
            key, value = line.split('=', 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


_sets_cache = {}


def syscall_sets(analyze='systemd-analyze'):
    """{'@group': [member, ...]} as this systemd defines the groups."""
    if analyze not in _sets_cache:
        text = subprocess.run([analyze, 'syscall-filter', '--no-pager'],
                              capture_output=True, text=True, check=True,
                              timeout=60).stdout
        sets, cur = {}, None
        for line in text.splitlines():
            s = line.strip()
            if not s:
                cur = None
            elif line.startswith('@'):
                cur = sets.setdefault(s, [])
            elif cur is not None and not s.startswith('#'):
                cur.append(s)
        if '@default' not in sets or '@system-service' not in sets:
            raise RuntimeError('%s syscall-filter listed no groups' % analyze)
        _sets_cache[analyze] = sets
    return _sets_cache[analyze]


def expand(name, sets, seen=None):
    """The system calls a name stands for (a group, recursively)."""
    if not name.startswith('@'):
        return {name}
    if name not in sets:
        raise ValueError('unknown system call group %s' % name)
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    out = set()
    for member in sets[name]:
        out |= expand(member, sets, seen)
    return out


def resolve_filter(assignments, sets):
    """(allow_list, names) for the SystemCallFilter= assignments, in
    order. allow_list False means names are the denied ones."""
    allow_list, names = None, set()
    for value in assignments:
        if value == '':
            allow_list, names = None, set()
            continue
        invert = value.startswith('~')
        words = value[1:].split() if invert else value.split()
        if allow_list is None:
            allow_list = not invert
            if allow_list:
                names |= expand('@default', sets)
        for w in words:
            # "name:errno" gives a denied call its own errno: a deny
            # list's detail; the names are what matter here.
            calls = expand(w.split(':', 1)[0], sets)
            if invert == (not allow_list):
                names |= calls
            else:
                names -= calls
    return bool(allow_list), names


class UnitSandbox:
    """The settings of one unit file that the wrapper applies."""

    def __init__(self, unit_path, analyze='systemd-analyze'):
        s = unit_settings(unit_path)
        self.unit_path = unit_path
        filters = s.get('SystemCallFilter', [])
        if not filters:
            raise ValueError('%s has no SystemCallFilter=' % unit_path)
        self.allow_list, self.names = resolve_filter(filters,
                                                     syscall_sets(analyze))
        if not self.allow_list:
            raise ValueError('%s: only an allow list is supported' % unit_path)
        if s.get('SystemCallArchitectures', [''])[-1] != 'native':
            raise ValueError('%s: expected SystemCallArchitectures=native'
                             % unit_path)
        err = s.get('SystemCallErrorNumber', [''])[-1]
        if err in ('', 'kill'):
            self.errno = None
        elif err.isdigit():
            self.errno = int(err)
        else:
            self.errno = getattr(errno, err, None)
            if self.errno is None:
                raise ValueError('unknown SystemCallErrorNumber=%s' % err)
        self.umask = int(s.get('UMask', ['0022'])[-1], 8)

    def allows(self, name):
        return name in self.names

    def env(self, action='kill'):
        """Variables for the wrapper. action: 'kill' or 'unit' (above)."""
        if action not in ('kill', 'unit'):
            raise ValueError(action)
        e = 0 if action == 'kill' or self.errno is None else self.errno
        return {ENV_SYSCALLS: ','.join(sorted(self.names)),
                ENV_ERRNO: str(e),
                ENV_UMASK: '%04o' % self.umask}


def _load_filter(names, err):
    path = ctypes.util.find_library('seccomp') or 'libseccomp.so.2'
    lib = ctypes.CDLL(path, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                     ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    # Only the native architecture is in the context: another ABI's
    # calls get the "bad architecture" action, which kills, as
    # SystemCallArchitectures=native does. NoNewPrivileges is set by
    # libseccomp before it loads the filter.
    default = scmp_act_errno(err) if err else SCMP_ACT_KILL_PROCESS
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise OSError('seccomp_init failed')
    for name in names:
        nr = lib.seccomp_syscall_resolve_name(name.encode('ascii'))
        # Unknown here (another architecture's, or newer than this
        # libseccomp), or a multiplexer's pseudo number: systemd skips
        # these too.
        if nr < 0:
            continue
        r = lib.seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0)
        if r < 0:
            raise OSError(-r, 'seccomp_rule_add(%s)' % name)
    r = lib.seccomp_load(ctx)
    if r < 0:
        raise OSError(-r, 'seccomp_load')


def main(argv):
    if len(argv) < 2:
        sys.exit('usage: unitsandbox.py PROGRAM [ARG...]')
    env = os.environ.copy()
    names = env.pop(ENV_SYSCALLS).split(',')
    err = int(env.pop(ENV_ERRNO))
    umask = int(env.pop(ENV_UMASK), 8)
    os.umask(umask)
    _load_filter(names, err)
    os.execve(argv[1], argv[1:], env)


if __name__ == '__main__':
    main(sys.argv)
