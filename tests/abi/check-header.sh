#!/bin/sh
# ABI check: the public header compiles alone as pedantic C89 and as C++
# (with its extern "C" guards), so any application can include it.
# Usage: check-header.sh INCLUDE_DIR CC CXX
set -eu
inc=$1 cc=$2 cxx=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <segops/shim.h>\nint main(void) { segops_shim *s = 0; (void)segops_dropped(s); return 0; }\n' >"$tmp/t.c"
"$cc" -std=c89 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$tmp/t.c" -o "$tmp/t89.o"
"$cc" -std=c99 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$tmp/t.c" -o "$tmp/t99.o"
if command -v "$cxx" >/dev/null 2>&1; then
        cp "$tmp/t.c" "$tmp/t.cc"
        "$cxx" -std=c++98 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$tmp/t.cc" -o "$tmp/tcc.o"
        # extern "C": the C++ object refers to the unmangled name.
        nm "$tmp/tcc.o" | grep -q ' U segops_dropped$'
else
        echo "no C++ compiler: C++ part skipped"
fi
echo ok
