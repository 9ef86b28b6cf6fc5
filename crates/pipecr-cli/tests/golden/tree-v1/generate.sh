#!/usr/bin/env bash
# Makes the golden tree image ONCE (it is committed; never regenerate it to make a test
# pass: see tests/golden_tree.rs). Run as root from this directory with a built pipecr:
#
#   cc -static -O1 -pthread -o tree tree.c
#   ./generate.sh ../../../../../target/debug/pipecr
#
# The program runs as /tmp/pipecr-golden-tree-v1/tree (the path the image names), in /,
# leading its own session, with stdin and stderr on /dev/null; once it says "ready" on
# its stdout (then /dev/null too), it is dumped (and killed) into img/.
set -euo pipefail
pipecr=$(realpath "$1")
here=$(pwd)
test ! -e img || { echo "img/ exists: the golden image is made once" >&2; exit 1; }
mkdir -p /tmp/pipecr-golden-tree-v1
cp tree /tmp/pipecr-golden-tree-v1/tree
# No descriptor but stdio may reach the program.
for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
coproc TREE { cd / && exec setsid /tmp/pipecr-golden-tree-v1/tree </dev/null 2>/dev/null; }
pid=$TREE_PID
read -r line <&"${TREE[0]}"
test "$line" = ready
"$pipecr" dump -t "$pid" -D "$here/img"
