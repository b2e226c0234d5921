#!/bin/sh
# Every C file of the tree is formatted as .clang-format says (STYLE.md
# rule 14). Prints the offending places; exit 1 when there are any.
set -eu
root=$1
clang_format=${2:-clang-format}
cd "$root"
files=$(find daemon proto libshim ctl sign tests bench -name '*.[ch]' | sort)
[ -n "$files" ] || { echo "no C files found under $root"; exit 1; }
# shellcheck disable=SC2086
if ! "$clang_format" --dry-run --Werror $files; then
        echo "run: clang-format -i \$(find daemon proto libshim ctl sign tests bench -name '*.[ch]')"
        exit 1
fi
echo "$(echo "$files" | wc -l) files formatted"
